"""What a spider gives a distributed run, and which stored record a run's key stands for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol, runtime_checkable

from scrapy import Request


@runtime_checkable
class DistributedSpider(Protocol):
    """What a spider gives a distributed run: its id source and how to rebuild a request.

    Optional: ``distributed_record(key)`` (the ``(collection, store key)`` a key's record is
    stored under, None for a key without a record), for spiders that store several
    collections; by default a key without ``:`` is a record of ``distributed_collection``.
    """

    distributed_collection: str

    def distributed_source(self) -> AsyncIterator[Any]:
        """The requests (and items) of the run's id source, as ``start()`` would yield them."""

    def distributed_key(self, request_or_item: Any) -> str | None:
        """The key of the work a request or item stands for: a record id, or a listing
        page's own key (with a ``:``); None for anything else."""

    def distributed_request(self, key: str) -> Request:
        """A fresh request for ``key`` that bypasses the dupefilter (reconcile)."""


def record_of(spider: Any, key: str) -> tuple[str, Any] | None:
    """The collection and store key of the record ``key`` stands for; None: a key only
    ``settle()`` accounts for (a listing page)."""
    own = getattr(spider, "distributed_record", None)
    if own is not None:
        return own(key)
    if ":" in key:
        return None
    # Numeric ids (TMDB, IGDB) are stored as integers.
    return spider.distributed_collection, int(key) if key.isdigit() else key
