"""Open Library editions dump → ``books``, with author names looked up in the store."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar

from contentcrawl.extensions.crawl_store import crawl_store
from contentcrawl.items import BookItem, ContentItem
from contentcrawl.sources.openlibrary import book_from_edition
from contentcrawl.sources.openlibrary.lines import add_author_names, author_keys_in
from contentcrawl.sources.openlibrary.spider import AuthorNames, OpenLibraryDumpSpider
from contentcrawl.store import Store


class OpenLibraryBooksSpider(OpenLibraryDumpSpider):
    """``scrapy crawl openlibrary_books [-a dump=PATH_OR_URL] [-a limit=N] [-a force=1]``.

    ``author_names`` holds the names of the book's authors that are already in the store
    (import ``openlibrary_authors`` first to get them), in ``author_keys`` order. The crawl
    looks the names of every author a chunk mentions up in the store before the workers
    map it.
    """

    name = "openlibrary_books"
    dump_kind = "editions"
    record_type = "/type/edition"
    item_class: ClassVar[type[ContentItem]] = BookItem
    uses_store = True

    author_lookup: AuthorNames | None = None

    def prepare(self, store: Store) -> None:
        if store.count("authors"):
            self.author_lookup = AuthorNames(store)
        else:
            self.logger.info("No authors in the store: books get no author_names")

    def line_mapper(self) -> Callable[..., ContentItem]:
        return partial(book_from_edition, covers_url=self.covers_url)

    def line_enricher(self) -> Callable[[list[ContentItem], Any], None] | None:
        return add_author_names

    async def chunk_context(self, lines: list[tuple[int, bytes]]) -> dict[str, str | None] | None:
        lookup = self.author_lookup
        if lookup is None or not lines:
            return None
        keys = author_keys_in(lines)
        return await crawl_store(self.crawler).run(lambda _store: lookup.lookup(keys))
