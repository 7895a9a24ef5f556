"""A distributed run's end is final: a worker that takes the seed lock at the moment another
worker ends the run does not read the source again (a second import of a whole dump, whose
cut-short end would mark the first, complete one incomplete)."""

from __future__ import annotations

from pathlib import Path

from redis import Redis
from scrapy.utils.defer import deferred_f_from_coro_f

from contentcrawl.spiders.openlibrary_books import OpenLibraryBooksSpider
from spiders_tests.crawling import crawl
from spiders_tests.distributed_workers import run_settings
from spiders_tests.fakes.openlibrary import sample_dump
from spiders_tests.redis_proxy import redis_proxy
from spiders_tests.settings_for import dump_settings

RUN = "contentcrawl:openlibrary_books"


@deferred_f_from_coro_f
async def test_a_lock_taken_as_the_run_ends_seeds_nothing(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    ended: list[bytes] = []

    def the_other_worker_ends_the_run(command: bytes) -> None:
        # Between this worker's look for the run's end and its take of the seed lock, the
        # seeder ends the run: marked done first, then its keys deleted, lock and all.
        if not ended and f"{RUN}:lock".encode() in command and b"NX" in command:
            redis.set(f"{RUN}:done", "the-seeder", px=2000)
            redis.delete(f"{RUN}:lock", f"{RUN}:seeded", f"{RUN}:seeder")
            ended.append(command)

    with redis_proxy(redis_url, the_other_worker_ends_the_run) as url:
        settings = dump_settings(run_settings(url, tmp_path / "store.sqlite3"), tmp_path)
        crawler = await crawl(OpenLibraryBooksSpider, settings, dump=str(sample_dump("editions")))

    assert ended, "the worker never asked for the seed lock"
    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert "distributed/seed/worker" not in stats
    assert "openlibrary/lines" not in stats
    # Nothing of the ended run is left behind: the next run may seed at once.
    assert redis.get(f"{RUN}:lock") is None
