"""TMDB listings: changes and list pages, given ids, and the store's stale and referenced
ids."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contentcrawl.extensions.crawl_store import crawl_store
from contentcrawl.items import ContentItem, Json
from contentcrawl.sources.tmdb.mappers import is_tmdb_id

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

    from contentcrawl.sources.tmdb.plans import Logger
    from contentcrawl.store import Store

# TMDB serves at most 14 days of changes per request and 100 ids per changes page.
CHANGES_WINDOW_DAYS = 14
CHANGES_PAGE_SIZE = 100
# The API refuses pages above 500 on its lists.
MAX_LIST_PAGE = 500


def change_windows(since: date, until: date) -> list[tuple[date, date]]:
    """``since``..``until`` cut into windows of at most 14 days (at least one window)."""
    windows = []
    start = since
    while True:
        end = min(start + timedelta(days=CHANGES_WINDOW_DAYS), until)
        windows.append((start, end))
        if end >= until:
            return windows
        start = end


def listed_total(value: Any) -> int:
    """A listing's total (pages, results); 0 when it is missing or not a number."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def listed_ids(payload: Json) -> tuple[list[tuple[Json, int]], list[Any]]:
    """The ``(entry, id)`` of a listing page's results with an id, and the entries without."""
    results = payload.get("results")
    entries = results if isinstance(results, list) else []
    listed: list[tuple[Json, int]] = []
    unusable: list[Any] = []
    for entry in entries:
        tmdb_id = entry.get("id") if isinstance(entry, dict) else None
        if is_tmdb_id(tmdb_id):
            listed.append((entry, tmdb_id))
        else:
            unusable.append(entry)
    if results and not isinstance(results, list):
        unusable.append(results)
    return listed, unusable


def next_page(payload: Json, page: int, page_size: int = CHANGES_PAGE_SIZE) -> int | None:
    """The page to ask for after ``page``, or None when the listing is done.

    TMDB's totals are not trusted alone: ``/changes`` once answered ``total_pages: 1``
    with 1,637 results on that page. A full page means there may be more; an
    empty or short page beyond the stated total ends the listing.
    """
    results = payload.get("results")
    if not isinstance(results, list) or not results:
        return None
    total_pages = listed_total(payload.get("total_pages"))
    if page < total_pages or len(results) >= page_size:
        return page + 1
    return None


# Which ids stored records reference (mode=missing).


def _ids_in(entries: Iterable[Any] | None) -> Iterator[int]:
    for entry in entries or ():
        if isinstance(entry, dict) and isinstance(entry.get("id"), int):
            yield entry["id"]


def credit_person_ids(document: Json) -> Iterator[int]:
    """People in a movie's or series' credits (cast, crew) and a series' creators."""
    yield from _credit_ids(document.get("credits"))
    yield from _ids_in(document.get("created_by"))


def collection_ids(document: Json) -> Iterator[int]:
    """The collection a movie belongs to."""
    yield from _ids_in([document.get("belongs_to_collection")])


def company_ids(document: Json) -> Iterator[int]:
    """Production companies of a movie or series, and a company's parent."""
    yield from _ids_in(document.get("production_companies"))
    yield from _ids_in([document.get("parent_company")])


def network_ids(document: Json) -> Iterator[int]:
    """Networks of a series."""
    yield from _ids_in(document.get("networks"))


def keyword_ids(document: Json) -> Iterator[int]:
    """Keywords of a movie or series."""
    yield from _ids_in(document.get("keywords"))


def collection_part_ids(document: Json) -> Iterator[int]:
    """Movies of a collection."""
    yield from _ids_in(document.get("parts"))


def person_movie_ids(document: Json) -> Iterator[int]:
    """Movies in a person's credits."""
    yield from _credit_ids(document.get("movie_credits"))


def person_series_ids(document: Json) -> Iterator[int]:
    """Series in a person's credits."""
    yield from _credit_ids(document.get("tv_credits"))


def _credit_ids(part: Json | None) -> Iterator[int]:
    part = part or {}
    yield from _ids_in(part.get("cast"))
    yield from _ids_in(part.get("crew"))


Extractor = Callable[[Json], Iterable[int]]


def changes_key(start: date, end: date, page: int) -> str:
    """A changes page's key in a distributed run (a ``:`` marks a key with no record)."""
    return f"changes:{start.isoformat()}:{end.isoformat()}:{page}"


def list_key(path: str, page: int) -> str:
    """A list page's key in a distributed run (the path last: it may hold anything)."""
    return f"list:{page}:{path}"


def parse_ids(text: str) -> list[int]:
    """``-a ids=550,551``: comma or whitespace separated positive integers."""
    ids = []
    for token in text.replace(",", " ").split():
        if not token.isdigit() or int(token) < 1:
            raise ValueError(f"not a TMDB id: {token!r}")
        ids.append(int(token))
    return ids


def read_ids_file(path: str | Path) -> list[int]:
    """``-a ids_file=…``: one id per line; blank lines and ``#`` comments are skipped."""
    ids = []
    with Path(path).open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            try:
                ids.extend(parse_ids(text))
            except ValueError as error:
                raise ValueError(f"{path}:{number}: {error}") from None
    return ids


def parse_list_pages(text: str) -> int:
    """``-a pages=N``: list pages to read, 1 to ``MAX_LIST_PAGE`` (TMDB serves no more)."""
    pages = int(text) if text.isdigit() else 0
    if not 1 <= pages <= MAX_LIST_PAGE:
        raise ValueError(text)
    return pages


# --- the store's ids: stale (mode=refresh), missing (mode=missing) ---------------------------


async def stale_ids(
    crawler: Crawler, item_class: type[ContentItem], older_than_days: int, logger: Logger
) -> list[int]:
    """The stored records not fetched for ``older_than_days`` (none flagged deleted)."""
    cutoff = datetime.now(UTC) - timedelta(days=older_than_days)
    ids = await crawl_store(crawler).run(
        _stale_ids, item_class, cutoff.strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    logger.info(
        "%d %s not fetched for %d days",
        len(ids),
        item_class.collection,
        older_than_days,
    )
    return ids


def _stale_ids(store: Store, item_class: type[ContentItem], cutoff: str) -> list[int]:
    return [
        document[item_class.key_field]
        for document in store.iter_documents(item_class.collection)
        if (document.get("_meta") or {}).get("fetched_at", "") <= cutoff
        and not (document.get("_meta") or {}).get("deleted_at")
    ]


async def missing_ids(
    crawler: Crawler,
    item_class: type[ContentItem],
    references: Iterable[tuple[str, Extractor]],
    logger: Logger,
) -> list[int]:
    """The ids stored records reference (``references``: collections and their extractors)
    that the store lacks."""
    ids = await crawl_store(crawler).run(_missing_ids, item_class, references)
    logger.info("%d %s referenced but not stored", len(ids), item_class.collection)
    return ids


def _missing_ids(
    store: Store, item_class: type[ContentItem], references: Iterable[tuple[str, Extractor]]
) -> list[int]:
    referenced: set[int] = set()
    for collection, extractor in references:
        for document in store.iter_documents(collection):
            referenced.update(extractor(document))
    key_field = item_class.key_field
    for document in store.iter_documents(item_class.collection):
        referenced.discard(document[key_field])
    return sorted(referenced)
