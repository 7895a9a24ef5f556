"""A local TMDB: the v3 API and the daily-export host, with the real service's quirks.

Bodies come from recorded real responses (``spiders_tests/data/tmdb``). What the fake
reproduces: 401 for a missing or wrong credential (real body, ``status_code`` 7); 404 with
``status_code`` 34 for unknown ids; 429 with ``Retry-After`` and ``status_code`` 25 above
``rate_limit`` requests in any one second; ``append_to_response`` (only the parts asked
for, ``season/N`` included); ``/changes`` paged by 100 with 422 for windows over 14 days
and, with ``changes_lie``, the 2019 behaviour (every result on page 1, ``total_pages: 1``);
list pages of 20; gzip JSON-lines exports, 403 (S3) for a file not published.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

from spiders_tests.fakes.server import FakeRequest, FakeResponse, FakeServer, serve_bytes

DATA = Path(__file__).resolve().parent.parent / "data" / "tmdb"
KINDS = ("movie", "tv", "person", "collection", "company", "network", "keyword")
LIST_PAGE_SIZE = 20
CHANGES_PAGE_SIZE = 100
# Parts a detail endpoint appends on request (the union over kinds).
APPENDABLE = frozenset(
    {
        "account_states",
        "aggregate_credits",
        "alternative_titles",
        "changes",
        "content_ratings",
        "credits",
        "external_ids",
        "images",
        "keywords",
        "lists",
        "movie_credits",
        "recommendations",
        "release_dates",
        "releases",
        "reviews",
        "similar",
        "tagged_images",
        "translations",
        "tv_credits",
        "videos",
    }
)
S3_MISSING = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied</Message></Error>"
)


def load(name: str) -> Any:
    """A recorded real body from ``spiders_tests/data/tmdb``."""
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def movie_550() -> dict[str, Any]:
    """Fight Club as one appended detail body, assembled from its recorded sub-resources."""
    movie = load("movie_550_2024.json")
    for part, name in (
        ("credits", "movie_550_credits_2024.json"),
        ("keywords", "movie_550_keywords_2024.json"),
        ("external_ids", "movie_550_external_ids_2024.json"),
        ("release_dates", "movie_550_release_dates_2024.json"),
    ):
        body = load(name)
        # Appended parts do not repeat the record's id (see movie_47964_append_15_parts).
        body.pop("id", None)
        movie[part] = body
    return movie


def export_gz(lines: list[dict[str, Any]]) -> bytes:
    """An export file's bytes: one compact JSON object per line, gzip-compressed."""
    text = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
    return gzip.compress(text.encode())


class TmdbFake:
    """The API on ``api`` (``/3/...``) and the export files on ``exports`` (``/p/exports/...``)."""

    def __init__(
        self,
        api: FakeServer,
        exports: FakeServer,
        *,
        token: str = "fake-read-access-token",  # noqa: S107 - a test credential
        api_key: str = "fakeapikey0123456789",
        rate_limit: int = 40,
    ) -> None:
        self.api = api
        self.exports = exports
        self.token = token
        self.api_key = api_key
        self.rate_limit = rate_limit
        self.records: dict[str, dict[int, dict[str, Any]]] = {kind: {} for kind in KINDS}
        # kind -> [(day, {"id": ..., "adult": ...})]
        self.changes: dict[str, list[tuple[date, dict[str, Any]]]] = defaultdict(list)
        self.changes_lie = False
        self.lists: dict[str, list[int]] = {}
        self.export_files: dict[str, bytes] = {}
        self.rate_limited = 0
        self.rate_limited_at: list[float] = []
        self._failures: list[tuple[re.Pattern[str], deque[int]]] = []
        self._arrivals: deque[float] = deque()
        self._lock = threading.Lock()
        api.route("GET", r"/3/(?P<kind>movie|tv|person)/changes")(self._changes)
        api.route("GET", r"/3/(?P<path>trending/(?:movie|tv|person)/(?:day|week))")(self._list)
        api.route(
            "GET",
            r"/3/(?P<path>(?:movie|tv|person)/"
            r"(?:popular|now_playing|upcoming|top_rated|on_the_air|airing_today))",
        )(self._list)
        api.route("GET", r"/3/(?P<kind>" + "|".join(KINDS) + r")/(?P<tmdb_id>\d+)")(self._detail)
        for method in ("GET", "HEAD"):
            exports.route(method, r"/p/exports/(?P<name>[^/]+)")(self._export)

    # -- set-up ---------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """Scrapy settings pointing the TMDB spiders at this fake, authenticated by token."""
        return {
            "TMDB_API_URL": f"{self.api.url}/3",
            "TMDB_EXPORTS_URL": f"{self.exports.url}/p/exports",
            "TMDB_IMAGE_URL": "https://image.example/t/p/w500",
            "TMDB_READ_ACCESS_TOKEN": self.token,
            "TMDB_API_KEY": "",
        }

    def environment(self) -> dict[str, str]:
        """What points a ``scrapy`` child process at this fake: its environment variables."""
        settings = self.settings()
        names = ("TMDB_API_URL", "TMDB_EXPORTS_URL", "TMDB_READ_ACCESS_TOKEN")
        return {name: settings[name] for name in names}

    def add(self, kind: str, payload: dict[str, Any]) -> None:
        """Serve ``payload`` (with every appendable part it has) at ``/3/<kind>/<id>``."""
        self.records[kind][payload["id"]] = payload

    def add_clone(self, kind: str, payload: dict[str, Any], tmdb_id: int) -> dict[str, Any]:
        """Serve a copy of a real record under another id (bulk catalogues for paging tests).
        The copy shares its nested parts (credits, keywords, …) with ``payload``: the fake only
        reads records, and a deep copy of a whole movie costs 1.6 ms, a catalogue seconds."""
        clone = {**payload, "id": tmdb_id}
        for field in ("title", "name"):
            if field in clone:
                clone[field] = f"{clone[field]} #{tmdb_id}"
        self.add(kind, clone)
        return clone

    def add_export(self, prefix: str, day: date, lines: list[dict[str, Any]]) -> str:
        """Publish an export file (``movie_ids`` …) for ``day``; returns its file name."""
        name = f"{prefix}_{day:%m_%d_%Y}.json.gz"
        self.export_files[name] = export_gz(lines)
        return name

    def add_change(self, kind: str, day: date, tmdb_id: int, adult: bool | None = False) -> None:
        """Make ``tmdb_id`` appear in ``/<kind>/changes`` for windows covering ``day``."""
        self.changes[kind].append((day, {"id": tmdb_id, "adult": adult}))

    def fail(self, path_pattern: str, *statuses: int) -> None:
        """Answer the next requests to paths matching ``path_pattern`` with ``statuses``."""
        self._failures.append((re.compile(path_pattern), deque(statuses)))

    # -- API --------------------------------------------------------------------------------
    def _gate(self, request: FakeRequest) -> FakeResponse | None:
        """Rate limit, then credentials, then injected failures (the real service's order)."""
        with self._lock:
            now = request.arrived
            while self._arrivals and now - self._arrivals[0] >= 1.0:
                self._arrivals.popleft()
            self._arrivals.append(now)
            if len(self._arrivals) > self.rate_limit:
                self.rate_limited += 1
                self.rate_limited_at.append(now)
                return FakeResponse.json(
                    {
                        "success": False,
                        "status_code": 25,
                        "status_message": "Your request count (#) is over the allowed limit "
                        f"of ({self.rate_limit}).",
                    },
                    429,
                    **{"Retry-After": "1"},
                )
        authorization = request.header("authorization")
        if authorization is not None:
            authorized = authorization == f"Bearer {self.token}"
        else:
            authorized = request.param("api_key") == self.api_key
        if not authorized:
            return FakeResponse.json(load("error_401_invalid_api_key.json"), 401)
        with self._lock:
            for pattern, statuses in self._failures:
                if statuses and pattern.fullmatch(request.path):
                    status = statuses.popleft()
                    return FakeResponse.json(
                        {"status_code": 11, "status_message": "Internal error."}, status
                    )
        return None

    def _detail(self, request: FakeRequest, kind: str, tmdb_id: str) -> FakeResponse:
        refused = self._gate(request)
        if refused is not None:
            return refused
        record = self.records[kind].get(int(tmdb_id))
        if record is None:
            return FakeResponse.json(load("error_404_movie_230.json"), 404)
        asked = {part for part in (request.param("append_to_response") or "").split(",") if part}
        body = {key: value for key, value in record.items() if key not in APPENDABLE}
        for part in asked:
            if part in APPENDABLE and part in record:
                body[part] = record[part]
            elif part.startswith("season/"):
                body[part] = self._season(record, int(part.split("/", 1)[1]))
        return FakeResponse.json(body)

    @staticmethod
    def _season(series: dict[str, Any], number: int) -> dict[str, Any]:
        season = next(
            (s for s in series.get("seasons") or [] if s.get("season_number") == number), {}
        )
        episodes = [
            {"episode_number": n, "season_number": number, "name": f"Episode {n}"}
            for n in range(1, (season.get("episode_count") or 0) + 1)
        ]
        return {**season, "episodes": episodes}

    def _changes(self, request: FakeRequest, kind: str) -> FakeResponse:
        refused = self._gate(request)
        if refused is not None:
            return refused
        start = date.fromisoformat(request.param("start_date") or date.today().isoformat())
        end = date.fromisoformat(request.param("end_date") or date.today().isoformat())
        if (end - start).days > 14:
            return FakeResponse.json(
                {"errors": ["invalid date range: should be a range no longer than 14 days"]},
                422,
            )
        results = [entry for day, entry in self.changes[kind] if start <= day <= end]
        page = int(request.param("page") or 1)
        if self.changes_lie:
            # 2019: everything on page 1, totals of 1 (movie_changes_2019.json).
            shown = results if page == 1 else []
            return FakeResponse.json(
                {"results": shown, "page": page, "total_pages": 1, "total_results": 1}
            )
        return FakeResponse.json(_page(results, page, CHANGES_PAGE_SIZE))

    def _list(self, request: FakeRequest, path: str) -> FakeResponse:
        refused = self._gate(request)
        if refused is not None:
            return refused
        kind = path.split("/")[1] if path.startswith("trending/") else path.split("/")[0]
        ids = self.lists.get(path, [])
        page = int(request.param("page") or 1)
        body = _page(ids, page, LIST_PAGE_SIZE)
        body["results"] = [
            {"id": tmdb_id, "media_type": kind, "popularity": 1.0} for tmdb_id in body["results"]
        ]
        return FakeResponse.json(body)

    # -- exports ----------------------------------------------------------------------------
    def _export(self, request: FakeRequest, name: str) -> FakeResponse:
        data = self.export_files.get(name)
        if data is None:
            return FakeResponse(403, S3_MISSING, {"Content-Type": "application/xml"})
        return serve_bytes(request, data, content_type="application/octet-stream")


def _page(results: list[Any], page: int, size: int) -> dict[str, Any]:
    total_pages = max(1, -(-len(results) // size))
    return {
        "page": page,
        "results": results[(page - 1) * size : page * size],
        "total_pages": total_pages,
        "total_results": len(results),
    }


@contextmanager
def exported_movies(count: int, day: date) -> Iterator[TmdbFake]:
    """A TMDB of ``count`` small movies (ids 1..count), all in ``day``'s export; 10 ms an
    answer and no rate limit to speak of."""
    api, exports = FakeServer(latency=0.01).start(), FakeServer().start()
    fake = TmdbFake(api, exports, rate_limit=100_000)
    ids = range(1, count + 1)
    for tmdb_id in ids:
        fake.add("movie", {"id": tmdb_id, "title": f"Movie {tmdb_id}"})
    fake.add_export("movie_ids", day, [{"id": i, "adult": False, "video": False} for i in ids])
    try:
        yield fake
    finally:
        api.stop()
        exports.stop()
