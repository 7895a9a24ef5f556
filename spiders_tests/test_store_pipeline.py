"""The store pipeline on its own: deletion marks, records after it closed, closing mid-batch."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f
from scrapy.utils.misc import build_from_crawler

from contentcrawl.batches import DeletionMark, ItemBatch
from contentcrawl.extensions.crawl_store import crawl_store
from contentcrawl.items import MovieItem
from contentcrawl.pipelines.store import StorePipeline
from spiders_tests.conftest import open_store_for, read_store
from spiders_tests.crawling import crawl, make_crawler
from spiders_tests.pipeline_crawls import ItemsSpider, movies
from spiders_tests.settings_for import sqlite_settings


def saved_movie_ids(failed_dir: Path) -> list[int]:
    lines = (failed_dir / "movies.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["content"]["tmdb_id"] for line in lines]


def deleted_at(store_settings: dict[str, Any], tmdb_id: int) -> str | None:
    document = read_store(store_settings, lambda store: store.get("movies", tmdb_id))
    assert document is not None
    return document["_meta"].get("deleted_at")


@deferred_f_from_coro_f
async def test_deletion_marks_flag_stored_records_and_count_as_no_item(
    store_settings: dict[str, Any], tmp_path: Path
) -> None:
    await crawl(ItemsSpider, store_settings, items=movies(2))
    feed = tmp_path / "feed.jsonl"
    settings = {
        **store_settings,
        "IMAGES_ENABLED": True,
        "IMAGES_STORE": str(tmp_path / "images"),
        "FEEDS": {str(feed): {"format": "jsonlines"}},
    }

    # 3 was never stored: nothing to flag.
    marks = [DeletionMark("tmdb", "movies", 1), DeletionMark("tmdb", "movies", 3)]
    crawler = await crawl(ItemsSpider, settings, items=marks)

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert stats["tmdb/movies/marked_deleted"] == 1
    assert not [key for key in stats if key.startswith("validation/dropped/")]
    # Not records: no item counted, none exported, none in the run record.
    assert stats.get("item_scraped_count", 0) == 0
    assert not feed.exists() or feed.read_text() == ""
    (run,) = read_store(store_settings, lambda store: store.recent_runs(ItemsSpider.name, 1))
    assert run["items"] == 0
    assert deleted_at(store_settings, 1)
    assert deleted_at(store_settings, 2) is None


@deferred_f_from_coro_f
async def test_a_deletion_mark_reaching_the_closed_pipeline_is_applied_at_once(
    tmp_path: Path,
) -> None:
    settings = sqlite_settings(tmp_path, STORE_FAILED_DIR=str(tmp_path / "failed"))
    await crawl(ItemsSpider, settings, items=movies(1))
    crawler = make_crawler(ItemsSpider, settings)
    pipeline = build_from_crawler(StorePipeline, crawler)
    await pipeline.open_spider()
    await pipeline.close_spider()

    # The crawl's store outlives the pipelines (it closes when the engine stops).
    await pipeline.process_item(DeletionMark("tmdb", "movies", 1))
    await crawl_store(crawler).close()

    assert crawler.stats.get_value("tmdb/movies/marked_deleted") == 1
    assert deleted_at(settings, 1)


@deferred_f_from_coro_f
async def test_records_reaching_the_store_pipeline_after_it_closed_are_saved(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    failed_dir = tmp_path / "failed"
    settings = sqlite_settings(tmp_path, STORE_FAILED_DIR=str(failed_dir), STORE_BATCH_SIZE=4)
    crawler = make_crawler(ItemsSpider, settings)
    pipeline = build_from_crawler(StorePipeline, crawler)
    await pipeline.open_spider()
    await pipeline.close_spider()

    # Scrapy 2.19 still hands start() items to the pipelines while the spider closes: a
    # batch larger than STORE_BATCH_SIZE, then one item, which no later flush would write.
    await pipeline.process_item(ItemBatch(movies(5)))
    await pipeline.process_item(MovieItem(tmdb_id=6, title="Movie 6"))
    await crawl_store(crawler).close()

    assert saved_movie_ids(failed_dir) == [1, 2, 3, 4, 5, 6]
    assert crawler.stats.get_value("store/movies/failed") == 6
    assert crawler.stats.get_value("store/movies/received") == 6
    assert "The store is closed: 5 movies records saved to" in caplog.text
    assert "The store is closed: 1 movies records saved to" in caplog.text


@deferred_f_from_coro_f
async def test_the_store_pipeline_closes_after_the_batch_it_is_writing(tmp_path: Path) -> None:
    database = tmp_path / "store.sqlite3"
    open_store_for({"SQLITE_PATH": str(database)}).close()
    with sqlite3.connect(database) as connection:
        connection.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON movies "
            "BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )
    failed_dir = tmp_path / "failed"
    settings = sqlite_settings(database, STORE_FAILED_DIR=str(failed_dir), STORE_BATCH_SIZE=4)
    crawler = make_crawler(ItemsSpider, settings)
    pipeline = build_from_crawler(StorePipeline, crawler)
    await pipeline.open_spider()
    writing = asyncio.ensure_future(pipeline.process_item(ItemBatch(movies(4))))
    # One turn of the loop: the batch has left the buffers and is in the store's thread,
    # where the store refuses it; saving it is a second trip off the loop.
    await asyncio.sleep(0)

    await pipeline.close_spider()

    # Closed only once the batch in flight was saved and counted, so nothing is counted
    # after the run's stats were read.
    assert writing.done()
    await writing
    await crawl_store(crawler).close()
    assert saved_movie_ids(failed_dir) == [1, 2, 3, 4]
    assert crawler.stats.get_value("store/movies/failed") == 4
