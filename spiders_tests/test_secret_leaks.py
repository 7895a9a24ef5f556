"""Secrets stay out of every output of a crawl, its commands and the places it stores things.

Each test runs what an operator runs (a crawl against the fakes, ``scrapy syncall``,
``scrapy schedule``) with distinctive credential values and looks for those values where
they once leaked: the DEBUG log (the MongoDB driver's command log), the shared Redis queue,
the ``failures`` collection, printed reports and tracebacks.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f
from scrapy.utils.project import get_project_settings

from contentcrawl.redaction import redact_text, redact_url, split_userinfo, url_password_forms
from contentcrawl.spiders.igdb_games import IgdbGamesSpider
from contentcrawl.spiders.openlibrary_authors import OpenLibraryAuthorsSpider
from contentcrawl.spiders.tmdb_movies import TmdbMoviesSpider
from spiders_tests.conftest import open_store_for
from spiders_tests.crawling import PROJECT, crawl, run_scrapy
from spiders_tests.fakes.igdb import FakeIgdb, sample_games
from spiders_tests.fakes.server import FakeRequest, FakeResponse, FakeServer
from spiders_tests.fakes.tmdb import TmdbFake, movie_550
from spiders_tests.mongo_server import free_port
from spiders_tests.settings_for import igdb_settings

CLIENT_ID = "leaktest-client-id-7Qm2"
CLIENT_SECRET = "leaktest-client-secret-9Zx4"  # noqa: S105 - a test credential
TMDB_TOKEN = "leaktest-tmdb-token-3Kp8"  # noqa: S105 - a test credential
TMDB_KEY = "leaktesttmdbkey5Hn1"
# A generated password: base64 holds "/" and "+", which a URL's userinfo must escape.
SLASHED_PASSWORD = "leaktestPw4Rt/x+Yz9"  # noqa: S105 - a test credential
FAST_SLOTS = {
    **get_project_settings().getdict("DOWNLOAD_SLOTS"),
    "igdb": {"concurrency": 4, "delay": 0.0, "jitter": 0},
    "twitch": {"concurrency": 1, "delay": 0.0, "jitter": 0},
    "tmdb": {"concurrency": 4, "delay": 0.0, "jitter": 0},
}


def igdb_fake(server: FakeServer, **kwargs: Any) -> FakeIgdb:
    """IGDB with 30 games and no account limits."""
    return FakeIgdb(
        server,
        sample_games(30),
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        requests_per_second=None,
        max_open=None,
        **kwargs,
    )


def leak_settings(fake: FakeIgdb, **overrides: Any) -> dict[str, Any]:
    """A crawl of ``fake`` over 2 id ranges, retried once after a short pause."""
    return igdb_settings(
        fake,
        {},
        DOWNLOAD_SLOTS=FAST_SLOTS,
        IGDB_PARALLEL_RANGES=2,
        RETRY_TIMES=1,
        RETRY_BACKOFF_BASE=0.01,
        **overrides,
    )


def scrapy_run(
    tmp_path: Path, *args: str, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    """A ``scrapy`` command of the project, as an operator runs it, on a fresh store."""
    environment = {
        **os.environ,
        "CONTENTCRAWL_ENV_FILE": os.devnull,
        "MONGO_URI": "",
        "SQLITE_PATH": str(tmp_path / "store.sqlite3"),
        "STORE_FAILED_DIR": str(tmp_path / "failed"),
        "DUMPS_DIR": str(tmp_path / "dumps"),
        **env,
    }
    return run_scrapy(*args, cwd=PROJECT, env=environment, timeout=timeout)


class RedisMonitor:
    """Every command a Redis server receives while it runs (``MONITOR``), as raw bytes."""

    def __init__(self, redis_url: str) -> None:
        parts = urlsplit(redis_url)
        self._socket = socket.create_connection((parts.hostname, parts.port), timeout=5)
        self._socket.sendall(b"MONITOR\r\n")
        # Blocking from now on: stop() ends the reading thread by shutting the socket down.
        self._socket.settimeout(None)
        self._received = bytearray()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while chunk := self._socket.recv(65536):
            self._received += chunk

    def stop(self) -> bytes:
        self._socket.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)
        self._socket.close()
        return bytes(self._received)


@deferred_f_from_coro_f
async def test_igdb_token_stays_out_of_the_mongodb_drivers_debug_log(
    fake_server: FakeServer, mongo_uri: str, caplog: pytest.LogCaptureFixture
) -> None:
    # At DEBUG the MongoDB driver logs every command it sends and every reply it gets.
    caplog.set_level(logging.DEBUG)
    fake = igdb_fake(fake_server)
    store = {"MONGO_URI": mongo_uri, "MONGO_DATABASE": f"test_{uuid.uuid4().hex[:12]}"}

    # The first run stores the token it got, the second reads it back.
    first = await crawl(IgdbGamesSpider, leak_settings(fake, **store), mode="full")
    second = await crawl(IgdbGamesSpider, leak_settings(fake, **store), mode="full")

    assert first.stats.get_value("igdb/token/fetched") == 1
    assert second.stats.get_value("igdb/token/loaded") == 1
    (token,) = fake.issued
    text = caplog.text
    # The driver logged the write and the read of the token's state document.
    assert '\\"name\\": \\"igdb/token\\"' in text
    assert '\\"access_token\\": \\"***' in text
    for secret in (token, CLIENT_ID, CLIENT_SECRET):
        assert secret not in text


@pytest.mark.usefixtures("redis")  # an emptied Redis: no state of another test's run
@deferred_f_from_coro_f
async def test_retried_requests_carry_no_credentials_into_the_shared_redis_queue(
    fake_server: FakeServer, redis_url: str, tmp_path: Path
) -> None:
    exports = FakeServer().start()
    tmdb = TmdbFake(fake_server, exports, token=TMDB_TOKEN, rate_limit=10_000)
    tmdb.add("movie", movie_550())
    # Each detail request fails once: its retry goes back through the shared queue.
    tmdb.fail(r"/3/movie/550", 503)
    igdb_server = FakeServer().start()
    # Each token serves two requests, then IGDB answers 401: the request is replayed with a
    # new token, through the shared queue.
    igdb = igdb_fake(igdb_server, token_uses=2)
    distributed = {
        "REDIS_URL": redis_url,
        "DISTRIBUTED_TICK": 0.1,
        "MONGO_URI": "",
        "SQLITE_PATH": str(tmp_path / "store.sqlite3"),
    }
    monitor = RedisMonitor(redis_url)
    try:
        movies = await crawl(
            TmdbMoviesSpider,
            {
                **tmdb.settings(),
                **distributed,
                "DOWNLOAD_SLOTS": FAST_SLOTS,
                "RETRY_BACKOFF_BASE": 0.01,
            },
            mode="ids",
            ids="550",
        )
        games = await crawl(IgdbGamesSpider, leak_settings(igdb, **distributed), mode="full")
    finally:
        seen = monitor.stop()
        exports.stop()
        igdb_server.stop()

    assert movies.stats.get_value("store/movies/inserted") == 1
    assert movies.stats.get_value("retry/count") == 1
    assert games.stats.get_value("igdb/requests/replayed") >= 1
    assert games.stats.get_value("item_scraped_count") == 30
    # The retried and replayed requests went through Redis (scrapy-redis pickles them whole).
    assert b"/3/movie/550" in seen
    assert b"/v4/games" in seen
    assert len(igdb.issued) >= 2
    for secret in (TMDB_TOKEN, *igdb.issued, CLIENT_ID):
        assert secret.encode() not in seen


@deferred_f_from_coro_f
async def test_a_redirect_echoing_the_query_takes_the_tmdb_key_to_no_other_host(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    exports = FakeServer().start()
    elsewhere = FakeServer().start()
    tmdb = TmdbFake(elsewhere, exports, api_key=TMDB_KEY, rate_limit=10_000)
    tmdb.add("movie", movie_550())

    # The configured API host moved: it redirects to another, query and all.
    @fake_server.route("GET", r"/3/.*")
    def moved(request: FakeRequest) -> FakeResponse:
        query = urlencode(
            [(name, value) for name, values in request.query.items() for value in values]
        )
        return FakeResponse(301, b"", {"Location": f"{elsewhere.url}{request.path}?{query}"})

    settings = {
        **tmdb.settings(),
        "TMDB_API_URL": f"{fake_server.url}/3",
        "TMDB_READ_ACCESS_TOKEN": "",
        "TMDB_API_KEY": TMDB_KEY,
        "MONGO_URI": "",
        "SQLITE_PATH": str(tmp_path / "store.sqlite3"),
        "DOWNLOAD_SLOTS": FAST_SLOTS,
    }
    try:
        crawler = await crawl(TmdbMoviesSpider, settings, mode="ids", ids="550")
    finally:
        exports.stop()
        elsewhere.stop()

    assert [hit.param("api_key") for hit in fake_server.hits(r"/3/movie/550")] == [TMDB_KEY]
    followed = elsewhere.hits(r"/3/movie/550")
    assert len(followed) == 1
    assert followed[0].param("api_key") is None
    # Unauthenticated there, as any host but TMDB_API_URL's is.
    assert crawler.stats.get_value("finish_reason") == "tmdb_unauthorized"


@deferred_f_from_coro_f
async def test_the_twitch_token_request_is_never_kept_as_a_dead_letter(
    tmp_path: Path,
) -> None:
    fake_server = FakeServer().start()
    fake = igdb_fake(fake_server)
    store_settings = {"MONGO_URI": "", "SQLITE_PATH": str(tmp_path / "store.sqlite3")}
    # Nothing listens there: the token request fails after its retries.
    unreachable = f"http://127.0.0.1:{free_port()}/oauth2/token"
    try:
        crawler = await crawl(
            IgdbGamesSpider,
            leak_settings(fake, TWITCH_TOKEN_URL=unreachable, **store_settings),
            mode="full",
        )
    finally:
        fake_server.stop()

    assert crawler.stats.get_value("finish_reason") == "igdb_token_unavailable"
    assert crawler.stats.get_value("retry/max_reached") == 1
    store = open_store_for(store_settings)
    try:
        failures = store.pending_failures()
    finally:
        store.close()
    # Replaying it would post the masked secret to Twitch; the next run asks for a token anyway.
    assert failures == []
    assert crawler.stats.get_value("failures/recorded") is None


@pytest.mark.parametrize(
    "command",
    [("crawl", "igdb_games"), ("syncall", "--job", "igdb_games-incremental")],
    ids=["crawl", "syncall"],
)
def test_a_redis_password_with_a_slash_stays_out_of_the_output_and_log(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    log_file = tmp_path / "scrapy.log"
    # redis-py cannot parse it: its error quotes the password's first part as the port.
    redis_url = f"redis://:{SLASHED_PASSWORD}@127.0.0.1:{free_port()}/0"

    run = scrapy_run(
        tmp_path,
        *command,
        "-s",
        f"LOG_FILE={log_file}",
        REDIS_URL=redis_url,
        IGDB_CLIENT_ID=CLIENT_ID,
        IGDB_CLIENT_SECRET=CLIENT_SECRET,
    )

    assert run.returncode == 1
    log = log_file.read_text()
    assert "ValueError: Port could not be cast to integer value as '***'" in log
    if command[0] == "syncall":
        assert "igdb_games-incremental" in run.stdout
        assert "FAILED: crashed: ValueError" in run.stdout
    for output in (run.stdout, run.stderr, log):
        for piece in SLASHED_PASSWORD.split("/"):
            assert piece not in output


@deferred_f_from_coro_f
async def test_a_dump_url_password_with_a_slash_stays_out_of_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # Parsers take the password's first piece for the port; nothing listens on the real one.
    dump = f"http://reader:{SLASHED_PASSWORD}@127.0.0.1:{free_port()}/ol_dump_authors.txt.gz"
    settings = {
        "MONGO_URI": "",
        "SQLITE_PATH": str(tmp_path / "store.sqlite3"),
        "DUMPS_DIR": str(tmp_path / "dumps"),
    }

    crawler = await crawl(OpenLibraryAuthorsSpider, settings, dump=dump)

    assert crawler.stats.get_value("finish_reason") == "dump_download_failed"
    assert "Connection refused" in caplog.text
    for piece in SLASHED_PASSWORD.split("/"):
        assert piece not in caplog.text


@pytest.fixture
def scrapyd(fake_server: FakeServer) -> FakeServer:
    """A scrapyd that wants HTTP basic auth (``scrapyd.conf`` username and password)."""
    expected = "Basic " + base64.b64encode(f"ops:{SLASHED_PASSWORD}".encode()).decode()

    def guarded(answer: dict[str, Any]) -> Any:
        def handler(request: FakeRequest) -> FakeResponse:
            if request.header("authorization") != expected:
                return FakeResponse(401, b"Unauthorized", {"Content-Type": "text/plain"})
            return FakeResponse.json(answer)

        return handler

    fake_server.route("GET", r"/listjobs\.json")(
        guarded({"status": "ok", "pending": [], "running": [], "finished": []})
    )
    fake_server.route("POST", r"/schedule\.json")(guarded({"status": "ok", "jobid": "job-1"}))
    return fake_server


def test_scrapyd_credentials_in_the_url_are_sent_as_basic_auth_and_never_printed(
    scrapyd: FakeServer, tmp_path: Path
) -> None:
    address = urlsplit(scrapyd.url).netloc
    url = f"http://ops:{SLASHED_PASSWORD}@{address}/"

    given = scrapy_run(tmp_path, "schedule", "--job", "igdb_games-incremental", "--url", url)
    configured = scrapy_run(
        tmp_path, "schedule", "--job", "igdb_games-incremental", SCRAPYD_URL=url
    )

    for run in (given, configured):
        assert run.returncode == 0, run.stderr[-2000:]
        assert run.stdout.startswith("scheduled igdb_games-incremental as job-1")
        for piece in SLASHED_PASSWORD.split("/"):
            assert piece not in run.stdout + run.stderr
    assert [hit.path for hit in scrapyd.hits(r"/.*")] == ["/listjobs.json", "/schedule.json"] * 2


def test_scrapyd_error_messages_mask_the_url_password(scrapyd: FakeServer, tmp_path: Path) -> None:
    # A wrong password: scrapyd answers 401.
    url = f"http://ops:{SLASHED_PASSWORD}-wrong@{urlsplit(scrapyd.url).netloc}/"

    run = scrapy_run(tmp_path, "schedule", "--job", "igdb_games-incremental", SCRAPYD_URL=url)

    assert run.returncode == 1
    assert run.stderr.startswith(f"scrapyd: http://ops:***@{urlsplit(scrapyd.url).netloc}/listjobs")
    assert "Unauthorized" in run.stderr
    for piece in SLASHED_PASSWORD.split("/"):
        assert piece not in run.stdout + run.stderr


def test_json_credential_fields_are_masked_even_when_cut_short() -> None:
    command = json.dumps(
        {"u": {"value": {"access_token": "tok-1a2b3c", "client_secret": "sec-4d5e"}}}
    )
    nested = json.dumps({"command": command})
    # The driver cuts long documents at 1000 characters, maybe inside a value.
    truncated = nested[: nested.index("tok-1a2b") + len("tok-1a2b")] + "..."

    for text in (command, nested, truncated):
        clean = redact_text(text)
        assert "tok-1a2b" not in clean
        assert "sec-4d5e" not in clean
    assert json.loads(redact_text(command)) == {
        "u": {"value": {"access_token": "***", "client_secret": "***"}}
    }


@pytest.mark.parametrize(
    ("url", "shown", "password"),
    [
        (
            f"redis://:{SLASHED_PASSWORD}@redis.internal:6379/0",
            "redis://:***@redis.internal:6379/0",
            SLASHED_PASSWORD,
        ),
        ("mongodb://bob:p%2Fw@db:27017/x", "mongodb://bob:***@db:27017/x", "p%2Fw"),
        ("mongodb://bob:p@ss@db/x", "mongodb://bob:***@db/x", "p@ss"),
        # An "@" after a host and port is in the path, not the end of a userinfo.
        ("http://127.0.0.1:6800/logs/a@b.log", "http://127.0.0.1:6800/logs/a@b.log", None),
        ("https://musicbrainz.org/ws/2/x@y", "https://musicbrainz.org/ws/2/x@y", None),
    ],
)
def test_a_url_password_is_found_whole_even_unescaped(
    url: str, shown: str, password: str | None
) -> None:
    assert redact_url(url) == shown
    assert split_userinfo(url)[2] == password


def test_the_forms_of_a_url_password_include_the_pieces_parsers_quote() -> None:
    forms = url_password_forms(f"redis://:{SLASHED_PASSWORD}@h:1/0")

    assert forms == [SLASHED_PASSWORD, "leaktestPw4Rt", "x+Yz9"]
    assert url_password_forms("mongodb://bob:p%2Fw@db/") == ["p%2Fw", "p/w"]
    assert url_password_forms("redis://h:6379/0") == []
