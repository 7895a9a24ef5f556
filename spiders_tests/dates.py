"""Today's and yesterday's UTC dates, asked when a test runs.

Not module constants: a suite that runs across midnight UTC would otherwise give a test the
date the module was imported on while the crawl it starts asks for the new day's files.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta


def utc_today() -> date:
    """Today's date in UTC, as the spiders take it."""
    return datetime.now(UTC).date()


def utc_yesterday() -> date:
    """Yesterday's date in UTC."""
    return utc_today() - timedelta(days=1)
