"""Open Library editions dump → ``books``, with author names looked up in the store."""

from __future__ import annotations

from typing import ClassVar

from contentcrawl.items import BookItem, ContentItem
from contentcrawl.sources.openlibrary import (
    AuthorNames,
    DumpLine,
    OpenLibraryDumpSpider,
    book_from_edition,
)
from contentcrawl.store import Store


class OpenLibraryBooksSpider(OpenLibraryDumpSpider):
    """``scrapy crawl openlibrary_books [-a dump=PATH_OR_URL] [-a limit=N]``.

    ``author_names`` holds the names of the book's authors that are already in the store
    (import ``openlibrary_authors`` first to get them), in ``author_keys`` order.
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

    def map_record(self, record: DumpLine) -> BookItem:
        return book_from_edition(record.doc, covers_url=self.covers_url, revision=record.revision)

    def enrich(self, items: list[ContentItem]) -> None:
        if self.author_lookup is None:
            return
        books = [item for item in items if isinstance(item, BookItem) and item.author_keys]
        names = self.author_lookup.lookup(key for book in books for key in book.author_keys)
        for book in books:
            book.author_names = [name for key in book.author_keys if (name := names.get(key))]
