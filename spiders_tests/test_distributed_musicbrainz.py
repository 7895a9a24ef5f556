"""Distributed MusicBrainz runs on a real redis-server, against the local fakes (IGDB and TMDB:
test_distributed_sources.py; the workers' helpers: distributed_workers.py).

Two ``scrapy crawl`` workers share one Redis run and one SQLite store. Each worker sends
its own User-Agent, so the fake tells which worker sent a request: the kill tests hold one
page in the fake, kill the worker that sent it (``kill -9``) and expect the other to
store every record all the same. In-process runs find in Redis what a dead worker left
(keys recorded, nothing stored) and must ask for each kind of key again.
"""

from __future__ import annotations

import copy
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from scrapy.utils.defer import deferred_f_from_coro_f
from scrapy.utils.project import get_project_settings

from contentcrawl.spiders.musicbrainz_artists import MusicBrainzArtistsSpider
from spiders_tests.crawling import crawl
from spiders_tests.distributed_workers import (
    KILL_TTLS,
    WORKERS,
    kill_the_sender_and_finish,
    left_by_a_dead_worker,
    logs,
    release_once_all_joined,
    run_settings,
    start_workers,
    stored_keys,
    wait_all,
    worker_env,
)
from spiders_tests.fakes.musicbrainz import (
    CONTACT,
    FakeArtist,
    FakeMusicBrainz,
    sample_artists,
)
from spiders_tests.fakes.musicbrainz_samples import (
    TOMBS,
    dump_lines,
    generated_docs,
)
from spiders_tests.fakes.server import FakeServer

MB_BROWSES = r"/ws/2/release-group/?"


# --- MusicBrainz ------------------------------------------------------------------------------


def clone_artists(count: int, albums_each: int) -> dict[str, FakeArtist]:
    """``count`` artists named ``Clone NNN`` (one search finds them all), each with
    ``albums_each`` release groups, cloned from the recorded Tombs."""
    tombs = sample_artists()[TOMBS]
    artists: dict[str, FakeArtist] = {}
    for number in range(count):
        mbid = f"{number:08x}-0000-4000-8000-{number:012x}"
        name = f"Clone {number:03d}"
        doc = {**copy.deepcopy(tombs.doc), "id": mbid, "name": name, "sort-name": name}
        doc["aliases"] = []
        groups = [
            {
                **copy.deepcopy(tombs.release_groups[index % len(tombs.release_groups)]),
                "id": f"{number:08x}-1111-4000-8000-{index:012x}",
            }
            for index in range(albums_each)
        ]
        artists[mbid] = FakeArtist(doc, groups)
    return artists


def musicbrainz_fake(server: FakeServer) -> FakeMusicBrainz:
    # Slow answers, so every worker gets a share before the first one is done.
    server.latency = 0.1
    # No per-IP gap: the workers on one machine share the fake, each in its own slot.
    return FakeMusicBrainz(server, clone_artists(18, 7), min_interval=0.0)


def start_musicbrainz_workers(
    fake: FakeMusicBrainz, sqlite_path: Path, redis_url: str, workdir: Path, **settings: Any
) -> list[subprocess.Popen[bytes]]:
    fake_settings = fake.settings()
    env = worker_env(
        sqlite_path,
        MUSICBRAINZ_API_URL=fake_settings["MUSICBRAINZ_API_URL"],
        MUSICBRAINZ_CONTACT=CONTACT,
        MUSICBRAINZ_PAGE_SIZE="5",
        # 20 requests/s a worker instead of 1: the fake has no rate limit here.
        MUSICBRAINZ_REQUESTS_PER_SECOND="20",
    )
    args = ["-a", "query=clone"]
    return start_workers(
        "musicbrainz_artists", env, args, redis_url, workdir, **fake_settings, **settings
    )


def test_musicbrainz_workers_look_up_every_artist_once_and_store_everything(
    fake_server: FakeServer, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    fake = musicbrainz_fake(fake_server)
    fake.holds.hold(1, r"/ws/2/artist/?")
    sqlite_path = tmp_path / "shared.sqlite3"
    workers = start_musicbrainz_workers(fake, sqlite_path, redis_url, tmp_path)
    release_once_all_joined(fake, redis, "musicbrainz_artists")

    codes = wait_all(workers, timeout=40)

    assert codes == [0] * WORKERS, [log[-3000:] for log in logs(tmp_path)]
    lookups = Counter(hit.path.rsplit("/", 1)[1] for hit in fake.answered(r"/ws/2/artist/.+"))
    assert set(lookups) == set(fake.artists)
    assert set(lookups.values()) == {1}, "an artist was looked up more than once"
    browses = Counter(
        (hit.param("artist"), hit.param("offset")) for hit in fake.answered(MB_BROWSES)
    )
    assert len(browses) == 2 * len(fake.artists)  # 7 release groups, 5 a page
    assert set(browses.values()) == {1}, "a browse page was fetched more than once"
    searches = [hit.param("offset") for hit in fake.answered(r"/ws/2/artist/?")]
    assert sorted(searches, key=int) == ["0", "5", "10", "15"]
    assert sorted(stored_keys(sqlite_path, "artists", "mbid")) == sorted(fake.artists)
    albums = [group["id"] for artist in fake.artists.values() for group in artist.release_groups]
    assert sorted(stored_keys(sqlite_path, "albums", "mbid")) == sorted(albums)
    # Nothing was missing at the end: no album looked up, the reconcile asked for nothing.
    assert not fake.answered(r"/ws/2/release-group/.+")
    assert "Reconcile round" not in "".join(logs(tmp_path))
    assert sum("seeds the run" in log for log in logs(tmp_path)) == 1
    senders = Counter(hit.header("user-agent") for hit in fake.answered())
    assert len(senders) >= 2, senders
    assert not [
        k for k in redis.keys("contentcrawl:musicbrainz_artists:*") if not k.endswith(":done")
    ]


@pytest.mark.long
def test_a_musicbrainz_worker_killed_with_a_browse_in_flight_loses_nothing(
    fake_server: FakeServer, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    fake = musicbrainz_fake(fake_server)
    # The 8th browse page: the worker that sent it dies with it in flight.
    fake.holds.hold(8, MB_BROWSES)
    sqlite_path = tmp_path / "shared.sqlite3"
    workers = start_musicbrainz_workers(fake, sqlite_path, redis_url, tmp_path, **KILL_TTLS)

    held = kill_the_sender_and_finish(fake.holds, workers, tmp_path)

    assert sorted(stored_keys(sqlite_path, "artists", "mbid")) == sorted(fake.artists)
    albums = [group["id"] for artist in fake.artists.values() for group in artist.release_groups]
    assert sorted(stored_keys(sqlite_path, "albums", "mbid")) == sorted(albums)
    # The browse page the dead worker had in flight was asked for again by the reconcile.
    assert "Reconcile round 1" in "".join(logs(tmp_path))
    page = (held.param("artist"), held.param("offset"))
    assert [(h.param("artist"), h.param("offset")) for h in fake.api_hits(MB_BROWSES)].count(
        page
    ) == 2


@deferred_f_from_coro_f
async def test_the_musicbrainz_reconcile_asks_again_for_every_kind_of_key(
    fake_server: FakeServer, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    fake = FakeMusicBrainz(fake_server, clone_artists(4, 7), min_interval=0.0)
    first, second, third, fourth = fake.artists.values()
    album = second.release_groups[3]["id"]
    gone = "ffffffff-0000-4000-8000-ffffffffffff"
    keys = [
        first.doc["id"],
        f"album:{album}",
        f"browse:{third.doc['id']}:5",
        f"search:0:{fourth.doc['name']}",
        gone,
    ]
    left_by_a_dead_worker(redis, "musicbrainz_artists", keys)
    slots = get_project_settings().getdict("DOWNLOAD_SLOTS")
    settings = {
        **fake.settings(),
        **run_settings(redis_url, tmp_path / "store.sqlite3"),
        "DOWNLOAD_SLOTS": {
            **slots,
            "musicbrainz": {"concurrency": 1, "delay": 0.0, "rate": 50.0, "jitter": 0},
        },
        "MUSICBRAINZ_PAGE_SIZE": 5,
    }

    crawler = await crawl(MusicBrainzArtistsSpider, settings, query="clone")

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert stats["distributed/reconcile/requeued"] == len(keys)
    assert stats["distributed/reconcile/rounds"] == 1
    # No search ran but the one of the key: this worker did not seed the run.
    assert [hit.param("query") for hit in fake.answered(r"/ws/2/artist/?")] == ["Clone 003"]
    stored_artists = stored_keys(tmp_path / "store.sqlite3", "artists", "mbid")
    assert sorted(stored_artists) == sorted([first.doc["id"], fourth.doc["id"]])
    expected_albums = [
        *(group["id"] for group in first.release_groups),
        album,
        *(group["id"] for group in third.release_groups[5:]),
        *(group["id"] for group in fourth.release_groups),
    ]
    stored_albums = stored_keys(tmp_path / "store.sqlite3", "albums", "mbid")
    assert sorted(stored_albums) == sorted(expected_albums)
    # An artist MusicBrainz no longer has is settled, not asked for again and again.
    assert stats["musicbrainz/artists/not_found"] == 1
    assert "distributed/reconcile/unresolved" not in stats


def test_one_worker_imports_the_musicbrainz_dumps_the_other_stands_by(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    dump = tmp_path / "artist.jsonl"
    dump.write_bytes(b"".join(dump_lines(generated_docs("artist", 10_000))))
    sqlite_path = tmp_path / "shared.sqlite3"
    env = worker_env(sqlite_path, MUSICBRAINZ_CONTACT=CONTACT)
    args = ["-a", "mode=dump", "-a", f"dump={dump}"]
    # The run's end stays visible 10 s: a worker that starts late (a busy machine) must
    # find the import done, not start one of its own.
    workers = start_workers(
        "musicbrainz_artists", env, args, redis_url, tmp_path, DISTRIBUTED_WORKER_TTL=10
    )

    codes = wait_all(workers, timeout=40)

    assert codes == [0] * WORKERS, [log[-3000:] for log in logs(tmp_path)]
    assert len(stored_keys(sqlite_path, "artists", "mbid")) == 10_000
    # One worker read the dump and stored every record; the other read none of it.
    readers = [log for log in logs(tmp_path) if "'musicbrainz/dump/lines': 10000" in log]
    assert len(readers) == 1
    assert "'store/artists/inserted': 10000" in readers[0]
    assert sum("'musicbrainz/dump/lines'" in log for log in logs(tmp_path)) == 1
