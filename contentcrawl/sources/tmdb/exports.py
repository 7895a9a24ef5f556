"""TMDB's daily ID exports: file names, fetching them, the ids kept of them, their records."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from array import array
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scrapy.exceptions import CloseSpider

from contentcrawl.dumps import DownloadError, DumpFile, DumpReadError
from contentcrawl.dumps.crawl import ItemFlow, fetch_dump, import_failed
from contentcrawl.extensions.crawl_store import crawl_store
from contentcrawl.items import ContentItem, Json
from contentcrawl.redaction import redact_url
from contentcrawl.sources.tmdb.mappers import is_number, is_tmdb_id

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

    from contentcrawl.sources.tmdb.plans import Logger

# A missing export file answers 403 (S3 without list permission) or 404.
EXPORT_MISSING_STATUSES = (403, 404)
# Export ids whose stored fetch dates are read in one store round trip.
FRESH_LOOKUP_BATCH = 1000

# (an export line's JSON, misshapen field names to append to) → its item
ToItem = Callable[[Json, list[str]], ContentItem]
# (a record's key, the names of its fields of the wrong type) → None
CountMisshapen = Callable[[Any, list[str]], None]


def export_file_name(prefix: str, day: date) -> str:
    """The daily export's file name: ``movie_ids_05_15_2024.json.gz``."""
    return f"{prefix}_{day:%m_%d_%Y}.json.gz"


@dataclass
class ExportSelection:
    """Ids kept from an export file (4 bytes each), with counts of what was skipped."""

    ids: array = field(default_factory=lambda: array("l"))
    skipped: Counter[str] = field(default_factory=Counter)
    bad_lines: int = 0


def select_export_ids(
    lines: Iterable[str | bytes],
    *,
    include_adult: bool = False,
    include_video: bool = False,
    min_popularity: float | None = None,
    limit: int | None = None,
) -> ExportSelection:
    """Read export JSON lines; keep ids that pass the adult / video / popularity filters."""
    selection = ExportSelection()
    for line in lines:
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            tmdb_id = entry["id"]
        except (ValueError, KeyError, TypeError, RecursionError):
            tmdb_id = None
        if not is_tmdb_id(tmdb_id):
            selection.bad_lines += 1
            continue
        if entry.get("adult") and not include_adult:
            selection.skipped["adult"] += 1
            continue
        if entry.get("video") and not include_video:
            selection.skipped["video"] += 1
            continue
        popularity = entry.get("popularity")
        # A popularity that is not a number is unknown, as a missing one is: the id is kept.
        if min_popularity is not None and is_number(popularity) and popularity < min_popularity:
            selection.skipped["popularity"] += 1
            continue
        selection.ids.append(tmdb_id)
        if limit is not None and len(selection.ids) >= limit:
            break
    return selection


def export_published(url: str, *, user_agent: str, timeout: float) -> bool:
    """Whether an export file is published (blocking ``HEAD``: run it off the reactor thread).

    A missing file answers 403 (S3 without list permission) or 404; other errors raise.
    """
    request = urllib.request.Request(  # noqa: S310 - the http(s) TMDB_EXPORTS_URL
        url, method="HEAD", headers={"User-Agent": user_agent}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310
            return True
    except urllib.error.HTTPError as error:
        error.close()  # it holds the response, and so its socket, open until closed
        if error.code in EXPORT_MISSING_STATUSES:
            return False
        raise DownloadError(f"{redact_url(url)}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise DownloadError(f"{redact_url(url)}: {error.reason}") from None


class ExportReader:
    """The latest daily export of one kind for one run: its files fetched, then either the
    ids they keep (``plan_parts``) or, for kinds whose line is the whole record, their
    lines as items (``records``). Counts go to ``<stat_prefix>/export/…``."""

    def __init__(
        self,
        crawler: Crawler,
        logger: Logger,
        *,
        stat_prefix: str,
        exports_url: str,
        prefix: str,
        has_adult_export: bool,
        include_adult: bool,
        include_video: bool,
        min_popularity: float | None,
        limit: int | None,
    ) -> None:
        self.crawler = crawler
        self.logger = logger
        self.stat_prefix = stat_prefix
        self.exports_url = exports_url
        self.prefix = prefix
        self.has_adult_export = has_adult_export
        self.include_adult = include_adult
        self.include_video = include_video
        self.min_popularity = min_popularity
        self.limit = limit
        # Bad lines of the export files read (kinds whose export line is the record), and
        # whether one was bad enough to fail the import.
        self.bad_lines = 0
        self.failed = False

    async def fetch(self) -> tuple[list[Path], date]:
        """The export files to read (the adult one too when asked for) and their day."""
        found = await self._fetch(self.prefix)
        if found is None:
            raise CloseSpider("tmdb_export_unavailable")
        path, day = found
        paths = [path]
        if self.include_adult and self.has_adult_export:
            adult = await self._fetch(f"adult_{self.prefix}", day)
            if adult is None:
                self.logger.warning("No adult export for %s: adult ids not included", day)
            else:
                paths.append(adult[0])
        return paths, day

    async def plan_parts(self) -> dict[str, Any]:
        """The ids of the latest export (``ids``) and its day (``day``)."""
        paths, day = await self.fetch()
        ids = array("l")
        for export_path in paths:
            limit = None if self.limit is None else self.limit - len(ids)
            if limit == 0:
                break
            selection, damage = await asyncio.to_thread(self._select, export_path, limit)
            self._count_selection(export_path, selection, damage)
            ids.extend(selection.ids)
        self.logger.info("Export of %s: %d ids to fetch", day, len(ids))
        return {"ids": ids, "day": day.isoformat()}

    def _select(self, path: Path, limit: int | None) -> tuple[ExportSelection, str | None]:
        """The ids of one export file, and where it is damaged if it is (worker thread)."""
        damage: list[str] = []

        def lines() -> Iterator[bytes]:
            with DumpFile(path) as dump:
                try:
                    for _, line in dump.lines():
                        yield line
                except DumpReadError as error:
                    damage.append(str(error))

        selection = select_export_ids(
            lines(),
            include_adult=self.include_adult or path.name.startswith("adult_"),
            include_video=self.include_video,
            min_popularity=self.min_popularity,
            limit=limit,
        )
        return selection, damage[0] if damage else None

    def _count_selection(self, path: Path, selection: ExportSelection, damage: str | None) -> None:
        for reason, count in selection.skipped.items():
            self.crawler.stats.inc_value(f"{self.stat_prefix}/export/skipped_{reason}", count)
        if selection.bad_lines:
            self.crawler.stats.inc_value(f"{self.stat_prefix}/export/bad_line", selection.bad_lines)
            self.logger.warning("%s: %d unreadable lines skipped", path.name, selection.bad_lines)
        if damage:
            self._damaged(path, damage)

    def _damaged(self, path: Path, damage: str) -> None:
        # What was read before the damage is still used; the error keeps the sync state
        # where it was, so the next run starts from a good file again.
        self.crawler.stats.inc_value(f"{self.stat_prefix}/export/damaged")
        self.logger.error("Export %s is damaged at %s", path.name, damage)

    async def records(
        self, paths: list[Path], to_item: ToItem, count_misshapen: CountMisshapen
    ) -> AsyncIterator[ContentItem]:
        """Items straight from export lines, for kinds whose line is the whole record;
        ``to_item`` maps a line's JSON, appending the names of fields of the wrong type,
        which ``count_misshapen`` (the record's key, those names) counts and logs."""
        flow = ItemFlow(self.crawler, self.crawler.settings.getint("STORE_BATCH_SIZE") * 2)
        count = 0
        for path in paths:
            bad_before = self.bad_lines
            with DumpFile(path) as dump:
                try:
                    for number, line in dump.lines():
                        item = self._record(path, number, line, to_item, count_misshapen)
                        if item is None:
                            continue
                        yield item
                        if not await flow.sent():
                            return
                        count += 1
                        if self.limit is not None and count >= self.limit:
                            return
                except DumpReadError as error:
                    self.bad_lines += 1
                    self._damaged(path, str(error))
                lines = dump.line_number
            if import_failed(self.crawler, "tmdb", path.name, lines, self.bad_lines - bad_before):
                self.failed = True

    def _record(
        self,
        path: Path,
        number: int,
        line: bytes,
        to_item: ToItem,
        count_misshapen: CountMisshapen,
    ) -> ContentItem | None:
        """The item of one export line; None for a blank line or a bad one (counted, logged)."""
        if not line.strip():
            return None
        misshapen: list[str] = []
        try:
            item = to_item(json.loads(line), misshapen)
        except (ValueError, KeyError, TypeError, RecursionError) as error:
            self.bad_lines += 1
            self.crawler.stats.inc_value(f"{self.stat_prefix}/export/bad_line")
            self.logger.warning("%s line %d skipped: %s", path.name, number, repr(error)[:200])
            return None
        count_misshapen(getattr(item, item.key_field), misshapen)
        return item

    async def _fetch(self, prefix: str, day: date | None = None) -> tuple[Path, date] | None:
        """Today's export file (UTC), else the previous day's; None when neither exists."""
        settings = self.crawler.settings
        today = datetime.now(UTC).date()
        days = [day] if day else [today, today - timedelta(days=1)]
        for candidate in days:
            url = f"{self.exports_url}/{export_file_name(prefix, candidate)}"
            published = await asyncio.to_thread(
                export_published,
                url,
                user_agent=settings.get("USER_AGENT") or "contentcrawl",
                timeout=settings.getfloat("DOWNLOAD_TIMEOUT"),
            )
            if not published:
                self.logger.info("Export %s is not published (yet)", redact_url(url))
                continue
            result = await fetch_dump(self.crawler, url)
            return result.path, candidate
        self.logger.error("No TMDB export %s for %s", prefix, " or ".join(map(str, days)))
        return None


async def fetched_since(
    crawler: Crawler, collection: str, ids: Sequence[int], since: str
) -> set[int]:
    """The ids among ``ids`` whose stored record was fetched at or after ``since``."""
    fetched = await crawl_store(crawler).run(
        lambda store: store.fetched_times(collection, list(ids))
    )
    return {key for key, fetched_at in fetched.items() if fetched_at >= since}
