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

The artists are the three recorded lookups (Tombs, Perkele, Ed Sheeran) with the release
groups recorded with them, and the artists of the recorded Manowar and Solstice searches
(lookup bodies made from their search hits: score dropped, ``ended`` false, as a lookup
has them; no release groups). The recorded searches answer their own query; any other
query matches artists whose name, sort name or an alias contains every word of it.

The dump host serves ``/pub/musicbrainz/data/json-dumps/LATEST`` and ``<LATEST>/<entity>.
tar.xz`` archives built with ``build_archive`` from the same entity JSON, as a CDN does
(ETag, Last-Modified, conditional GET, Range).
"""

from __future__ import annotations

import copy
import io
import json
import random
import re
import tarfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

from spiders_tests.fakes.server import (
    FakeRequest,
    FakeResponse,
    FakeServer,
    RequestHold,
    serve_bytes,
)

DATA = Path(__file__).parent.parent / "data" / "musicbrainz"
CONTACT = "tests@contentcrawl.example"
LATEST = "20210518-001001"
DUMP_TIMESTAMP = "2021-05-18 00:10:01.481391+00"
DUMPS_PATH = "/pub/musicbrainz/data/json-dumps"
TOMBS = "8b2cccef-ad8b-4029-911e-14157e4cd5ae"
PERKELE = "9d62c5a5-a94f-4e22-b40f-e3f394191b3f"
ED_SHEERAN = "b8a7c51f-362c-4dcb-a259-bc6e0095f0a6"
MANOWAR = "00eeed6b-5897-4359-8347-b8cd28375331"
ERIC_ADAMS = "4c96a93c-85ab-4aaa-83f2-bd1ad759e63b"  # Manowar's singer, in its search
LOOKUP_FILES = {
    TOMBS: "artist_8b2cccef_inc_release-groups_tombs_2021.json",
    PERKELE: "artist_9d62c5a5_inc_release-groups_perkele_2021.json",
    ED_SHEERAN: "artist_b8a7c51f_inc_url-rels_releases_ratings_tags.json",
}
SEARCH_FILES = {
    "manowar": "artist_search_manowar_2021.json",
    "solstice": "artist_search_solstice_2021.json",
    "anynonexistentartist": "artist_search_empty_2021.json",
}
# Release groups recorded apart from their artist (lookups and searches of release groups).
RELEASE_GROUP_FILES = {
    ED_SHEERAN: ["release-group_lookup_inc_many.json"],
    None: ["release-group_search_many_2021.json", "release-group_search_one_result_2021.json"],
}
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


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def shuffled(value: Any, rng: random.Random) -> Any:
    """``value`` with every object's keys in a random order, as ws/2 sends them."""
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {key: shuffled(value[key], rng) for key in keys}
    if isinstance(value, list):
        return [shuffled(entry, rng) for entry in value]
    return value


def _lookup_from_hit(hit: dict[str, Any]) -> dict[str, Any]:
    """A lookup body from a search hit: no score, ``ended`` false, areas without life-span."""
    doc = {key: value for key, value in hit.items() if key != "score"}
    life = dict(doc.get("life-span") or {})
    life["ended"] = bool(life.get("ended")) or life.get("end") is not None
    doc["life-span"] = life
    for key in ("area", "begin-area"):
        if isinstance(doc.get(key), dict):
            doc[key] = {k: v for k, v in doc[key].items() if k != "life-span"}
    return doc


def _release_group(doc: dict[str, Any]) -> dict[str, Any]:
    """A release group as a browse or dump line has it (no releases, relations, score)."""
    return {k: v for k, v in doc.items() if k not in ("releases", "relations", "score", "count")}


def credit_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The artist credit naming one artist alone, as ws/2 writes it."""
    artist = {
        "id": doc["id"],
        "name": doc["name"],
        "sort-name": doc.get("sort-name"),
        "type": doc.get("type"),
        "type-id": doc.get("type-id"),
        "disambiguation": doc.get("disambiguation") or "",
    }
    return [{"name": doc["name"], "joinphrase": "", "artist": artist}]


@dataclass
class FakeArtist:
    doc: dict[str, Any]  # the lookup body, every include it has, no linked lists
    release_groups: list[dict[str, Any]] = field(default_factory=list)


def sample_artists() -> dict[str, FakeArtist]:
    """Every artist of the recorded bodies, by MBID (see the module docstring)."""
    artists: dict[str, FakeArtist] = {}
    for mbid, name in LOOKUP_FILES.items():
        body = load(name)
        groups = body.pop("release-groups", [])
        body.pop("releases", None)
        artists[mbid] = FakeArtist(body, [_release_group(group) for group in groups])
    for mbid, names in RELEASE_GROUP_FILES.items():
        if mbid is not None:
            artists[mbid].release_groups += [_release_group(load(name)) for name in names]
    for name in SEARCH_FILES.values():
        for hit in load(name)["artists"]:
            artists.setdefault(hit["id"], FakeArtist(_lookup_from_hit(hit)))
    return artists


def recorded_searches() -> dict[str, list[dict[str, Any]]]:
    """The recorded search hits by (lower-case) query."""
    return {query: load(name)["artists"] for query, name in SEARCH_FILES.items()}


def dump_docs(entity: str) -> list[dict[str, Any]]:
    """The sample dump's entity JSON: every recorded artist, or every recorded release group."""
    artists = sample_artists()
    if entity == "artist":
        return [artist.doc for artist in artists.values()]
    groups: dict[str, dict[str, Any]] = {}
    for artist in artists.values():
        for group in artist.release_groups:
            # Dump lines carry every include: the credit the recorded lookups left out too.
            credited = {"artist-credit": credit_of(artist.doc), **group}
            groups.setdefault(group["id"], credited)
    for name in RELEASE_GROUP_FILES[None]:
        for group in load(name)["release-groups"]:
            groups.setdefault(group["id"], _release_group(group))
    return list(groups.values())


def dump_lines(docs: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """Entity JSON as dump lines: compact, one per line."""
    for doc in docs:
        yield json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def generated_docs(entity: str, count: int) -> Iterator[dict[str, Any]]:
    """``count`` sample documents cycled, each under a fresh MBID, made on the fly."""
    samples = dump_docs(entity)
    for number in range(count):
        doc = dict(samples[number % len(samples)])
        doc["id"] = f"{number:08x}-0000-4000-8000-{number:012x}"
        yield doc


def _add_member(archive: tarfile.TarFile, name: str, data: bytes | Path) -> None:
    if isinstance(data, Path):
        info = archive.gettarinfo(str(data), arcname=name)
        info.mtime, info.uid, info.gid, info.uname, info.gname = 1_621_296_601, 0, 0, "", ""
        with data.open("rb") as handle:
            archive.addfile(info, handle)
        return
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 1_621_296_601, 0o644
    archive.addfile(info, io.BytesIO(data))


def write_archive(
    path: Path,
    entity: str,
    lines: Iterable[bytes],
    *,
    timestamp: str = DUMP_TIMESTAMP,
    preset: int | None = None,
) -> Path:
    """A dump archive as MusicBrainz lays it out: metadata files, then ``mbdump/<entity>``.

    The data member is written to a file next to ``path`` first (tar needs its size up
    front), so a large generated dump never sits in memory. ``path`` ending in ``.tar.xz``
    is xz-compressed (``preset`` as ``lzma``'s), ``.tar`` is not.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    data = path.with_name(path.name + ".data")
    with data.open("wb") as out:
        out.writelines(lines)
    compressed = path.name.endswith(".xz")
    options: dict[str, Any] = {"preset": preset} if compressed and preset is not None else {}
    try:
        with tarfile.open(path, "w:xz" if compressed else "w", **options) as archive:
            _add_member(archive, "COPYING", b"The data in this archive is CC0 (see README).\n")
            _add_member(archive, "JSON_DUMPS_SCHEMA_NUMBER", b"1\n")
            _add_member(archive, "README", b"MusicBrainz JSON dump (contentcrawl test sample)\n")
            _add_member(archive, "SCHEMA_SEQUENCE", b"26\n")
            _add_member(archive, "TIMESTAMP", timestamp.encode() + b"\n")
            _add_member(archive, f"mbdump/{entity}", data)
    finally:
        data.unlink()
    return path


def build_archive(entity: str, docs: Iterable[dict[str, Any]], tmp_dir: Path) -> bytes:
    """The bytes of a small ``<entity>.tar.xz`` dump of ``docs``."""
    path = write_archive(tmp_dir / f"{entity}.tar.xz", entity, dump_lines(docs))
    return path.read_bytes()


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
