"""Open Library authors dump → ``authors``."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import ClassVar

from contentcrawl.items import AuthorItem, ContentItem
from contentcrawl.sources.openlibrary import author_from_doc
from contentcrawl.sources.openlibrary.spider import OpenLibraryDumpSpider


class OpenLibraryAuthorsSpider(OpenLibraryDumpSpider):
    """``scrapy crawl openlibrary_authors [-a dump=PATH_OR_URL] [-a limit=N]``."""

    name = "openlibrary_authors"
    dump_kind = "authors"
    record_type = "/type/author"
    item_class: ClassVar[type[ContentItem]] = AuthorItem

    def line_mapper(self) -> Callable[..., ContentItem]:
        return partial(author_from_doc, photos_url=self.photos_url)
