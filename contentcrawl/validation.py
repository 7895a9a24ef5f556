"""What a record item must be to be stored: required fields, well-formed keys, blank
strings to null, declared types, ISO dates.

``RecordValidator`` does the checks and counts what it finds; it knows nothing of Scrapy, so
the dump workers run it without importing Scrapy (a worker starts in a fraction of the
time). ``contentcrawl.pipelines.validation.ValidationPipeline`` is the same checks as an
item pipeline, raising Scrapy's ``DropItem``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import types
import typing
from functools import cache
from typing import Any, ClassVar, Protocol

from contentcrawl.dates import read_date
from contentcrawl.items import ContentItem

logger = logging.getLogger(__name__)

_MBID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_OL_KEY = {
    "books": re.compile(r"/books/OL\d+M"),
    "works": re.compile(r"/works/OL\d+W"),
    "authors": re.compile(r"/authors/OL\d+A"),
}


class StatsCounter(Protocol):
    """Where validation counts: a crawl's stats collector, or a dump worker's tally."""

    def inc_value(self, key: str, count: int = 1, start: int = 0) -> None: ...


class InvalidRecordError(Exception):
    """An item that cannot become a record; ``reason`` names its stat."""

    reason: ClassVar[str]


# Named as the drops they were (item_dropped_reasons_count/<name>), so no stat changed name.
class UnknownKind(InvalidRecordError):  # noqa: N818
    reason = "unknown_kind"


class InvalidKey(InvalidRecordError):  # noqa: N818
    reason = "invalid_key"


class MissingRequiredField(InvalidRecordError):  # noqa: N818
    reason = "missing_field"


class RecordValidator:
    """Cleans items in place and refuses those that cannot be stored.

    Blank strings become None (and vanish from lists of strings). Every field gets the type
    its item declares (``popularity: float | None``): a numeric string becomes its number,
    counted as ``validation/<collection>/coerced``; a value that cannot (``"n/a"`` for a
    number, a list for a string) is left out (the field's default), counted as
    ``validation/<collection>/uncoercible`` and logged, so both stores hold one type per
    field. Dates are normalised to ISO-8601 at their own precision (``YYYY``, ``YYYY-MM``,
    ``YYYY-MM-DD``); where the item has them, ``<date>_raw`` keeps the source's text and
    ``<date>_precision``/``<date>_approximate`` say how exact it is ("ca. 1480" is
    ``1480``, year, approximate). An unreadable date becomes None (its raw text kept),
    counted as ``dates/<collection>/unreadable``, not fatal. A missing required field or a
    malformed source id drops the item, counted as ``validation/dropped/<reason>``; the
    first drop of each reason is logged as a WARNING with the example, the rest at DEBUG.
    """

    def __init__(self, stats: StatsCounter) -> None:
        self.stats = stats
        self._reasons_logged: set[str] = set()
        self._problems_logged: set[tuple[str, str]] = set()

    def accepted(self, record: ContentItem) -> bool:
        """Validate one record of a batch in place; False (counted as Scrapy counts a
        dropped item, and logged) when it cannot be stored."""
        try:
            self.validate(record)
        except InvalidRecordError as drop:
            level = self.count_drop(drop)
            self.stats.inc_value("item_dropped_count")
            self.stats.inc_value(f"item_dropped_reasons_count/{type(drop).__name__}")
            logger.log(logging.getLevelName(level), "Dropped from a batch: %s", drop)
            return False
        return True

    def count_drop(self, drop: InvalidRecordError) -> str:
        """Count a drop; the log level for it: WARNING the first time a reason shows."""
        self.stats.inc_value(f"validation/dropped/{drop.reason}")
        if drop.reason in self._reasons_logged:
            return "DEBUG"
        self._reasons_logged.add(drop.reason)
        return "WARNING"

    def validate(self, item: Any) -> None:
        """Clean ``item`` in place; ``InvalidRecordError`` when it cannot be stored."""
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
        # A class is hashable; mypy checks the __hash__ of its instances (None: dataclass eq).
        for spec in field_types(type(item)):  # type: ignore[arg-type]
            value = values.get(spec.name)
            if value is None or (
                type(value) is spec.kind
                and (spec.element is None or all(type(entry) is spec.element for entry in value))
            ):
                continue
            self._enforce_type(item, values, key, spec)
        for name in item.required:
            if values.get(name) in (None, [], {}):
                raise MissingRequiredField(f"{item.collection} {key!r}: no {name}")
        for name in item.date_fields:
            self._normalise_date(item, values, key, name)

    def _enforce_type(
        self, item: ContentItem, values: dict[str, Any], key: Any, spec: FieldType
    ) -> None:
        value = values[spec.name]
        if spec.kind is list and isinstance(value, list):
            # One bad entry of a list of scalars leaves the list; the others are kept.
            kept = []
            for entry in value:
                try:
                    kept.append(self._coerced(item, entry, spec.element))
                except ValueError as error:
                    self._problem(item, key, "validation", "uncoercible", spec.name, error)
            values[spec.name] = kept
            return
        try:
            values[spec.name] = self._coerced(item, value, spec.kind)
        except ValueError as error:
            values[spec.name] = spec.empty()
            self._problem(item, key, "validation", "uncoercible", spec.name, error)

    def _coerced(self, item: ContentItem, value: Any, kind: Any) -> Any:
        coerced = coerce_value(value, kind)
        # 8 for a float is the same JSON number as 8.0: only a change of JSON type counts.
        if _json_type(coerced) != _json_type(value):
            self.stats.inc_value(f"validation/{item.collection}/coerced")
        return coerced

    def _normalise_date(
        self, item: ContentItem, values: dict[str, Any], key: Any, name: str
    ) -> None:
        value = values.get(name)
        raw_field = f"{name}_raw"
        if raw_field in values:
            # The source's own text is what tells "ca. 1480" from "1480": read from it.
            if values[raw_field] is None and isinstance(value, str):
                values[raw_field] = value
            if isinstance(values[raw_field], str):
                value = values[raw_field]
        try:
            reading = read_date(value)
        except ValueError as error:
            values[name] = None
            self._problem(item, key, "dates", "unreadable", name, error)
            return
        values[name] = reading.iso
        if f"{name}_precision" in values:
            values[f"{name}_precision"] = reading.precision
        if f"{name}_approximate" in values:
            values[f"{name}_approximate"] = reading.approximate if reading.iso else None

    def _problem(
        self, item: ContentItem, key: Any, area: str, outcome: str, name: str, error: Exception
    ) -> None:
        """Count a value left out; log it, at WARNING the first time per collection."""
        self.stats.inc_value(f"{area}/{item.collection}/{outcome}")
        seen = (item.collection, outcome)
        level = logging.DEBUG if seen in self._problems_logged else logging.WARNING
        self._problems_logged.add(seen)
        logger.log(level, "%s %r: %s left empty (%s)", item.collection, key, name, error)


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


@dataclasses.dataclass(frozen=True, slots=True)
class FieldType:
    """The type an item declares for a field: ``kind`` (int, float, bool, str, list, dict),
    ``element`` for a list of scalars (``list[str]``), and how the field is left empty."""

    name: str
    kind: type[Any]
    element: type | None
    default: Any

    def empty(self) -> Any:
        """The field's default: None, or a new empty list or object."""
        return self.default() if callable(self.default) else self.default


_SCALARS = (int, float, bool, str)


@cache
def field_types(item_class: type[ContentItem]) -> tuple[FieldType, ...]:
    """The declared types of an item class's content fields (key and date fields excluded:
    ``checked_key`` and the date reader own those)."""
    hints = typing.get_type_hints(item_class)
    skipped = {item_class.key_field, *item_class.date_fields}
    specs = []
    for entry in dataclasses.fields(item_class):
        if entry.name in skipped:
            continue
        kind, element = _kind_of(hints[entry.name])
        if kind is None:
            continue
        default = entry.default_factory if entry.default is dataclasses.MISSING else entry.default
        specs.append(FieldType(entry.name, kind, element, default))
    return tuple(specs)


def _kind_of(hint: Any) -> tuple[type | None, type | None]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hints = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(hints) != 1:
            return None, None
        hint = hints[0]
    origin = typing.get_origin(hint) or hint
    if origin is list:
        (element,) = typing.get_args(hint) or (None,)
        return list, element if element in _SCALARS else None
    if origin is dict:
        return dict, None
    return (hint, None) if hint in _SCALARS else (None, None)


_INTEGER = re.compile(r"[+-]?\d+")


def _json_type(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "number"
    return type(value).__name__


def coerce_value(value: Any, kind: type[Any]) -> Any:
    """``value`` as ``kind`` (a field's declared type); ``ValueError`` when it cannot be."""
    if kind is list:
        if isinstance(value, list):
            return value
        raise ValueError(f"{value!r:.80} is not a list")
    if kind is dict:
        if isinstance(value, dict):
            return value
        raise ValueError(f"{value!r:.80} is not an object")
    return coerce_scalar(value, kind)


def coerce_scalar(value: Any, kind: type[Any]) -> Any:
    """A JSON scalar as ``kind``: ``"7.5"`` → 7.5, ``"12"`` → 12, ``"true"`` → True, 12 →
    ``"12"``; the very object when it is one already; ``ValueError`` when it cannot be."""
    if type(value) is kind:
        if kind is float and not math.isfinite(value):
            raise ValueError(f"{value!r} is not a number JSON can hold")
        return value
    if kind is bool:
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise ValueError(f"{value!r:.80} is not a boolean")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{value!r:.80} is not a {kind.__name__}")
    if kind is str:
        # A number where text belongs (an id sent as 12 instead of "12") keeps its digits.
        return str(value)
    if kind is int:
        if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
            return int(value)
        number = _finite(value)
        if number.is_integer():
            return int(number)
        raise ValueError(f"{value!r:.80} is not a whole number")
    # float: an int becomes a float too, so 8 and 8.0 are one value in both stores.
    return _finite(value)


def _finite(value: int | float | str) -> float:
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ValueError(f"{value!r:.80} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{value!r:.80} is not a number JSON can hold")
    return number
