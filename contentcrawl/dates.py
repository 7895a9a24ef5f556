"""Normalising the sources' dates to ISO-8601 at their own precision (YYYY, YYYY-MM, …).

Catalogue dates are often approximate ("ca. 1480", "circa 1900", "1682?", "fl. 1314"):
they are read to the year they name and marked approximate rather than thrown away.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache

_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
_MONTHS_OR_NONE = {"", *_MONTHS}
_MONTH = r"(?P<month>[a-z]+)\.?"
_PATTERNS = [
    # 2001-03-04, 2001-03, 2001/03/04, and ISO datetimes (time part dropped)
    re.compile(r"(?P<year>\d{4})(?:[-/](?P<mnum>\d{1,2})(?:[-/](?P<day>\d{1,2}))?)?(?:[t ].*)?"),
    # March 4, 2001 / Mar 4 2001 / March 2001
    re.compile(_MONTH + r"\s+(?:(?P<day>\d{1,2})(?:st|nd|rd|th)?,?\s+)?(?P<year>\d{4})"),
    # 4 March 2001
    re.compile(r"(?P<day>\d{1,2})(?:st|nd|rd|th)?\s+" + _MONTH + r",?\s+(?P<year>\d{4})"),
    # 03/04/2001 is ambiguous (US or European): only the year is trusted.
    re.compile(r"\d{1,2}[/.]\d{1,2}[/.](?P<year>\d{4})"),
]
# Last resort for catalogue dates like "c1985", "[1985?]", "1985 printing", "Spring 1985".
_LONE_YEAR = re.compile(r"(?<!\d)(?P<year>1[0-9]{3}|20[0-9]{2})(?!\d)")
# Words that make a date a guess: "ca. 1480", "c. 1850", "circa 1900", "approx. 1700",
# "fl. 1314" (flourished: active then, born earlier), "before 1600", "after 1600". A bare
# "c1985" is not one of them: in library catalogues it is the copyright year (MARC 260 $c).
_APPROXIMATE = re.compile(
    r"(?<![a-z])(?:ca?\.|ca\b|c\s|circa|approx(?:imately|\.)?|about|abt\.?|fl\.?|before|after)"
    r"|\?"
)
# Precision of an ISO date by its length: YYYY, YYYY-MM, YYYY-MM-DD.
PRECISIONS = {4: "year", 7: "month", 10: "day"}


@dataclass(frozen=True, slots=True)
class DateReading:
    """A date read from a source: ISO text, its precision and whether the source guessed."""

    iso: str | None
    precision: str | None = None
    approximate: bool = False


MIN_YEAR, MAX_YEAR = 1, 2200


def normalise_date(value: str | int | float | None) -> str | None:
    """ISO form of a date at the precision given; None for empty; ValueError if unreadable.

    Integers and floats are Unix timestamps (IGDB). Partial dates stay partial: "2007" →
    "2007", "March 2012" → "2012-03", "ca. 1480" → "1480". Any other value (a boolean, a
    list, an object from a malformed payload) and a timestamp out of range are unreadable.
    """
    return read_date(value).iso


def read_date(value: str | int | float | None) -> DateReading:
    """``normalise_date``'s ISO text with its precision and whether it is approximate."""
    if isinstance(value, str):
        return _read_text(value)
    if value is None:
        return DateReading(None)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"not a date: {value!r:.80}")
    try:
        iso = datetime.fromtimestamp(value, UTC).date().isoformat()
    except (OverflowError, OSError, ValueError):
        # Past datetime's range, or NaN / infinity (which Python's json accepts).
        raise ValueError(f"timestamp out of range: {value!r:.80}") from None
    return DateReading(iso, "day")


# Catalogue dates repeat endlessly ("1985", "March 2001"); a dump import asks about each
# record twice (the mapper and validation).
@lru_cache(maxsize=8192)
def _read_text(value: str) -> DateReading:
    text = value.strip().lower()
    if not text:
        return DateReading(None)
    approximate = _APPROXIMATE.search(text) is not None
    iso = _iso_of(text, value)
    return DateReading(iso, PRECISIONS[len(iso)], approximate)


def _iso_of(text: str, original: str) -> str:
    for pattern in _PATTERNS:
        match = pattern.fullmatch(text)
        # A word that is no month ("ca." in "ca. 1480", "spring") leaves the lone year.
        if match and (match.groupdict().get("month") or "") in _MONTHS_OR_NONE:
            return _build(match.groupdict(), original)
    match = _LONE_YEAR.search(text)
    if match and len(_LONE_YEAR.findall(text)) == 1:
        return _build({"year": match["year"]}, original)
    raise ValueError(f"unreadable date: {original!r}")


def _build(parts: dict[str, str | None], original: str) -> str:
    year = int(parts["year"] or 0)
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise ValueError(f"year out of range: {original!r}")
    month_text = parts.get("month")
    month: int | None = None
    if month_text:
        month = _MONTHS[month_text]
    elif parts.get("mnum"):
        month = int(parts["mnum"] or 0)
    if month is None:
        return f"{year:04d}"
    if not 1 <= month <= 12:
        raise ValueError(f"month out of range: {original!r}")
    if not parts.get("day"):
        return f"{year:04d}-{month:02d}"
    # date() rejects 2001-02-30 and friends.
    return date(year, month, int(parts["day"] or 0)).isoformat()
