"""A local MusicBrainz ws/2 and JSON-dump host with MusicBrainz's limits and quirks.

API routes on a ``FakeServer`` under ``/ws/2``: artist search (``/artist?query=``), artist
lookup (``/artist/<mbid>?inc=``), release-group browse (``/release-group?artist=``) and
lookup (``/release-group/<mbid>?inc=``). ``hold(n)`` leaves the n-th API request matching a
pattern unanswered until ``release()`` (a request in flight when a test kills its crawler).
What it does as MusicBrainz does (see ``data/musicbrainz`` and docs/sources.md):

- every JSON object comes back with its keys in a new random order;
- a search answers ``{created, count, offset, artists}``, 25 hits unless ``limit`` (≤ 100)
  is given, paged by ``offset``; ``life-span.ended`` is null in hits, false in lookups;
- a lookup carries only what ``inc`` asks for, and at most 25 linked entities of a kind
  (``inc=release-groups``); a browse pages ``{release-group-count, release-group-offset,
  release-groups}`` by ``limit`` (25 by default, ≤ 100) and ``offset``;
- rate limit: a request that arrives less than ``min_interval`` seconds (1.0, the fake's own
  clock) after the previous one, refused ones included, gets 503 with MusicBrainz's error
  envelope and a ``Retry-After``; ``reject_next`` refuses the next requests outright;
- a User-Agent without a ``( contact )`` gets 403; an unknown MBID 404, a malformed one or
  an unknown ``inc`` 400, each with ws/2's ``{"error": …}`` body.

The artists are the sample artists of ``fakes/musicbrainz_samples.py``, made from the
recorded bodies. The recorded searches answer their own query; any other query matches
artists whose name, sort name or an alias contains every word of it.

The dump host serves ``/pub/musicbrainz/data/json-dumps/LATEST`` and ``<LATEST>/<entity>.
tar.xz`` archives built with ``build_archive`` (``fakes/musicbrainz_samples.py``) from the
same entity JSON, as a CDN does (ETag, Last-Modified, conditional GET, Range).
"""

from __future__ import annotations

import copy
import json
import random
import re
import threading
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from spiders_tests.fakes.musicbrainz_samples import (
    FakeArtist,
    credit_of,
    recorded_searches,
    sample_artists,
)
from spiders_tests.fakes.server import (
    FakeRequest,
    FakeResponse,
    FakeServer,
    RequestHold,
    serve_bytes,
)

CONTACT = "tests@contentcrawl.example"
LATEST = "20210518-001001"
DUMPS_PATH = "/pub/musicbrainz/data/json-dumps"
# The envelope is recorded (PROVENANCE.md); the link after "Please see" is ours.
RATE_LIMIT_BODY = {
    "error": "Your requests are exceeding the allowable rate limit. Please see "
    "https://musicbrainz.org/doc/MusicBrainz_API/Rate_Limiting for more information.",
    "help": "For usage, please see: https://musicbrainz.org/development/mmd",
}
ARTIST_INCS = {
    "aliases",
    "annotation",
    "tags",
    "genres",
    "ratings",
    "url-rels",
    "artist-rels",
    "release-groups",
    "releases",
    "recordings",
    "works",
}
BROWSE_INCS = {"artist-credits", "tags", "genres", "ratings", "aliases", "annotation"}
LINKED_CAP = 25  # lookups list at most 25 linked entities of a kind
DEFAULT_LIMIT, MAX_LIMIT = 25, 100
_USER_AGENT = re.compile(r"\S+/\S+ \( \S.* \)")
_MBID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Keys of a lookup that only an ``inc`` brings, with what MusicBrainz sends when there is none.
INC_KEYS: dict[str, tuple[str, Any]] = {
    "aliases": ("aliases", []),
    "tags": ("tags", []),
    "genres": ("genres", []),
    "ratings": ("rating", {"value": None, "votes-count": 0}),
}


def shuffled(value: Any, rng: random.Random) -> Any:
    """``value`` with every object's keys in a random order, as ws/2 sends them."""
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {key: shuffled(value[key], rng) for key in keys}
    if isinstance(value, list):
        return [shuffled(entry, rng) for entry in value]
    return value


def _error(status: int, message: str, **headers: str) -> FakeResponse:
    return FakeResponse.json({"error": message}, status, **headers)


class FakeMusicBrainz:
    """ws/2 and the dump host on a ``FakeServer``; see the module docstring."""

    def __init__(
        self,
        server: FakeServer,
        artists: dict[str, FakeArtist] | None = None,
        *,
        min_interval: float = 1.0,
        retry_after: str | None = "1",
        dumps: dict[str, bytes] | None = None,
        seed: int = 6,
    ) -> None:
        self.server = server
        self.artists = sample_artists() if artists is None else artists
        self.searches = recorded_searches()
        self.min_interval = min_interval
        self.retry_after = retry_after
        self.dumps = dict(dumps or {})
        self.reject_next = 0
        # Requests answered 503 by the rate limit or reject_next, by arrival time.
        self.rejected: list[FakeRequest] = []
        self._last_arrival: float | None = None
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        # Kill tests hold one request back (``holds.hold(n)``) and kill its sender.
        self.holds = RequestHold(r"/ws/2/.*")
        server.route("GET", r"/ws/2/artist/?")(self._api(self._search))
        server.route("GET", r"/ws/2/artist/(?P<mbid>[^/]+)")(self._api(self._lookup))
        server.route("GET", r"/ws/2/release-group/?")(self._api(self._browse))
        server.route("GET", r"/ws/2/release-group/(?P<mbid>[^/]+)")(self._api(self._release_group))
        server.route("GET", rf"{DUMPS_PATH}/LATEST")(self._latest)
        server.route("GET", rf"{DUMPS_PATH}/(?P<name>[^/]+)/(?P<file>[^/]+)")(self._dump)

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """Settings pointing the spider here, with a contact."""
        return {
            "MUSICBRAINZ_API_URL": f"{self.server.url}/ws/2",
            "MUSICBRAINZ_DUMPS_URL": f"{self.server.url}{DUMPS_PATH}",
            "MUSICBRAINZ_CONTACT": CONTACT,
            **overrides,
        }

    def next_run(self) -> None:
        """Forget the last arrival: a test's next crawl starts within milliseconds of the
        previous one, which a real run (a new process) never does."""
        with self._lock:
            self._last_arrival = None

    def api_hits(self, path_pattern: str = r"/ws/2/.*") -> list[FakeRequest]:
        """API requests that reached the fake, refused ones included."""
        return self.server.hits(path_pattern)

    def answered(self, path_pattern: str = r"/ws/2/.*") -> list[FakeRequest]:
        """API requests that got past the rate limit (a retried request counts once)."""
        refused = {id(request) for request in self.rejected}
        return [hit for hit in self.api_hits(path_pattern) if id(hit) not in refused]

    # -- the API's gate: rate limit, User-Agent ------------------------------------------
    def _api(self, handler: Any) -> Any:
        def gated(request: FakeRequest, **groups: str) -> FakeResponse:
            with self._lock:
                last, self._last_arrival = self._last_arrival, request.arrived
                too_fast = last is not None and request.arrived - last < self.min_interval
                if self.reject_next > 0 or too_fast:
                    self.reject_next = max(0, self.reject_next - 1)
                    self.rejected.append(request)
                    headers = {"Retry-After": self.retry_after} if self.retry_after else {}
                    return FakeResponse.json(RATE_LIMIT_BODY, 503, **headers)
            if not _USER_AGENT.fullmatch(request.header("user-agent") or ""):
                return _error(403, "Your User-Agent is missing a contact: App/version ( contact ).")
            self.holds.held_back(request)
            response = handler(request, **groups)
            if response.status == 200 and "json" in response.headers.get("Content-Type", ""):
                with self._lock:
                    body = shuffled(json.loads(response.body), self._rng)
                response.body = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
            return response

        return gated

    @staticmethod
    def _paging(request: FakeRequest) -> tuple[int, int] | FakeResponse:
        try:
            limit = int(request.param("limit") or DEFAULT_LIMIT)
            offset = int(request.param("offset") or 0)
        except ValueError:
            return _error(400, "Invalid limit or offset.")
        if limit < 1 or offset < 0:
            return _error(400, "Invalid limit or offset.")
        return min(limit, MAX_LIMIT), offset

    @staticmethod
    def _incs(request: FakeRequest, allowed: set[str]) -> set[str] | FakeResponse:
        # "+" arrives as a space once the query string is decoded.
        incs = {inc for inc in re.split(r"[+ ]", request.param("inc") or "") if inc}
        unknown = sorted(incs - allowed)
        if unknown:
            return _error(400, f"{unknown[0]} is not a valid inc parameter for this resource.")
        return incs

    # -- search ----------------------------------------------------------------------------
    def _search(self, request: FakeRequest) -> FakeResponse:
        query = (request.param("query") or "").strip()
        if not query:
            return _error(400, "Missing required parameter: query.")
        paging = self._paging(request)
        if isinstance(paging, FakeResponse):
            return paging
        limit, offset = paging
        hits = self.searches.get(query.lower())
        if hits is None:
            hits = self._matches(query)
        return FakeResponse.json(
            {
                "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                "count": len(hits),
                "offset": offset,
                "artists": copy.deepcopy(hits[offset : offset + limit]),
            }
        )

    def _matches(self, query: str) -> list[dict[str, Any]]:
        words = query.lower().split()
        hits = []
        for artist in self.artists.values():
            doc = artist.doc
            names = [doc.get("name") or "", doc.get("sort-name") or ""]
            names += [alias.get("name") or "" for alias in doc.get("aliases") or []]
            text = " ".join(names).lower()
            if all(word in text for word in words):
                exact = (doc.get("name") or "").lower() == query.lower()
                hit = {
                    key: doc[key]
                    for key in ("id", "type", "name", "sort-name", "country", "disambiguation")
                    if key in doc
                }
                life = {k: v for k, v in (doc.get("life-span") or {}).items() if k != "ended"}
                hit.update({"score": 100 if exact else 80, "life-span": {**life, "ended": None}})
                hits.append(hit)
        return sorted(hits, key=lambda hit: (-hit["score"], hit["name"]))

    # -- lookup ----------------------------------------------------------------------------
    def _lookup(self, request: FakeRequest, mbid: str) -> FakeResponse:
        if not _MBID.fullmatch(mbid):
            return _error(400, "Invalid mbid.")
        incs = self._incs(request, ARTIST_INCS)
        if isinstance(incs, FakeResponse):
            return incs
        artist = self.artists.get(mbid)
        if artist is None:
            return _error(404, "Not Found")
        doc = copy.deepcopy(artist.doc)
        for inc, (key, empty) in INC_KEYS.items():
            if inc in incs:
                doc.setdefault(key, empty)
            else:
                doc.pop(key, None)
        relations = doc.pop("relations", [])
        if "url-rels" in incs:
            doc["relations"] = [rel for rel in relations if rel.get("target-type") == "url"]
        if "release-groups" in incs:
            doc["release-groups"] = copy.deepcopy(artist.release_groups[:LINKED_CAP])
        return FakeResponse.json(doc)

    # -- browse ----------------------------------------------------------------------------
    def _browse(self, request: FakeRequest) -> FakeResponse:
        mbid = request.param("artist") or ""
        if not _MBID.fullmatch(mbid):
            return _error(400, "Invalid artist mbid.")
        paging = self._paging(request)
        if isinstance(paging, FakeResponse):
            return paging
        incs = self._incs(request, BROWSE_INCS)
        if isinstance(incs, FakeResponse):
            return incs
        artist = self.artists.get(mbid)
        if artist is None:
            return _error(404, "Not Found")
        limit, offset = paging
        groups = [
            _release_group_body(stored, artist, incs)
            for stored in artist.release_groups[offset : offset + limit]
        ]
        return FakeResponse.json(
            {
                "release-group-count": len(artist.release_groups),
                "release-group-offset": offset,
                "release-groups": groups,
            }
        )

    def _release_group(self, request: FakeRequest, mbid: str) -> FakeResponse:
        if not _MBID.fullmatch(mbid):
            return _error(400, "Invalid mbid.")
        incs = self._incs(request, BROWSE_INCS)
        if isinstance(incs, FakeResponse):
            return incs
        for artist in self.artists.values():
            for stored in artist.release_groups:
                if stored["id"] == mbid:
                    return FakeResponse.json(_release_group_body(stored, artist, incs))
        return _error(404, "Not Found")

    # -- dump host -------------------------------------------------------------------------
    def _latest(self, request: FakeRequest) -> FakeResponse:
        return FakeResponse(200, f"{LATEST}\n".encode(), {"Content-Type": "text/plain"})

    def _dump(self, request: FakeRequest, name: str, file: str) -> FakeResponse:
        if name != LATEST or file not in self.dumps:
            return FakeResponse(404, b"Not Found", {"Content-Type": "text/plain"})
        return serve_bytes(request, self.dumps[file], content_type="application/x-xz")


def _release_group_body(
    stored: dict[str, Any], artist: FakeArtist, incs: set[str]
) -> dict[str, Any]:
    """A release group as a browse or lookup sends it: what ``incs`` ask for, no more."""
    group = {k: v for k, v in copy.deepcopy(stored).items() if k != "artist-credit"}
    if "artist-credits" in incs:
        group["artist-credit"] = copy.deepcopy(stored.get("artist-credit") or credit_of(artist.doc))
    for inc, (key, empty) in INC_KEYS.items():
        if inc in incs:
            group.setdefault(key, empty)
        else:
            group.pop(key, None)
    return group


def gaps(requests: list[FakeRequest]) -> list[float]:
    """Seconds between consecutive arrivals."""
    times = sorted(request.arrived for request in requests)
    return [later - earlier for earlier, later in pairwise(times)]
