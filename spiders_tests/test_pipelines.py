"""Validation → images → store, through real crawls into both stores."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from scrapy.utils.defer import deferred_f_from_coro_f

from contentcrawl.batches import ItemBatch
from contentcrawl.items import BookItem, ContentItem, GameItem, MovieItem, WorkItem
from contentcrawl.pipelines.store import SavedBatches
from contentcrawl.store import Record, Store
from contentcrawl.validation import blank_to_none, checked_key
from spiders_tests.conftest import open_store_for
from spiders_tests.crawling import crawl
from spiders_tests.fakes.server import FakeResponse, FakeServer
from spiders_tests.pipeline_crawls import ItemsSpider, movies


@deferred_f_from_coro_f
async def test_records_are_stored_in_batches_and_rerun_writes_nothing(
    store_settings: dict[str, Any],
) -> None:
    settings = {**store_settings, "STORE_BATCH_SIZE": 4}
    first = await crawl(ItemsSpider, settings, items=movies(10, release_date="2001-5-3"))
    assert first.stats.get_value("store/movies/inserted") == 10
    assert first.stats.get_value("item_scraped_count") == 10
    second = await crawl(ItemsSpider, settings, items=movies(10, release_date="2001-5-3"))
    assert second.stats.get_value("store/movies/unchanged") == 10
    assert second.stats.get_value("store/movies/inserted") is None
    assert second.stats.get_value("store/movies/updated") is None
    changed = movies(10, release_date="2001-5-3")
    changed[4].title = "A new title"
    third = await crawl(ItemsSpider, settings, items=changed)
    assert third.stats.get_value("store/movies/updated") == 1
    assert third.stats.get_value("store/movies/unchanged") == 9
    store = open_store_for(store_settings)
    try:
        assert store.count("movies") == 10
        stored = store.get("movies", 5)
        assert stored is not None
        assert stored["title"] == "A new title"
        assert stored["release_date"] == "2001-05-03"
    finally:
        store.close()


@deferred_f_from_coro_f
async def test_validation_cleans_counts_and_drops(
    store_settings: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    items: list[Any] = [
        MovieItem(tmdb_id=1, title="  Padded  ", tagline="   ", release_date="March 2001"),
        MovieItem(tmdb_id=2, title=""),  # blank required field
        MovieItem(tmdb_id=3, title=None),
        MovieItem(tmdb_id=-4, title="Negative id"),
        MovieItem(tmdb_id=5, title="Bad date", release_date="the other day"),
        BookItem(ol_key="OL1M", title="Key without its prefix"),
        BookItem(ol_key="/books/OL2M", title="Dune", publishers=["Ace", " ", ""]),
        GameItem(igdb_id=7, name="Game", first_release_date="2010-01-01T00:00:00+00:00"),
        {"title": "a plain dict"},
    ]
    caplog.set_level(logging.DEBUG)
    crawler = await crawl(ItemsSpider, store_settings, items=items)
    stats = crawler.stats
    assert stats.get_value("validation/dropped/missing_field") == 2
    assert stats.get_value("validation/dropped/invalid_key") == 2
    assert stats.get_value("validation/dropped/unknown_kind") == 1
    # Scrapy counts each drop under its reason's name, as a dump worker does.
    assert stats.get_value("item_dropped_reasons_count/MissingRequiredField") == 2
    assert stats.get_value("item_dropped_reasons_count/InvalidKey") == 2
    assert stats.get_value("item_dropped_reasons_count/UnknownKind") == 1
    assert stats.get_value("dates/movies/unreadable") == 1
    assert stats.get_value("store/movies/inserted") == 2
    assert stats.get_value("store/books/inserted") == 1
    assert stats.get_value("store/games/inserted") == 1
    # One WARNING with an example per drop reason; the repeats at DEBUG.
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "Dropped" in r.message
    ]
    assert len(warnings) == 3
    store = open_store_for(store_settings)
    try:
        padded = store.get("movies", 1)
        assert padded is not None
        assert (padded["title"], padded["tagline"], padded["release_date"]) == (
            "Padded",
            None,
            "2001-03",
        )
        bad_date = store.get("movies", 5)
        assert bad_date is not None
        assert bad_date["release_date"] is None
        book = store.get("books", "/books/OL2M")
        assert book is not None
        assert book["publishers"] == ["Ace"]
        game = store.get("games", 7)
        assert game is not None
        assert game["first_release_date"] == "2010-01-01"
    finally:
        store.close()


@deferred_f_from_coro_f
async def test_a_batch_item_is_validated_and_stored_record_by_record(
    store_settings: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    unserialisable = BookItem(ol_key="/books/OL3M", title="Sets are not JSON")
    unserialisable.identifiers = {"isbn": {"not", "json"}}
    batch = ItemBatch(
        [
            BookItem(ol_key="/books/OL1M", title="  Dune  ", publish_date="August 1965"),
            BookItem(ol_key="OL2M", title="Key without its prefix"),
            BookItem(ol_key="/books/OL4M", title=" "),
            unserialisable,
            WorkItem(ol_key="/works/OL5W", title="Dune"),
        ]
    )
    settings = {**store_settings, "STORE_BATCH_SIZE": 1}
    crawler = await crawl(ItemsSpider, settings, items=[batch, ItemBatch([])])
    stats = crawler.stats
    # Three bad records leave their batch, counted as Scrapy counts dropped items; the
    # others are stored, and item_scraped_count counts records, not batch items.
    assert stats.get_value("validation/dropped/invalid_key") == 1
    assert stats.get_value("validation/dropped/missing_field") == 1
    assert stats.get_value("item_dropped_reasons_count/UnstorableItem") == 1
    assert stats.get_value("item_dropped_reasons_count/InvalidKey") == 1
    assert stats.get_value("item_dropped_reasons_count/MissingRequiredField") == 1
    assert stats.get_value("item_dropped_count") == 3
    assert stats.get_value("store/books/received") == 1
    assert stats.get_value("store/books/inserted") == 1
    assert stats.get_value("store/works/inserted") == 1
    assert stats.get_value("item_scraped_count") == 2
    assert "/books/OL3M" in caplog.text
    store = open_store_for(store_settings)
    try:
        dune = store.get("books", "/books/OL1M")
        assert dune is not None
        assert (dune["title"], dune["publish_date"]) == ("Dune", "1965-08")
        assert store.get("works", "/works/OL5W") is not None
        assert store.count("books") == 1
    finally:
        store.close()


def test_a_batch_shows_as_a_summary_in_logs() -> None:
    batch = ItemBatch([BookItem(ol_key=f"/books/OL{n}M") for n in range(1, 1001)])
    assert repr(batch) == "ItemBatch(1000 books records, '/books/OL1M' … '/books/OL1000M')"
    assert repr(ItemBatch([])) == "ItemBatch(no records)"


def test_checked_key_canonicalises() -> None:
    assert checked_key("movies", "550") == 550
    assert checked_key("artists", "B8A7C51F-362C-4DCB-A259-BC6E0095F0A6") == (
        "b8a7c51f-362c-4dcb-a259-bc6e0095f0a6"
    )
    assert checked_key("works", "/works/OL45883W") == "/works/OL45883W"


def test_blank_to_none_keeps_non_strings() -> None:
    assert blank_to_none(["a", " ", 3, None]) == ["a", 3, None]
    assert blank_to_none({"k": " "}) == {"k": " "}
    assert blank_to_none(0) == 0


@deferred_f_from_coro_f
async def test_failed_batch_is_counted_and_saved_not_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = tmp_path / "store.sqlite3"
    store = open_store_for({"SQLITE_PATH": str(database)})
    store.close()
    # A real SQLite failure on write: the table refuses inserts.
    with sqlite3.connect(database) as connection:
        connection.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON movies "
            "BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )
    failed_dir = tmp_path / "failed"
    settings = {"SQLITE_PATH": str(database), "MONGO_URI": "", "STORE_FAILED_DIR": str(failed_dir)}
    crawler = await crawl(ItemsSpider, settings, items=movies(3))
    assert crawler.stats.get_value("store/movies/failed") == 3
    saved = [json.loads(line) for line in (failed_dir / "movies.jsonl").read_text().splitlines()]
    assert [entry["content"]["tmdb_id"] for entry in saved] == [1, 2, 3]
    assert "disk says no" in caplog.text


@deferred_f_from_coro_f
async def test_a_lone_surrogate_is_replaced_and_the_record_kept(
    store_settings: dict[str, Any], store: Store
) -> None:
    # JSON may escape half a surrogate pair; no store can encode the text it decodes to.
    title = json.loads('"Half \\ud800 a pair"')
    crawler = await crawl(ItemsSpider, store_settings, items=[MovieItem(tmdb_id=7, title=title)])
    assert crawler.stats.get_value("store/movies/inserted") == 1
    assert (store.get("movies", 7) or {}).get("title") == "Half \ufffd a pair"


def saved_record(tmdb_id: int, title: str, fetched_at: str) -> Record:
    return Record({"tmdb_id": tmdb_id, "title": title}, "tmdb", fetched_at=fetched_at)


@deferred_f_from_coro_f
async def test_saved_batches_are_stored_by_the_next_crawl(
    store_settings: dict[str, Any], store: Store, tmp_path: Path
) -> None:
    failed_dir = tmp_path / "failed"
    saved = SavedBatches(failed_dir)
    saved.save("movies", [saved_record(1, "One", "2026-01-01T00:00:00Z")])
    saved.save("movies", [saved_record(2, "Two, saved", "2026-01-01T00:00:00Z")])
    with (failed_dir / "movies.jsonl").open("a") as out:
        out.write('{"content": {"tmdb_id": 9, "ti')  # a crash mid-write
    # Claimed by a crawl that died during its replay (no process has this pid).
    SavedBatches(tmp_path / "other").save("movies", [saved_record(3, "Three", "2026-01-01")])
    (tmp_path / "other" / "movies.jsonl").rename(failed_dir / "movies.jsonl.replaying-999999999")
    # A later run stored movie 2 after the failure: the saved copy is older.
    store.upsert_many("movies", [saved_record(2, "Two, newer", "2026-02-01T00:00:00Z")])

    settings = {**store_settings, "STORE_FAILED_DIR": str(failed_dir)}
    crawler = await crawl(ItemsSpider, settings, items=[MovieItem(tmdb_id=1, title="Other")])

    stats = crawler.stats.get_stats()
    assert stats["store/movies/replayed"] == 2
    assert stats["store/movies/replay_stale"] == 1
    assert stats["store/movies/replay_bad_lines"] == 1
    titles = {key: (store.get("movies", key) or {}).get("title") for key in (1, 2, 3)}
    # Movie 1 as the crawl itself brought it after the replay.
    assert titles == {1: "Other", 2: "Two, newer", 3: "Three"}
    assert sorted(path.name for path in failed_dir.iterdir()) == ["movies.bad"]
    assert (failed_dir / "movies.bad").read_text().startswith('{"content": {"tmdb_id": 9')


@deferred_f_from_coro_f
async def test_saved_batches_wait_while_the_store_does_not_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = tmp_path / "store.sqlite3"
    open_store_for({"SQLITE_PATH": str(database)}).close()
    failed_dir = tmp_path / "failed"
    records = [saved_record(i, f"Movie {i}", "2026-01-01T00:00:00Z") for i in (1, 2, 3)]
    SavedBatches(failed_dir).save("movies", records)
    saved = (failed_dir / "movies.jsonl").read_text()
    settings = {
        "SQLITE_PATH": str(database),
        "MONGO_URI": "",
        "STORE_FAILED_DIR": str(failed_dir),
        "SQLITE_BUSY_TIMEOUT": 0.05,
        "STORE_WRITE_RETRIES": 1,
        "RUNS_ENABLED": False,
    }
    # Another writer holds the database for the whole crawl: the store does not answer.
    with closing(sqlite3.connect(database, isolation_level=None)) as writer:
        writer.execute("BEGIN IMMEDIATE")
        await crawl(ItemsSpider, settings, items=[])
        writer.execute("ROLLBACK")
    assert (failed_dir / "movies.jsonl").read_text() == saved
    assert "not stored yet" in caplog.text

    crawler = await crawl(ItemsSpider, settings, items=[])
    assert crawler.stats.get_value("store/movies/replayed") == 3
    assert list(failed_dir.iterdir()) == []
    assert count_movies(database) == 3


@deferred_f_from_coro_f
async def test_a_record_the_store_refuses_fails_alone_then_is_set_aside(tmp_path: Path) -> None:
    database = tmp_path / "store.sqlite3"
    open_store_for({"SQLITE_PATH": str(database)}).close()
    with sqlite3.connect(database) as connection:
        connection.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON movies WHEN NEW.key = '2' "
            "BEGIN SELECT RAISE(ABORT, 'not this one'); END"
        )
    failed_dir = tmp_path / "failed"
    settings = {
        "SQLITE_PATH": str(database),
        "MONGO_URI": "",
        "STORE_FAILED_DIR": str(failed_dir),
        "STORE_BATCH_SIZE": 5,
    }
    crawler = await crawl(ItemsSpider, settings, items=movies(5))
    assert crawler.stats.get_value("store/movies/inserted") == 4
    assert crawler.stats.get_value("store/movies/failed") == 1
    saved = [json.loads(line) for line in (failed_dir / "movies.jsonl").read_text().splitlines()]
    assert [entry["content"]["tmdb_id"] for entry in saved] == [2]

    # Refused again: set aside for a person to look at, not replayed at every crawl.
    again = await crawl(ItemsSpider, settings, items=[])
    assert again.stats.get_value("store/movies/replay_refused") == 1
    assert sorted(path.name for path in failed_dir.iterdir()) == ["movies.bad"]
    (kept,) = (failed_dir / "movies.bad").read_text().splitlines()
    assert json.loads(kept)["content"]["tmdb_id"] == 2
    assert count_movies(database) == 4


def count_movies(database: Path) -> int:
    with closing(sqlite3.connect(database)) as connection:
        return connection.execute("SELECT COUNT(*) FROM movies").fetchone()[0]


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 60), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


@deferred_f_from_coro_f
async def test_images_are_saved_per_record_and_a_failure_keeps_the_record(
    fake_server: FakeServer, store_settings: dict[str, Any], tmp_path: Path
) -> None:
    image = png_bytes()

    @fake_server.route("GET", r"/t/p/original/(?P<name>\w+)\.png")
    def poster(request: Any, name: str) -> FakeResponse:
        if name == "missing":
            return FakeResponse.json({"status_code": 34}, 404)
        return FakeResponse(200, image, {"Content-Type": "image/png"})

    good = f"{fake_server.url}/t/p/original/poster.png"
    bad = f"{fake_server.url}/t/p/original/missing.png"
    items: list[ContentItem] = [MovieItem(tmdb_id=550, title="Fight Club", image_urls=[good, bad])]
    settings = {**store_settings, "IMAGES_ENABLED": True, "IMAGES_STORE": str(tmp_path / "img")}
    crawler = await crawl(ItemsSpider, settings, items=items)
    assert crawler.stats.get_value("images/movies/downloaded") == 1
    assert crawler.stats.get_value("images/movies/failed") == 1
    expected = (
        tmp_path / "img" / "movies" / "550" / f"{hashlib.sha1(good.encode()).hexdigest()}.jpg"  # noqa: S324
    )
    assert expected.is_file()
    store = open_store_for(store_settings)
    try:
        stored = store.get("movies", 550)
        assert stored is not None
        assert [entry["path"] for entry in stored["images"]] == [
            str(expected.relative_to(tmp_path / "img"))
        ]
    finally:
        store.close()
    assert {r.path for r in fake_server.hits()} == {
        "/t/p/original/poster.png",
        "/t/p/original/missing.png",
    }


@deferred_f_from_coro_f
async def test_images_of_a_batch_go_to_each_record(
    fake_server: FakeServer, store_settings: dict[str, Any], tmp_path: Path
) -> None:
    image = png_bytes()

    @fake_server.route("GET", r"/b/id/(?P<cover>\d+)-L\.jpg")
    def cover(request: Any, cover: str) -> FakeResponse:
        if cover == "404":
            return FakeResponse(404, b"", {})
        return FakeResponse(200, image, {"Content-Type": "image/png"})

    def url(cover_id: int) -> str:
        return f"{fake_server.url}/b/id/{cover_id}-L.jpg"

    batch = ItemBatch(
        [
            BookItem(ol_key="/books/OL1M", title="One", image_urls=[url(1), url(2)]),
            BookItem(ol_key="/books/OL2M", title="None"),
            BookItem(ol_key="/books/OL3M", title="Three", image_urls=[url(404), url(3)]),
        ]
    )
    images = tmp_path / "img"
    settings = {**store_settings, "IMAGES_ENABLED": True, "IMAGES_STORE": str(images)}
    crawler = await crawl(ItemsSpider, settings, items=[batch])
    assert crawler.stats.get_value("images/books/downloaded") == 3
    assert crawler.stats.get_value("images/books/failed") == 1

    def path(key: str, cover_id: int) -> str:
        digest = hashlib.sha1(url(cover_id).encode()).hexdigest()  # noqa: S324
        return f"books/{key}/{digest}.jpg"

    store = open_store_for(store_settings)
    try:
        stored = {key: store.get("books", f"/books/{key}") for key in ("OL1M", "OL2M", "OL3M")}
    finally:
        store.close()
    saved = {key: [entry["path"] for entry in doc["images"]] for key, doc in stored.items() if doc}
    assert saved == {
        "OL1M": [path("OL1M", 1), path("OL1M", 2)],
        "OL2M": [],
        "OL3M": [path("OL3M", 3)],
    }
    assert all((images / entry).is_file() for entries in saved.values() for entry in entries)


@deferred_f_from_coro_f
async def test_images_are_off_by_default(
    fake_server: FakeServer, store_settings: dict[str, Any]
) -> None:
    items = [MovieItem(tmdb_id=1, title="x", image_urls=[f"{fake_server.url}/p.png"])]
    crawler = await crawl(ItemsSpider, store_settings, items=items)
    assert crawler.stats.get_value("store/movies/inserted") == 1
    assert fake_server.hits() == []


@deferred_f_from_coro_f
async def test_unreachable_store_stops_the_crawl_with_a_clear_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = {"MONGO_URI": "mongodb://reader:pw-8812@127.0.0.1:9/?serverSelectionTimeoutMS=200"}
    crawler = await crawl(ItemsSpider, settings, items=movies(1))
    assert crawler.stats.get_value("finish_reason") == "store_unavailable"
    assert "Store unavailable, closing the spider: cannot open MongoDB mongodb://reader:***@" in (
        caplog.text
    )
    assert "pw-8812" not in caplog.text
