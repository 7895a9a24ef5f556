"""Crawls stopped midway: one Ctrl-C (SIGINT) or a scrapyd cancel (SIGTERM), then run again.

Each test runs ``scrapy crawl`` in a subprocess against a fake started here, stops it with
one signal once it has stored some records, and checks that it ends on its own, soon, with
finish reason ``shutdown``, no error, what it fetched stored and its sync state where it
was; then that the next run stores everything once. With ``-s JOBDIR=…`` the next run
resumes: what the stopped one fetched is not fetched again.
"""

from __future__ import annotations

import copy
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from spiders_tests.conftest import open_store_for
from spiders_tests.crawling import child_env
from spiders_tests.dates import utc_today
from spiders_tests.fakes.igdb import FakeIgdb, sample_games
from spiders_tests.fakes.musicbrainz import (
    FakeArtist,
    FakeMusicBrainz,
    sample_artists,
)
from spiders_tests.fakes.musicbrainz_samples import (
    TOMBS,
    dump_lines,
    generated_docs,
    write_archive,
)
from spiders_tests.fakes.server import FakeServer
from spiders_tests.fakes.tmdb import TmdbFake, exported_movies
from spiders_tests.sqlite_files import stored_count

TMDB_DETAIL = r"/3/movie/\d+"
MOVIES = 600
# More than the TMDB slot sends at once (16): the others wait out a pause in the downloader.
SMALL_MOVIES = 60
GAMES = 1500
# More than the 1,000 stored at the stop and the 1,000-line batches the reader may be ahead.
ARTISTS_IN_DUMP = 8_000
# A stopped crawl must end on its own within this (a second Ctrl-C would be needed after).
EXIT_SECONDS = 15
# The stopped runs go slowly enough to be stopped midway; the runs after them need not.
RERUN_RATES = {"TMDB_REQUESTS_PER_SECOND": "1000", "IGDB_REQUESTS_PER_SECOND": "200"}


# --- running and stopping crawls ---------------------------------------------------------


def scrapy_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """The environment of a ``scrapy`` process on the SQLite store in ``tmp_path``."""
    defaults = {
        "DUMPS_DIR": str(tmp_path / "dumps"),
        "PROGRESS_LIVE": "0",
        "STORE_BATCH_SIZE": "20",
    }
    return child_env(tmp_path / "store.sqlite3", **{**defaults, **settings})


def crawl_command(spider: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "scrapy", "crawl", spider, *args]


def stop_midway(
    command: list[str],
    env: dict[str, str],
    tmp_path: Path,
    ready: Callable[[], bool],
    stop: signal.Signals = signal.SIGINT,
) -> tuple[str, float]:
    """Run ``command`` until ``ready()``, send ``stop`` once; its log and the seconds it
    took to end after the signal."""
    log = tmp_path / "stopped.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=out)
        try:
            deadline = time.monotonic() + 60
            while not ready():
                assert process.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "the crawl stored nothing in time"
                time.sleep(0.05)
            process.send_signal(stop)
            stopped_at = time.monotonic()
            process.wait(timeout=EXIT_SECONDS)
        finally:
            if process.poll() is None:
                process.kill()
    return log.read_text(), time.monotonic() - stopped_at


def crawl_to_end(command: list[str], env: dict[str, str], tmp_path: Path) -> str:
    """Run ``command`` to its end, at the fakes' pace (no stop races it); its log."""
    done = subprocess.run(
        command,
        cwd=tmp_path,
        env={**env, **RERUN_RATES},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def stat(log: str, name: str) -> Any:
    """A number or text from the stats Scrapy dumps at the end of a log (None if absent)."""
    match = re.search(rf"'{re.escape(name)}': ('[^']*'|\d+)", log)
    if match is None:
        return None
    value = match[1]
    return value.strip("'") if value.startswith("'") else int(value)


def unexpected_problems(log: str) -> list[str]:
    """ERROR and CRITICAL lines and tracebacks of a stopped crawl's log, but the monitors'
    line on the finish reason (a stopped run does fail it, as it should)."""
    monitor_line = "ERROR: Monitors failed at close: finish_reason (stopped by a signal"
    return [
        line
        for line in log.splitlines()
        if (" ERROR: " in line or " CRITICAL: " in line or line.startswith("Traceback"))
        and monitor_line not in line
    ]


def assert_stopped_cleanly(log: str, seconds: float) -> None:
    assert seconds < EXIT_SECONDS
    assert stat(log, "finish_reason") == "shutdown"
    assert unexpected_problems(log) == []


def stored_keys(database: Path, collection: str) -> list[str]:
    with closing(sqlite3.connect(database)) as db:
        return [key for (key,) in db.execute(f"SELECT key FROM {collection}")]  # noqa: S608


def sync_state(database: Path, name: str) -> dict[str, Any] | None:
    with open_store_for({"MONGO_URI": "", "SQLITE_PATH": str(database)}) as store:
        return store.get_state(name)


def at_least(database: Path, collection: str, count: int) -> Callable[[], bool]:
    return lambda: stored_count(database, collection)[0] >= count


# --- fakes -------------------------------------------------------------------------------


@pytest.fixture
def tmdb() -> Iterator[TmdbFake]:
    """A TMDB of ``MOVIES`` small movies, all in today's export."""
    with exported_movies(MOVIES, utc_today()) as fake:
        yield fake


@pytest.fixture
def small_tmdb() -> Iterator[TmdbFake]:
    """A TMDB of ``SMALL_MOVIES`` small movies, all in today's export."""
    with exported_movies(SMALL_MOVIES, utc_today()) as fake:
        yield fake


def tmdb_env(fake: TmdbFake, tmp_path: Path) -> dict[str, str]:
    return scrapy_env(
        tmp_path,
        **fake.environment(),
        TMDB_REQUESTS_PER_SECOND="300",
    )


def detail_hits(fake: TmdbFake) -> Counter[str]:
    return Counter(hit.path for hit in fake.api.hits(TMDB_DETAIL))


@pytest.fixture
def igdb() -> Iterator[FakeIgdb]:
    """An IGDB of ``GAMES`` games without limits; 30 ms an answer."""
    server = FakeServer().start()
    yield FakeIgdb(
        server, sample_games(GAMES), requests_per_second=None, max_open=None, latency=0.03
    )
    server.stop()


def igdb_env(fake: FakeIgdb, tmp_path: Path) -> dict[str, str]:
    return scrapy_env(
        tmp_path,
        **fake.environment(),
        IGDB_PAGE_SIZE="20",
        IGDB_PARALLEL_RANGES="4",
        IGDB_REQUESTS_PER_SECOND="60",
    )


# --- stop, then run again ----------------------------------------------------------------


def test_ctrl_c_stops_a_tmdb_export_with_what_was_fetched_stored(
    tmdb: TmdbFake, tmp_path: Path
) -> None:
    env = tmdb_env(tmdb, tmp_path)
    database = tmp_path / "store.sqlite3"
    command = crawl_command("tmdb_movies", "-a", "mode=export")

    log, seconds = stop_midway(command, env, tmp_path, at_least(database, "movies", 100))

    assert_stopped_cleanly(log, seconds)
    stored, distinct = stored_count(database, "movies")
    # Every answer that came back is stored, however the stop fell.
    assert stored == distinct == stat(log, "store/movies/inserted") == len(detail_hits(tmdb))
    assert stored < MOVIES
    assert sync_state(database, "tmdb_movies/export") is None

    rerun = crawl_to_end(command, env, tmp_path)
    assert stat(rerun, "finish_reason") == "finished"
    assert stored_count(database, "movies") == (MOVIES, MOVIES)
    assert stat(rerun, "store/movies/inserted") == MOVIES - stored
    assert sync_state(database, "tmdb_movies/export") == {"date": utc_today().isoformat()}


def test_a_scrapyd_cancel_stops_a_full_igdb_crawl_without_moving_its_sync_point(
    igdb: FakeIgdb, tmp_path: Path
) -> None:
    env = igdb_env(igdb, tmp_path)
    database = tmp_path / "store.sqlite3"
    command = crawl_command("igdb_games", "-a", "mode=full")

    log, seconds = stop_midway(
        command, env, tmp_path, at_least(database, "games", 100), signal.SIGTERM
    )

    assert_stopped_cleanly(log, seconds)
    stored, distinct = stored_count(database, "games")
    assert stored == distinct == stat(log, "store/games/inserted") == igdb.games_served.total()
    assert stored < GAMES
    assert sync_state(database, "igdb_games/sync") is None

    rerun = crawl_to_end(command, env, tmp_path)
    assert stored_count(database, "games") == (GAMES, GAMES)
    assert stat(rerun, "store/games/inserted") == GAMES - stored
    assert sync_state(database, "igdb_games/sync")["mode"] == "full"


def band(number: int, template: FakeArtist) -> FakeArtist:
    """A made-up artist found by the search ``zyx band``, with three albums of its own."""
    doc = copy.deepcopy(template.doc)
    doc.update(id=f"{number:08x}-0000-4000-8000-000000000000", name=f"Zyx Band {number}")
    doc.update({"sort-name": f"Band {number}, Zyx", "aliases": []})
    albums = [
        {**copy.deepcopy(album), "id": f"{number:08x}-1111-4000-8000-{index:012x}"}
        for index, album in enumerate(template.release_groups[:3])
    ]
    return FakeArtist(doc, albums)


@pytest.mark.timing
def test_ctrl_c_stops_a_musicbrainz_crawl_at_its_one_request_a_second_at_once(
    tmp_path: Path,
) -> None:
    server = FakeServer().start()
    tombs = sample_artists()[TOMBS]
    bands = [band(number, tombs) for number in range(10)]
    fake = FakeMusicBrainz(server, {artist.doc["id"]: artist for artist in bands})
    settings = fake.settings()
    env = scrapy_env(
        tmp_path,
        MUSICBRAINZ_API_URL=settings["MUSICBRAINZ_API_URL"],
        MUSICBRAINZ_CONTACT=settings["MUSICBRAINZ_CONTACT"],
        STORE_BATCH_SIZE="1",
    )
    database = tmp_path / "store.sqlite3"
    command = crawl_command("musicbrainz_artists", "-a", "query=zyx band")
    try:
        log, seconds = stop_midway(command, env, tmp_path, at_least(database, "artists", 1))

        # The search found 10 artists: requests the crawl holds past the one it sends would
        # each keep the stop waiting a second.
        assert seconds < 6
        assert_stopped_cleanly(log, seconds)
        looked_up = len(fake.answered(r"/ws/2/artist/[0-9a-f-]+"))
        assert stored_count(database, "artists")[0] == stat(log, "store/artists/inserted")
        assert stat(log, "store/artists/inserted") == looked_up

        # The rest at a test's pace: 20 more requests at 1 a second would be a long test.
        fake.min_interval = 0.01
        fast = {**env, "MUSICBRAINZ_REQUESTS_PER_SECOND": "25"}
        crawl_to_end(command, fast, tmp_path)
    finally:
        server.stop()
    assert stored_count(database, "artists") == (10, 10)
    assert stored_count(database, "albums") == (30, 30)


def test_ctrl_c_stops_a_musicbrainz_dump_import_and_the_next_run_reads_it_again(
    tmp_path: Path,
) -> None:
    archive = write_archive(
        tmp_path / "artist.tar.xz",
        "artist",
        dump_lines(generated_docs("artist", ARTISTS_IN_DUMP)),
        preset=0,
    )
    env = scrapy_env(tmp_path, STORE_BATCH_SIZE="100")
    database = tmp_path / "store.sqlite3"
    command = crawl_command("musicbrainz_artists", "-a", f"dump={archive}")

    log, seconds = stop_midway(command, env, tmp_path, at_least(database, "artists", 1000))

    assert_stopped_cleanly(log, seconds)
    stored, distinct = stored_count(database, "artists")
    assert stored == distinct == stat(log, "store/artists/inserted") < ARTISTS_IN_DUMP
    assert sync_state(database, "musicbrainz_artists/dump/artist.tar.xz") is None

    rerun = crawl_to_end(command, env, tmp_path)
    assert stored_count(database, "artists") == (ARTISTS_IN_DUMP, ARTISTS_IN_DUMP)
    # The lines stored before the stop are skipped, their records holding their digest.
    assert stat(rerun, "musicbrainz/import/unchanged_revision") == stored
    assert stat(rerun, "store/artists/inserted") == ARTISTS_IN_DUMP - stored
    assert sync_state(database, "musicbrainz_artists/dump/artist.tar.xz")["complete"] is True


# --- JOBDIR: stop, then resume -----------------------------------------------------------


def resumed_cleanly(log: str) -> None:
    """The resuming run finished and kept every request in JOBDIR (none held in memory)."""
    assert stat(log, "finish_reason") == "finished"
    assert stat(log, "scheduler/unserializable") is None
    assert "Unable to serialize request" not in log


def test_a_tmdb_export_stopped_with_a_jobdir_resumes_where_it_stopped(
    tmdb: TmdbFake, tmp_path: Path
) -> None:
    env = tmdb_env(tmdb, tmp_path)
    database = tmp_path / "store.sqlite3"
    command = crawl_command(
        "tmdb_movies",
        "-a",
        "mode=export",
        "-s",
        f"JOBDIR={tmp_path / 'job'}",
        # Scrapy logs an unserializable request only then.
        "-s",
        "SCHEDULER_DEBUG=True",
    )

    log, seconds = stop_midway(command, env, tmp_path, at_least(database, "movies", 100))
    assert_stopped_cleanly(log, seconds)
    stopped_at = stored_count(database, "movies")[0]

    rerun = crawl_to_end(command, env, tmp_path)
    resumed_cleanly(rerun)
    assert stored_count(database, "movies") == (MOVIES, MOVIES)
    assert stat(rerun, "store/movies/inserted") == MOVIES - stopped_at
    assert stat(rerun, "store/movies/unchanged") is None
    # Each movie asked for once over both runs.
    assert set(detail_hits(tmdb).values()) == {1}
    assert len(detail_hits(tmdb)) == MOVIES
    assert sync_state(database, "tmdb_movies/export") == {"date": utc_today().isoformat()}


@pytest.mark.timing
def test_a_stop_during_a_backoff_pause_hands_the_waiting_requests_back(
    small_tmdb: TmdbFake, tmp_path: Path
) -> None:
    tmdb = small_tmdb
    # A 503 pauses the TMDB slot for 60 s; the requests behind it wait in the downloader.
    env = {**tmdb_env(tmdb, tmp_path), "RETRY_BACKOFF_BASE": "60", "RETRY_BACKOFF_MAX": "60"}
    tmdb.api.fail(TMDB_DETAIL, 503)
    database = tmp_path / "store.sqlite3"
    command = crawl_command("tmdb_movies", "-a", "mode=export", "-s", f"JOBDIR={tmp_path / 'job'}")

    def paused() -> bool:
        # The 503 is answered, and nothing more has been asked for a while.
        hits = tmdb.api.hits(TMDB_DETAIL)
        return len(hits) > 1 and hits[-1].arrived < time.monotonic() - 0.5

    log, seconds = stop_midway(command, env, tmp_path, paused)

    # Not a minute: the requests waiting out the pause went back to the queue, unsent.
    assert seconds < 5
    assert_stopped_cleanly(log, seconds)
    assert stat(
        log, "downloader/exception_type_count/contentcrawl.middlewares.pacing.RequestHandedBack"
    )
    # Kept in JOBDIR, with no credential in them: the resumed run asks for each movie once
    # (the one answered 503 twice).
    assert tmdb.token.encode() not in b"".join(
        path.read_bytes() for path in (tmp_path / "job").rglob("*") if path.is_file()
    )
    rerun = crawl_to_end(command, env, tmp_path)
    resumed_cleanly(rerun)
    assert stored_count(database, "movies") == (SMALL_MOVIES, SMALL_MOVIES)
    assert sorted(Counter(detail_hits(tmdb).values()).items()) == [(1, SMALL_MOVIES - 1), (2, 1)]


def test_tmdb_changes_stopped_with_a_jobdir_resume_without_asking_again(
    tmdb: TmdbFake, tmp_path: Path
) -> None:
    # Movies changed over 40 days: three 14-day windows, each listing the ids of its first
    # and last day again (the windows share those days).
    for tmdb_id in range(1, MOVIES + 1):
        tmdb.add_change("movie", utc_today() - timedelta(days=tmdb_id % 40), tmdb_id)
    database = tmp_path / "store.sqlite3"
    since = (utc_today() - timedelta(days=42)).isoformat()
    with open_store_for({"MONGO_URI": "", "SQLITE_PATH": str(database)}) as store:
        store.set_state("tmdb_movies/changes", {"synced_through": since})
    env = tmdb_env(tmdb, tmp_path)
    command = crawl_command("tmdb_movies", "-a", "mode=changes", "-s", f"JOBDIR={tmp_path / 'job'}")

    log, seconds = stop_midway(command, env, tmp_path, at_least(database, "movies", 100))
    assert_stopped_cleanly(log, seconds)
    assert sync_state(database, "tmdb_movies/changes") == {"synced_through": since}

    rerun = crawl_to_end(command, env, tmp_path)
    resumed_cleanly(rerun)
    assert stored_count(database, "movies") == (MOVIES, MOVIES)
    assert set(detail_hits(tmdb).values()) == {1}
    pages = Counter(
        (hit.param("start_date"), hit.param("page")) for hit in tmdb.api.hits(r"/3/movie/changes")
    )
    assert set(pages.values()) == {1}
    assert sync_state(database, "tmdb_movies/changes") == {
        "synced_through": utc_today().isoformat()
    }


def test_an_igdb_crawl_stopped_with_a_jobdir_resumes_and_keeps_its_first_sync_point(
    igdb: FakeIgdb, tmp_path: Path
) -> None:
    env = igdb_env(igdb, tmp_path)
    database = tmp_path / "store.sqlite3"
    command = crawl_command("igdb_games", "-a", "mode=full", "-s", f"JOBDIR={tmp_path / 'job'}")

    first_started = int(time.time())
    log, seconds = stop_midway(command, env, tmp_path, at_least(database, "games", 100))
    assert_stopped_cleanly(log, seconds)
    # The sync point is the whole second the stopped process started in, any second up to
    # the one it ended in: the rerun starts in a later second than that.
    first_ended = int(time.time())
    while int(time.time()) <= first_ended:
        time.sleep(0.05)

    second_started = int(time.time())
    rerun = crawl_to_end(command, env, tmp_path)
    resumed_cleanly(rerun)
    assert stored_count(database, "games") == (GAMES, GAMES)
    assert set(igdb.games_served.values()) == {1}
    assert sorted(map(int, stored_keys(database, "games"))) == sorted(igdb.games)
    # Games changed after the stopped run read them are the next incremental run's.
    synced_at = sync_state(database, "igdb_games/sync")["synced_at"]
    assert first_started <= synced_at < second_started
