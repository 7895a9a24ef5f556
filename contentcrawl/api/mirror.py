"""What the API and the browse page ask of the mirror: pages, searches, records, links."""

from __future__ import annotations

# Inside Mirror, ``list`` is its method: annotations there say ``builtins.list``.
import builtins
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contentcrawl.api.kinds import KINDS, Kind, isbn_of, search_words
from contentcrawl.api.queries import Condition, Json, ReadQueries, queries_for
from contentcrawl.store import COLLECTION_KEYS, Store
from contentcrawl.store.base import META

MAX_PAGE_SIZE = 100
# Deep pages cost their offset in rows read; past this window, narrow the filters.
MAX_WINDOW = 10_000
# Related records shown inside a detail (a work's editions, an author's works).
RELATED_LIMIT = 50
# Fields a detail leaves to its own endpoint (``/movies/{id}/credits``).
DETAIL_OMITS = {"movies": ("credits",), "series": ("credits",)}


class BadParameterError(ValueError):
    """A request parameter the API cannot answer; ``name`` is the parameter."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


class RecordNotFoundError(LookupError):
    """The mirror holds no record with that id."""


class RecordDeletedError(LookupError):
    """The record was in the mirror but its source deleted it."""


@dataclass
class Page:
    """One page of records, and whether another follows."""

    items: list[Json]
    page: int
    page_size: int
    has_more: bool = False
    extra: Json = field(default_factory=dict)

    def as_json(self) -> Json:
        return {
            "items": self.items,
            "page": self.page,
            "page_size": self.page_size,
            "has_more": self.has_more,
            **self.extra,
        }


class Mirror:
    """Read access to one opened store for the API routes and the browse pages."""

    def __init__(self, store: Store, images_dir: Path, queries: ReadQueries | None = None) -> None:
        self.store = store
        self.images_dir = images_dir
        self.queries = queries or queries_for(store)

    # -- pages of records -------------------------------------------------------------
    def list(
        self, kind: Kind, filters: Mapping[str, Any], sort: str, page: int, page_size: int
    ) -> Page:
        """A page of records matching ``filters`` (filter name -> value), in ``sort`` order."""
        model = kind.model
        conditions = [
            Condition(model.filter(name), value)
            for name, value in filters.items()
            if value is not None
        ]
        try:
            order = model.sort(sort)
        except KeyError:
            raise BadParameterError("sort", f"unknown sort {sort!r}") from None
        offset = self._offset(page, page_size)
        records = self.queries.find(
            model,
            conditions,
            order,
            offset=offset,
            limit=page_size + 1,
            fields=kind.summary_fields(),
        )
        return self._page(kind, records, page, page_size)

    def search(self, kind: Kind, query: str, page: int, page_size: int) -> Page:
        """Records whose title (and the kind's other searched fields) hold the query's words.

        A book search that is an ISBN finds the editions with that ISBN.
        """
        offset = self._offset(page, page_size)
        isbn = isbn_of(query) if kind.name == "books" else None
        if isbn is not None:
            model = kind.model
            records = self.queries.find(
                model,
                [Condition(model.filter("isbn"), isbn)],
                model.rank,
                offset=offset,
                limit=page_size + 1,
                fields=kind.summary_fields(),
            )
            return self._page(kind, records, page, page_size)
        words = search_words(query)
        if not words:
            raise BadParameterError("query", "the query needs at least one letter or digit")
        records = self.queries.search(
            kind.model, words, offset=offset, limit=page_size + 1, fields=kind.summary_fields()
        )
        return self._page(kind, records, page, page_size)

    @staticmethod
    def _offset(page: int, page_size: int) -> int:
        if page < 1:
            raise BadParameterError("page", "page starts at 1")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise BadParameterError("page_size", f"page_size must be 1 to {MAX_PAGE_SIZE}")
        if page * page_size > MAX_WINDOW:
            raise BadParameterError(
                "page",
                f"page x page_size may not exceed {MAX_WINDOW}: narrow the filters instead",
            )
        return (page - 1) * page_size

    def _page(self, kind: Kind, records: builtins.list[Json], page: int, page_size: int) -> Page:
        return Page(
            [self.summary(kind, record) for record in records[:page_size]],
            page,
            page_size,
            has_more=len(records) > page_size,
        )

    def summary(self, kind: Kind, record: Json) -> Json:
        """A list entry: the summary fields, its URL ``id`` and display ``image``."""
        entry = {name: value for name, value in record.items() if name != "images"}
        entry["id"] = kind.url_id(record[kind.key_field])
        entry["image"] = self.image(kind, record)
        return entry

    # -- single records ---------------------------------------------------------------
    def record(self, kind: Kind, url_id: str) -> Json:
        """The stored record (``_meta`` included) with its URL ``id`` and display ``image``."""
        record = self.store.get(kind.name, kind.store_key(url_id))
        if record is None:
            raise RecordNotFoundError(f"no {kind.singular} {url_id} in the mirror")
        deleted_at = (record.get(META) or {}).get("deleted_at")
        if deleted_at:
            raise RecordDeletedError(
                f"{kind.singular} {url_id} was deleted at the source (noticed {deleted_at})"
            )
        record["id"] = url_id
        record["image"] = self.image(kind, record)
        return record

    def detail(self, kind: Kind, url_id: str) -> Json:
        """A record as ``/<kind>/{id}`` serves it: bulky parts left out, links resolved."""
        record = self.record(kind, url_id)
        for name in DETAIL_OMITS.get(kind.name, ()):
            record.pop(name, None)
        return self.with_links(kind, record)

    def with_links(self, kind: Kind, record: Json) -> Json:
        """The record with the records it names added (``authors``, ``editions``, ...)."""
        if kind.name == "people":
            for credits_field, collection in (
                ("movie_credits", "movies"),
                ("tv_credits", "series"),
            ):
                record[credits_field] = self._flag_credits(record.get(credits_field), collection)
        elif kind.name == "books":
            record["work"] = self._linked(KINDS["works"], [record.get("work_key")])
            record["authors"] = self._linked(KINDS["authors"], record.get("author_keys") or [])
        elif kind.name == "works":
            record["authors"] = self._linked(KINDS["authors"], record.get("author_keys") or [])
            record["editions"] = self.related(KINDS["books"], "work", record["ol_key"])
        elif kind.name == "authors":
            record["works"] = self.related(KINDS["works"], "author", record["ol_key"])
        elif kind.name == "artists":
            record["albums"] = self.related(KINDS["albums"], "artist", record["mbid"])
        elif kind.name == "albums":
            record["artists"] = self._linked(KINDS["artists"], record.get("artist_mbids") or [])
        return record

    def credits(self, kind: Kind, url_id: str) -> Json:
        """What ``/<kind>/{id}/credits`` serves (see ``credits_of``)."""
        return self.credits_of(kind, self.record(kind, url_id))

    def credits_of(self, kind: Kind, record: Json) -> Json:
        """Cast and crew of a movie or series, each flagged ``in_mirror``; a game's companies."""
        if kind.name == "games":
            return {"companies": record.get("involved_companies") or []}
        return self._flag_credits(record.get("credits"), "people")

    def related(self, kind: Kind, filter_name: str, value: Any) -> builtins.list[Json]:
        """Up to ``RELATED_LIMIT`` records of ``kind`` whose ``filter_name`` matches ``value``."""
        return self.list(kind, {filter_name: value}, kind.model.rank.name, 1, RELATED_LIMIT).items

    def _linked(self, kind: Kind, keys: Iterable[Any]) -> builtins.list[Json]:
        """Summaries of the records among ``keys`` that the mirror has, in ``keys`` order."""
        wanted = [key for key in keys if key]
        found = self.queries.get_many(kind.name, wanted, kind.summary_fields())
        return [self.summary(kind, found[key]) for key in wanted if key in found]

    def _flag_credits(self, given: Any, collection: str) -> Json:
        """Credits (``{"cast", "crew"}``) with ``in_mirror`` on each entry the mirror has."""
        given = given if isinstance(given, dict) else {}
        parts = {name: list(given.get(name) or []) for name in ("cast", "crew")}
        ids = [entry.get("id") for part in parts.values() for entry in part]
        present = self.queries.get_many(collection, [i for i in ids if i is not None], [])
        for part in parts.values():
            for entry in part:
                entry["in_mirror"] = entry.get("id") in present
        return parts

    # -- overviews --------------------------------------------------------------------
    def genres(self, kind: Kind) -> builtins.list[Json]:
        """The genres of a kind with their number of records, most common first."""
        model = kind.model
        return [
            {"name": name, "count": count}
            for name, count in self.queries.facet(model, model.filter("genre"))
        ]

    def stats(self) -> dict[str, Json]:
        """Number of records and newest update of every collection."""
        return {
            collection: {
                "count": self.store.count(collection),
                "last_updated": self.store.last_updated(collection),
            }
            for collection in COLLECTION_KEYS
        }

    def image(self, kind: Kind, record: Json) -> Json | None:
        """``{"url", "local"}``: the downloaded copy under ``/images`` when there is one."""
        remote = None
        for name in kind.images:
            value = record.get(name)
            remote = value[0] if isinstance(value, list) and value else value
            if isinstance(remote, str) and remote:
                break
        if not isinstance(remote, str) or not remote:
            return None
        for downloaded in record.get("images") or []:
            path = downloaded.get("path") if isinstance(downloaded, dict) else None
            if path and downloaded.get("url") == remote and (self.images_dir / path).is_file():
                return {"url": f"/images/{path}", "local": True}
        return {"url": remote, "local": False}
