"""Base spider every source builds on: download slot, spider arguments, start-up log line."""

from __future__ import annotations

from typing import Any, ClassVar

import scrapy


class ContentSpider(scrapy.Spider):
    """A spider of one source: its requests ride the source's named download slot.

    Subclasses set ``slot`` (a key of ``DOWNLOAD_SLOTS``) and build requests with
    ``self.request(...)``. Spider arguments arrive as strings (``-a name=value``, scrapyd
    job arguments); unknown ones, such as scrapyd's ``_job``, are accepted and ignored.
    """

    slot: ClassVar[str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limit = parse_limit(kwargs.get("limit"))
        # As given, for the run record (contentcrawl.extensions.runs masks secret names).
        self.arguments: dict[str, Any] = dict(kwargs)

    def request(self, url: str, **kwargs: Any) -> scrapy.Request:
        """A request in this source's download slot (its rate limit), whatever the host."""
        meta = kwargs.pop("meta", None) or {}
        meta.setdefault("download_slot", self.slot)
        return scrapy.Request(url, meta=meta, **kwargs)


def parse_limit(value: str | int | None) -> int | None:
    """``-a limit=N``: a positive record count, or None for no limit."""
    if value in (None, ""):
        return None
    limit = int(value)
    if limit < 1:
        raise ValueError(f"limit must be a positive number, not {value!r}")
    return limit
