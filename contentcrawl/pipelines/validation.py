"""Validation pipeline: required fields, well-formed keys, blank strings to null, ISO dates."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, ClassVar

from scrapy.exceptions import DropItem

from contentcrawl.dates import normalise_date
from contentcrawl.items import ContentItem, ItemBatch

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

_MBID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_OL_KEY = {
    "books": re.compile(r"/books/OL\d+M"),
    "works": re.compile(r"/works/OL\d+W"),
    "authors": re.compile(r"/authors/OL\d+A"),
}


class ValidationDrop(DropItem):
    """An item that cannot become a record; ``reason`` names its stat."""

    reason: ClassVar[str]


class UnknownKind(ValidationDrop):
    reason = "unknown_kind"


class InvalidKey(ValidationDrop):
    reason = "invalid_key"


class MissingRequiredField(ValidationDrop):
    reason = "missing_field"


class ValidationPipeline:
    """Cleans items in place and drops those that cannot be stored.

    Blank strings become None (and vanish from lists of strings); dates are normalised to
    ISO-8601 at their own precision (``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD``); an unreadable
    date becomes None and is counted, not fatal. A missing required field or a malformed
    source id drops the item, counted as ``validation/dropped/<reason>``; the first drop of
    each reason is logged as a WARNING with the example, the rest at DEBUG.
    """

    def __init__(self, crawler: Crawler) -> None:
        self.stats = crawler.stats
        self._reasons_logged: set[str] = set()
        self._date_problems_logged: set[str] = set()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    def process_item(self, item: Any) -> Any:
        if isinstance(item, ItemBatch):
            # A bad record leaves its batch, counted as Scrapy counts a dropped item.
            item.items = [record for record in item.items if self._accepted(record)]
            return item
        try:
            self._validate(item)
        except ValidationDrop as drop:
            drop.log_level = self._count_drop(drop)
            raise
        return item

    def _accepted(self, record: ContentItem) -> bool:
        try:
            self._validate(record)
        except ValidationDrop as drop:
            level = self._count_drop(drop)
            self.stats.inc_value("item_dropped_count")
            self.stats.inc_value(f"item_dropped_reasons_count/{type(drop).__name__}")
            logger.log(logging.getLevelName(level), "Dropped from a batch: %s", drop)
            return False
        return True

    def _count_drop(self, drop: ValidationDrop) -> str:
        """Count a drop; the log level for it: WARNING the first time a reason shows."""
        self.stats.inc_value(f"validation/dropped/{drop.reason}")
        if drop.reason in self._reasons_logged:
            return "DEBUG"
        self._reasons_logged.add(drop.reason)
        return "WARNING"

    def _validate(self, item: Any) -> None:
        if not isinstance(item, ContentItem):
            raise UnknownKind(f"not a record item: {type(item).__name__}")
        # Every ContentItem is a plain dataclass: its fields are its __dict__ (ItemAdapter's
        # per-field calls cost more than the checks themselves on a dump import).
        values = vars(item)
        for name, value in values.items():
            cleaned = blank_to_none(value)
            if cleaned is not value:
                values[name] = cleaned
        key = values[item.key_field] = checked_key(item.collection, values.get(item.key_field))
        for name in item.required:
            if values.get(name) in (None, [], {}):
                raise MissingRequiredField(f"{item.collection} {key!r}: no {name}")
        for name in item.date_fields:
            value = values.get(name)
            try:
                values[name] = normalise_date(value)
            except ValueError as error:
                values[name] = None
                self.stats.inc_value(f"validation/{item.collection}/invalid_date")
                level = (
                    logging.DEBUG
                    if item.collection in self._date_problems_logged
                    else logging.WARNING
                )
                self._date_problems_logged.add(item.collection)
                logger.log(level, "%s %r: %s set to null (%s)", item.collection, key, name, error)


def blank_to_none(value: Any) -> Any:
    """Strip strings; a blank string becomes None and blank strings drop out of lists."""
    if isinstance(value, str):
        # str.strip() returns the very object when there is nothing to strip.
        return value.strip() or None
    if isinstance(value, list):
        for entry in value:
            if isinstance(entry, str) and (not entry or entry.strip() is not entry):
                stripped = (entry.strip() if isinstance(entry, str) else entry for entry in value)
                return [entry for entry in stripped if entry != ""]
    return value


def checked_key(collection: str, key: Any) -> Any:
    """The source id in its canonical type, or ``InvalidKey``: TMDB/IGDB ints, MBIDs, OL keys."""
    if collection in _OL_KEY:
        if isinstance(key, str) and _OL_KEY[collection].fullmatch(key):
            return key
        raise InvalidKey(f"{collection}: {key!r} is not an Open Library key")
    if collection in {"artists", "albums"}:
        if isinstance(key, str) and _MBID.fullmatch(key.lower()):
            return key.lower()
        raise InvalidKey(f"{collection}: {key!r} is not an MBID")
    if isinstance(key, bool):
        raise InvalidKey(f"{collection}: {key!r} is not a numeric id")
    if isinstance(key, str) and key.isdigit():
        key = int(key)
    if isinstance(key, int) and key > 0:
        return key
    raise InvalidKey(f"{collection}: {key!r} is not a positive numeric id")
