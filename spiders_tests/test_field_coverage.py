"""Every field of every real recorded body survives mapper → validation → store record.

Each body in ``spiders_tests/data/`` goes through its source's mapper, the validation
pipeline and ``to_record``; each top-level field of the body (and the nested fields named
in ``NESTED``) must then be in the record, not empty where the body had a value, or be
listed in ``DROPPED`` with the reason it is left out on purpose. Every field of the record
must have the type its item declares. A field that appears in a new recorded body fails
this test until it is kept or listed.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from scrapy import Spider
from scrapy.utils.test import get_crawler

from contentcrawl.items import ContentItem
from contentcrawl.pipelines.validation import ValidationPipeline
from contentcrawl.records import to_record
from contentcrawl.sources.igdb import GAME_FIELDS, game_item
from contentcrawl.sources.musicbrainz import album_item, artist_item
from contentcrawl.sources.openlibrary import (
    author_from_doc,
    book_from_edition,
    parse_line,
    positive_ids,
    work_from_doc,
)
from contentcrawl.sources.tmdb import map_movie, map_person, map_series
from contentcrawl.validation import field_types
from spiders_tests.conftest import DATA

IMAGES = "https://image.tmdb.org/t/p/w500"
COVERS = "https://covers.openlibrary.org/b"
PHOTOS = "https://covers.openlibrary.org/a"

# --- what each kind keeps under another name, and what it leaves out on purpose -----------
# Source field -> record field(s). A field not named here is kept under its own name
# ("sort-name" as "sort_name").
RENAMED: dict[str, dict[str, str | tuple[str, ...]]] = {
    "movies": {"id": "tmdb_id", "poster_path": ("poster_path", "poster_url")},
    "series": {
        "id": "tmdb_id",
        "aggregate_credits": "credits",
        "poster_path": ("poster_path", "poster_url"),
    },
    "people": {"id": "tmdb_id", "profile_path": ("profile_path", "profile_url")},
    "games": {
        "id": "igdb_id",
        "cover": "cover_url",
        "external_games": "external_ids",
        "franchise": "franchises",
        "collection": "collections",
        "parent_game": "parent_game_id",
        "similar_games": "similar_game_ids",
        "dlcs": "dlc_ids",
        "expansions": "expansion_ids",
    },
    "artists": {
        "id": "mbid",
        "begin_area": "begin_area",
        "end_area": "end_area",
        "relations": "urls",
        "life-span": ("begin_date", "end_date", "ended"),
    },
    "albums": {"id": "mbid", "relations": "urls"},
    "books": {
        "key": "ol_key",
        "authors": "author_keys",
        "works": "work_key",
        "covers": "cover_ids",
        "oclc_numbers": "identifiers",
        "oclc_number": "identifiers",
        "lccn": "identifiers",
        "ocaid": "identifiers",
        "title_prefix": "title",
        "subject_place": "subject_places",
        "subject_time": "subject_times",
        "contributions": "contributors",
        "work_title": "work_titles",
        "uris": "links",
        "uri_descriptions": "links",
        "url": "links",
        "publish_date": ("publish_date", "publish_date_raw"),
    },
    "works": {
        "key": "ol_key",
        "authors": "author_keys",
        "covers": "cover_ids",
        "title_prefix": "title",
        "first_publish_date": ("first_publish_date", "first_publish_date_raw"),
    },
    "authors": {
        "key": "ol_key",
        "photos": "photo_ids",
        # An unreadable date ("4th cent.") is kept as the catalogue wrote it.
        "birth_date": ("birth_date", "birth_date_raw"),
        "death_date": ("death_date", "death_date_raw"),
        "date": ("date", "date_raw"),
    },
}

# Nested fields documented as kept: source field -> its sub-field -> record field.
NESTED: dict[str, dict[str, dict[str, str]]] = {
    "artists": {"life-span": {"begin": "begin_date", "end": "end_date", "ended": "ended"}},
    "series": {"external_ids": {"imdb_id": "external_ids", "tvdb_id": "external_ids"}},
}

_PROVENANCE = "provenance: the store keeps its own (_meta.revision, fetched_at, updated_at)"
_SESSION = "about the requesting account or session, not the record"
_HISTORY = "edit history of the record, not its content"
_OTHER_RECORDS = "summaries of other records, which are stored as records of their own"
_ARTWORK = "artwork lists beyond the main image: the main image is kept by path and URL"

DROPPED: dict[str, dict[str, str]] = {
    "movies": {
        "images": _ARTWORK,
        "releases": "pre-2015 form of release_dates, which is kept",
        "similar": _OTHER_RECORDS,
        "recommendations": _OTHER_RECORDS,
        "lists": "user lists that contain the movie: user content, not the movie's",
        "reviews": "user reviews: user content, not the movie's",
        "changes": _HISTORY,
        "account_states": _SESSION,
    },
    "series": {
        "images": _ARTWORK,
        "recommendations": _OTHER_RECORDS,
        "changes": _HISTORY,
        "account_states": _SESSION,
    },
    "people": {
        "images": _ARTWORK,
        "tagged_images": "images of other records the person is tagged in",
        "changes": _HISTORY,
    },
    "games": {
        "checksum": "IGDB's hash of the record, for caches; the store hashes content itself",
        "tags": "IGDB's internal tag numbers (hashed theme/genre/keyword ids), no names",
        "age_ratings": "rating-board enum ids without their board and rating names",
        "artworks": _ARTWORK,
        "screenshots": _ARTWORK,
        "videos": "video ids on YouTube without titles; not requested by GAME_FIELDS",
        "release_dates": "per-platform release dates: first_release_date is kept",
        "hypes": "pre-release follower counter, deprecated by IGDB",
        "follows": "follower counter, deprecated by IGDB",
        "multiplayer_modes": "ids of per-platform multiplayer records, not requested",
        "ports": "ids of ports, not requested by GAME_FIELDS",
    },
    "artists": {
        "type-id": "MusicBrainz's id of the type, whose name is kept as type",
        "gender-id": "MusicBrainz's id of the gender, whose name is kept as gender",
        "score": "search relevance of the hit, not a property of the artist",
        "release-groups": "stored as albums of their own, from the artist's browse",
        "releases": "releases are not crawled; their release groups are, as albums",
    },
    "albums": {
        "primary-type-id": "MusicBrainz's id of the type, whose name is kept as primary_type",
        "secondary-type-ids": "MusicBrainz's ids of the types kept as secondary_types",
        "type-id": "legacy search-result id of the type kept as primary_type",
        "score": "search relevance of the hit, not a property of the release group",
        "count": "search-result count of releases in the group, not stored",
        "releases": "releases are not crawled; the release group is the album",
    },
    "books": {
        "type": "always /type/edition: the collection says it",
        "revision": _PROVENANCE,
        "latest_revision": _PROVENANCE,
        "last_modified": _PROVENANCE,
        "created": _PROVENANCE,
        "source_records": "import provenance (MARC record locations), not the book's",
        "full_title": "title and subtitle joined: both are kept",
        "ia_box_id": "Internet Archive scanning box number, internal to the archive",
        "ia_loaded_id": "Internet Archive load id, internal to the archive",
        "local_id": "library barcodes of the scanning partner, internal",
        "location": "the partner library's shelf location, internal",
    },
    "works": {
        "type": "always /type/work: the collection says it",
        "revision": _PROVENANCE,
        "latest_revision": _PROVENANCE,
        "last_modified": _PROVENANCE,
        "created": _PROVENANCE,
    },
    "authors": {
        "type": "always /type/author: the collection says it",
        "revision": _PROVENANCE,
        "latest_revision": _PROVENANCE,
        "last_modified": _PROVENANCE,
        "created": _PROVENANCE,
        "source_records": "import provenance (MARC record locations), not the author's",
    },
}

# IGDB fields the spider asks for as objects (``genres.name``, ``websites.url``).
ASKED_AS_OBJECTS = {name.split(".", 1)[0] for name in GAME_FIELDS if "." in name}

# A body value that only looks like data: Open Library's -1 cover/photo placeholders.
MEANINGFUL: dict[str, Callable[[Any], Any]] = {"covers": positive_ids, "photos": positive_ids}


# --- the real bodies ----------------------------------------------------------------------


@dataclass
class Body:
    """One recorded real record, and the item its source's mapper makes of it."""

    source: str
    origin: str
    payload: dict[str, Any]
    item: ContentItem


def _json(path: str) -> Any:
    return json.loads((DATA / path).read_text(encoding="utf-8"))


def tmdb_bodies() -> Iterator[Body]:
    mappers = {"movie": map_movie, "person": map_person, "tv": map_series}
    for path in sorted((DATA / "tmdb").glob("*.json")):
        kind = path.name.split("_", 1)[0]
        payload = _json(f"tmdb/{path.name}")
        # Sub-resources (credits, release dates) and change lists are not detail bodies.
        if kind in mappers and ("title" in payload or "name" in payload):
            yield Body("tmdb", path.name, payload, mappers[kind](payload, IMAGES))


def igdb_bodies() -> Iterator[Body]:
    for name in ("games_7346_fields_all_v3era.json", "games_search_sengoku3_expanded_2021.json"):
        for payload in _json(f"igdb/{name}"):
            yield Body("igdb", f"{name} #{payload['id']}", payload, game_item(payload))


def musicbrainz_bodies() -> Iterator[Body]:
    for path in sorted((DATA / "musicbrainz").glob("*.json")):
        body = _json(f"musicbrainz/{path.name}")
        if path.name.startswith("artist_search"):
            artists = body["artists"]
        elif path.name.startswith("artist_"):
            artists = [body]
        else:
            artists = []
        if path.name.startswith("release-group_search"):
            groups = body["release-groups"]
        elif path.name.startswith("release-group_"):
            groups = [body]
        else:
            groups = []
        for artist in artists:
            yield Body("musicbrainz", f"{path.name} {artist['id']}", artist, artist_item(artist))
            # An artist lookup with inc=release-groups carries its albums too.
            groups += artist.get("release-groups", [])
        for group in groups:
            yield Body("musicbrainz", f"{path.name} {group['id']}", group, album_item(group))


def openlibrary_bodies() -> Iterator[Body]:
    mappers: dict[str, Callable[[dict[str, Any]], ContentItem]] = {
        "/type/edition": lambda doc: book_from_edition(doc, covers_url=COVERS),
        "/type/work": lambda doc: work_from_doc(doc, covers_url=COVERS),
        "/type/author": lambda doc: author_from_doc(doc, photos_url=PHOTOS),
    }
    seen: set[str] = set()
    for path in sorted((DATA / "openlibrary").glob("ol_dump_*.txt")):
        for number, line in enumerate(path.read_bytes().splitlines(), 1):
            parsed = parse_line(line)
            if isinstance(parsed, str) or parsed.type not in mappers or parsed.key in seen:
                continue
            seen.add(parsed.key)
            item = mappers[parsed.type](parsed.doc)
            yield Body("openlibrary", f"{path.name}:{number}", parsed.doc, item)
    for path in sorted((DATA / "openlibrary").glob("api_*.json")):
        doc = _json(f"openlibrary/{path.name}")
        kind = doc["type"]["key"] if isinstance(doc.get("type"), dict) else doc.get("type")
        yield Body("openlibrary", path.name, doc, mappers[kind](doc))


BODIES = [*tmdb_bodies(), *igdb_bodies(), *musicbrainz_bodies(), *openlibrary_bodies()]


# --- the checks ---------------------------------------------------------------------------


def empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


@functools.cache
def validation() -> ValidationPipeline:
    """One validation pipeline for every body: a crawler each would cost ~10 ms a test."""
    return ValidationPipeline.from_crawler(get_crawler(Spider))


def stored(body: Body) -> tuple[dict[str, Any], ContentItem]:
    validation().process_item(body.item)
    return to_record(body.item).content, body.item


def lost_fields(body: Body) -> list[str]:
    """Fields of the body the record neither keeps nor lists as dropped on purpose."""
    record, item = stored(body)
    kind = item.collection
    renamed, dropped = RENAMED.get(kind, {}), DROPPED.get(kind, {})
    problems = []
    for name, value in body.payload.items():
        if name in dropped:
            continue
        targets = renamed.get(name, name.replace("-", "_"))
        targets = (targets,) if isinstance(targets, str) else targets
        if not all(target in record for target in targets):
            problems.append(f"{name}: not in the record and not in DROPPED[{kind!r}]")
            continue
        value = MEANINGFUL.get(name, lambda v: v)(value)
        bare_ids = kind == "games" and name in ASKED_AS_OBJECTS and _bare_ids(value)
        # A value the body has must not come out empty. IGDB's bare ids, where the spider
        # asks for objects ("genres.name"), have no name to keep: recordings made without
        # the expansion show them.
        if not empty(value) and all(empty(record[t]) for t in targets) and not bare_ids:
            problems.append(f"{name}: {value!r:.60} came out empty as {targets}")
    for name, subfields in NESTED.get(kind, {}).items():
        parent = body.payload.get(name)
        for subfield, target in subfields.items():
            present = isinstance(parent, dict) and not empty(parent.get(subfield))
            if present and (target not in record or empty(record[target])):
                problems.append(f"{name}.{subfield}: lost (expected in {target})")
    return problems


def _bare_ids(value: Any) -> bool:
    entries = value if isinstance(value, list) else [value]
    return all(isinstance(entry, int) for entry in entries)


def mistyped_fields(body: Body) -> list[str]:
    """Record fields whose value is not of the type the item declares."""
    record, item = stored(body)
    problems = []
    for spec in field_types(type(item)):
        value = record.get(spec.name)
        if value is None:
            continue
        if type(value) is not spec.kind:
            problems.append(f"{spec.name}: {type(value).__name__}, declared {spec.kind.__name__}")
        elif spec.element is not None and any(type(e) is not spec.element for e in value):
            problems.append(f"{spec.name}: an entry is not {spec.element.__name__}")
    return problems


@pytest.mark.parametrize("body", BODIES, ids=lambda body: f"{body.source}:{body.origin}")
def test_every_field_of_a_real_body_is_kept_or_listed(body: Body) -> None:
    assert lost_fields(body) == []


@pytest.mark.parametrize("body", BODIES, ids=lambda body: f"{body.source}:{body.origin}")
def test_every_stored_field_has_its_declared_type(body: Body) -> None:
    assert mistyped_fields(body) == []


def test_the_coverage_runs_over_at_least_100_real_records_from_every_source() -> None:
    per_source = dict.fromkeys(("tmdb", "igdb", "musicbrainz", "openlibrary"), 0)
    for body in BODIES:
        per_source[body.source] += 1
    assert all(per_source.values()), per_source
    assert sum(per_source.values()) >= 100


def test_every_dropped_field_has_a_reason_and_is_not_kept_after_all() -> None:
    # A field listed as dropped that the item now keeps would hide a regression.
    for kind, dropped in DROPPED.items():
        for name, reason in dropped.items():
            assert reason.strip(), (kind, name)
    # "images" in a record is the images pipeline's downloads, not TMDB's appended "images".
    own = {"images", "image_urls"}
    kept = {
        (body.item.collection, name)
        for body in BODIES
        for name in stored(body)[0]
        if name not in own
    }
    assert [
        (kind, name)
        for kind, dropped in DROPPED.items()
        for name in dropped
        if (kind, name) in kept
    ] == []


def test_a_new_field_in_a_body_fails_until_kept_or_listed() -> None:
    body = next(body for body in BODIES if body.item.collection == "movies")
    payload = {**body.payload, "brand_new_field": "a value"}
    mutated = Body("tmdb", "mutated", payload, map_movie(payload, IMAGES))
    assert lost_fields(mutated) == [
        "brand_new_field: not in the record and not in DROPPED['movies']"
    ]
