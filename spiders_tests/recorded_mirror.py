"""A mirror seeded with every recorded record of the spiders' fixtures, mapped by the real
mappers and stored as the store pipeline stores them: what the read API tests read."""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from contentcrawl.items import ContentItem
from contentcrawl.records import to_record
from contentcrawl.sources.igdb import game_item
from contentcrawl.sources.musicbrainz import album_item, artist_item
from contentcrawl.sources.openlibrary import (
    author_from_doc,
    book_from_edition,
    parse_line,
    work_from_doc,
)
from contentcrawl.sources.openlibrary.spider import AuthorNames
from contentcrawl.sources.tmdb import map_movie, map_person, map_series
from contentcrawl.store import Store

DATA = Path(__file__).parent / "data"
TMDB_IMAGES = "https://image.tmdb.org/t/p/original"
COVERS = "https://covers.openlibrary.org/b"
# A poster file the images pipeline would have saved for Fight Club.
POSTER_PATH = "movies/550/0f3a.jpg"
ARTIST_LOOKUPS = (
    "artist_8b2cccef_inc_release-groups_tombs_2021.json",
    "artist_9d62c5a5_inc_release-groups_perkele_2021.json",
    "artist_b8a7c51f_inc_url-rels_releases_ratings_tags.json",
)


def load(name: str) -> Any:
    """A recorded real body, by its path under ``spiders_tests/data``."""
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def fight_club() -> dict[str, Any]:
    """Movie 550 as one ``append_to_response`` answer, from its recorded parts."""
    payload = load("tmdb/movie_550_2024.json")
    payload["credits"] = load("tmdb/movie_550_credits_2024.json")
    payload["keywords"] = load("tmdb/movie_550_keywords_2024.json")
    payload["external_ids"] = load("tmdb/movie_550_external_ids_2024.json")
    payload["release_dates"] = load("tmdb/movie_550_release_dates_2024.json")
    return payload


def dump_docs(name: str) -> Iterator[dict[str, Any]]:
    """The documents of a recorded Open Library sample dump, by its file name."""
    with gzip.open(DATA / "openlibrary" / name) as lines:
        for line in lines:
            parsed = parse_line(line.rstrip(b"\n"))
            if not isinstance(parsed, str):
                yield parsed.doc


def music_items() -> list[ContentItem]:
    """Artists and their release groups from the recorded artist lookups."""
    items: list[ContentItem] = []
    for name in ARTIST_LOOKUPS:
        payload = load(f"musicbrainz/{name}")
        items.append(artist_item(payload))
        items += [album_item(group, payload["id"]) for group in payload.get("release-groups", [])]
    return items


def seed_mirror(store: Store) -> None:
    """Store every recorded record of the spiders' fixtures, as the store pipeline would."""
    movie = map_movie(fight_club(), TMDB_IMAGES)
    movie.images = [{"url": movie.poster_url, "path": POSTER_PATH, "checksum": "0f3a"}]
    items: list[ContentItem] = [
        movie,
        map_movie(load("tmdb/movie_47964_append_15_parts.json"), TMDB_IMAGES),
        map_series(load("tmdb/tv_1396_append_9_parts.json"), TMDB_IMAGES),
        map_series(load("tmdb/tv_1399_2024.json"), TMDB_IMAGES),
        map_person(load("tmdb/person_287_2024.json"), TMDB_IMAGES),
        map_person(load("tmdb/person_62_append_6_parts.json"), TMDB_IMAGES),
        *(game_item(payload) for payload in load("igdb/games_7346_fields_all_v3era.json")),
        *(game_item(p) for p in load("igdb/games_search_sengoku3_expanded_2021.json")),
        *music_items(),
        author_from_doc(load("openlibrary/api_authors_OL25176A.json"), photos_url=COVERS),
        *(
            author_from_doc(d, photos_url=COVERS)
            for d in dump_docs("ol_dump_authors_sample.txt.gz")
        ),
        work_from_doc(load("openlibrary/api_works_OL155455W.json"), covers_url=COVERS),
        *(work_from_doc(d, covers_url=COVERS) for d in dump_docs("ol_dump_works_sample.txt.gz")),
    ]
    _upsert(store, items)
    # Books last, named after the stored authors as the books spider does.
    books = [book_from_edition(load("openlibrary/api_isbn_0879973420.json"), covers_url=COVERS)]
    books += [
        book_from_edition(doc, covers_url=COVERS)
        for doc in dump_docs("ol_dump_editions_sample.txt.gz")
    ]
    names = AuthorNames(store).lookup(key for book in books for key in book.author_keys)
    for book in books:
        book.author_names = [name for key in book.author_keys if (name := names.get(key))]
    _upsert(store, books)


def _upsert(store: Store, items: list[ContentItem]) -> None:
    by_collection: dict[str, list[Any]] = defaultdict(list)
    for item in items:
        by_collection[item.collection].append(to_record(item))
    for collection, records in by_collection.items():
        store.upsert_many(collection, records)
