"""Date normalisation on the shapes the sources really send (docs/sources.md, API quirks)."""

import pytest

from contentcrawl.dates import DateReading, normalise_date, read_date


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2007", "2007"),  # MusicBrainz year precision
        ("2012-09", "2012-09"),
        ("2009-04-17", "2009-04-17"),
        ("2019-05-01T00:00:00.000Z", "2019-05-01"),  # TMDB release_dates
        ("2019-05-01T00:00:00Z", "2019-05-01"),
        ("1999-1-5", "1999-01-05"),
        ("March 3, 2001", "2001-03-03"),  # Open Library free text
        ("Sept. 12, 1984", "1984-09-12"),
        ("Mar 2001", "2001-03"),
        ("3rd March 2001", "2001-03-03"),
        ("c1985", "1985"),
        ("[1985?]", "1985"),
        ("03/04/2001", "2001"),  # day/month order unknown: year only
        (1262304000, "2010-01-01"),  # IGDB Unix timestamp
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_normalises_to_iso_at_its_precision(raw: object, expected: str | None) -> None:
    assert normalise_date(raw) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Catalogue guesses: the first word is no month, the lone year is what they name.
        ("ca. 1480", DateReading("1480", "year", approximate=True)),
        ("c. 1850", DateReading("1850", "year", approximate=True)),
        ("ca 1480", DateReading("1480", "year", approximate=True)),
        ("circa 1900", DateReading("1900", "year", approximate=True)),
        ("approx. 1700", DateReading("1700", "year", approximate=True)),
        ("fl. 1314", DateReading("1314", "year", approximate=True)),
        ("1682?", DateReading("1682", "year", approximate=True)),
        ("[1985?]", DateReading("1985", "year", approximate=True)),
        # A season is coarse, not a guess; "c1985" is a copyright year, not circa.
        ("Spring 1985", DateReading("1985", "year", approximate=False)),
        ("c1985", DateReading("1985", "year", approximate=False)),
        ("Dec. 1990", DateReading("1990-12", "month", approximate=False)),
        ("10 Apr 1778", DateReading("1778-04-10", "day", approximate=False)),
        (1262304000, DateReading("2010-01-01", "day", approximate=False)),
        ("", DateReading(None)),
    ],
)
def test_reads_precision_and_marks_approximate_dates(raw: object, expected: DateReading) -> None:
    assert read_date(raw) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw", ["2001-02-30", "someday", "1985-1990", "0000", "2001-13", "4th cent.", True]
)
def test_unreadable_dates_raise(raw: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the messages vary by cause
        normalise_date(raw)  # type: ignore[arg-type]
