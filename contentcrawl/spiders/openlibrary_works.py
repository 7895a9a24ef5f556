"""Open Library works dump → ``works``."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import ClassVar

from contentcrawl.items import ContentItem, WorkItem
from contentcrawl.sources.openlibrary import work_from_doc
from contentcrawl.sources.openlibrary.spider import OpenLibraryDumpSpider


class OpenLibraryWorksSpider(OpenLibraryDumpSpider):
    """``scrapy crawl openlibrary_works [-a dump=PATH_OR_URL] [-a limit=N]``."""

    name = "openlibrary_works"
    dump_kind = "works"
    record_type = "/type/work"
    item_class: ClassVar[type[ContentItem]] = WorkItem

    def line_mapper(self) -> Callable[..., ContentItem]:
        return partial(work_from_doc, covers_url=self.covers_url)
