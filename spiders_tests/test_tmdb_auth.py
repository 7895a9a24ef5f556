"""TmdbAuthMiddleware: credentials only to the API host, and never in logs, stats or records."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scrapy import Request
from scrapy.exceptions import NotConfigured
from scrapy.http import TextResponse
from scrapy.utils.defer import deferred_f_from_coro_f
from scrapy.utils.project import get_project_settings
from scrapy.utils.test import get_crawler

from contentcrawl.middlewares.tmdb_auth import CredentialsRejected, TmdbAuthMiddleware
from contentcrawl.spiders.tmdb_movies import TmdbMoviesSpider
from spiders_tests.conftest import open_store_for
from spiders_tests.crawling import crawl
from spiders_tests.fakes.server import FakeServer
from spiders_tests.fakes.tmdb import TmdbFake, load, movie_550
from spiders_tests.settings_for import tmdb_settings

API = "https://api.themoviedb.org/3"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.test-read-access-token"  # noqa: S105 - a test credential
KEY = "0123456789abcdef0123456789abcdef"


def middleware(**settings: Any) -> TmdbAuthMiddleware:
    crawler = get_crawler(settings_dict={"TMDB_API_URL": API, **settings})
    return TmdbAuthMiddleware.from_crawler(crawler)


def test_bearer_token_goes_to_the_api_host_only() -> None:
    auth = middleware(TMDB_READ_ACCESS_TOKEN=TOKEN, TMDB_API_KEY=KEY)
    api = Request(f"{API}/movie/550")
    other_host = Request("https://files.tmdb.org/p/exports/movie_ids_05_15_2024.json.gz")
    other_port = Request("https://api.themoviedb.org:8443/3/movie/550")
    other_scheme = Request("http://api.themoviedb.org/3/movie/550")

    for request in (api, other_host, other_port, other_scheme):
        assert auth.process_request(request) is None

    assert api.headers["Authorization"] == f"Bearer {TOKEN}".encode()
    # The token is preferred: the key does not ride along.
    assert api.url == f"{API}/movie/550"
    for request in (other_host, other_port, other_scheme):
        assert b"Authorization" not in request.headers
        assert "api_key" not in request.url


def test_a_callers_authorization_header_is_kept() -> None:
    auth = middleware(TMDB_READ_ACCESS_TOKEN=TOKEN)
    request = Request(f"{API}/movie/550", headers={"Authorization": "Bearer mine"})

    auth.process_request(request)

    assert request.headers["Authorization"] == b"Bearer mine"


def test_api_key_is_in_the_url_only_while_downloading() -> None:
    auth = middleware(TMDB_API_KEY=KEY)
    request = Request(f"{API}/movie/550?language=en-US")

    auth.process_request(request)
    on_the_wire = request.url
    response = auth.process_response(
        request, TextResponse(on_the_wire, body=b"{}", encoding="utf-8", request=request)
    )

    assert on_the_wire == f"{API}/movie/550?language=en-US&api_key={KEY}"
    assert request.url == f"{API}/movie/550?language=en-US"
    assert response.url == f"{API}/movie/550?language=en-US"
    assert b"Authorization" not in request.headers


def test_api_key_is_taken_out_of_download_errors() -> None:
    auth = middleware(TMDB_API_KEY=KEY)
    request = Request(f"{API}/movie/550")
    auth.process_request(request)
    error = TimeoutError(f"Getting {request.url} took longer than 60.0 seconds.")

    assert auth.process_exception(request, error) is None

    assert KEY not in str(error)
    assert "api_key=***" in str(error)
    assert request.url == f"{API}/movie/550"


def test_after_a_401_no_further_api_request_goes_out() -> None:
    """The engine may hand the downloader new requests before the spider's callback sees
    the 401 and closes: they fail unsent, so a rejected key is not tried again."""
    auth = middleware(TMDB_API_KEY=KEY)
    first = Request(f"{API}/movie/550")
    auth.process_request(first)
    rejected = TextResponse(
        first.url, status=401, body=b'{"status_code": 7}', encoding="utf-8", request=first
    )
    auth.process_response(first, rejected)

    with pytest.raises(CredentialsRejected):
        auth.process_request(Request(f"{API}/movie/551"))
    export = Request("https://files.tmdb.org/p/exports/movie_ids_05_15_2024.json.gz")
    assert auth.process_request(export) is None


def test_a_401_from_another_host_rejects_nothing() -> None:
    auth = middleware(TMDB_READ_ACCESS_TOKEN=TOKEN)
    image = Request("https://image.tmdb.org/t/p/original/a.jpg")
    auth.process_response(image, TextResponse(image.url, status=401, request=image))

    request = Request(f"{API}/movie/550")
    assert auth.process_request(request) is None
    assert request.headers["Authorization"] == f"Bearer {TOKEN}".encode()


def test_a_callers_api_key_is_kept() -> None:
    auth = middleware(TMDB_API_KEY=KEY)
    request = Request(f"{API}/movie/550?api_key=mine")

    auth.process_request(request)

    assert request.url == f"{API}/movie/550?api_key=mine"


def test_no_credentials_disables_the_middleware(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG), pytest.raises(NotConfigured):
        middleware(TMDB_READ_ACCESS_TOKEN="", TMDB_API_KEY="")
    assert "TMDB_READ_ACCESS_TOKEN" in caplog.text


@pytest.fixture
def plain_log_records() -> Iterator[None]:
    """Log records without the LogRedaction extension's masking, so a leak would show."""
    factory = logging.getLogRecordFactory()
    logging.setLogRecordFactory(logging.LogRecord)
    yield
    logging.setLogRecordFactory(factory)


@deferred_f_from_coro_f
async def test_api_key_never_reaches_logs_stats_or_records(
    fake_server: FakeServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    plain_log_records: None,
) -> None:
    caplog.set_level(logging.DEBUG)
    exports = FakeServer().start()
    try:
        fake = TmdbFake(fake_server, exports, api_key=KEY)
        fake.add("movie", movie_550())
        fake.add("movie", load("movie_47964_append_15_parts.json"))
        fake.fail(r"/3/movie/47964", 503)
        store_settings = {"MONGO_URI": "", "SQLITE_PATH": str(tmp_path / "store.sqlite3")}
        settings = tmdb_settings(
            fake,
            store_settings,
            tmp_path,
            TMDB_READ_ACCESS_TOKEN="",
            TMDB_API_KEY=KEY,
            EXTENSIONS={
                **get_project_settings().getdict("EXTENSIONS"),
                "contentcrawl.extensions.log_redaction.LogRedaction": None,
            },
        )

        crawler = await crawl(TmdbMoviesSpider, settings, ids="550,47964,230")
    finally:
        exports.stop()

    stats = crawler.stats.get_stats()
    assert stats["store/movies/inserted"] == 2
    assert stats["tmdb/movies/not_found"] == 1
    api_requests = fake.api.requests
    assert api_requests
    assert all(r.param("api_key") == KEY for r in api_requests)
    assert all(r.header("authorization") is None for r in api_requests)
    # The DEBUG lines that quote URLs were captured: crawled, retried, 404.
    assert "Crawled (200) <GET" in caplog.text
    assert "Crawled (404) <GET" in caplog.text
    assert "Retrying <GET" in caplog.text
    assert KEY not in caplog.text
    assert KEY not in json.dumps(stats, default=str)
    store = open_store_for(store_settings)
    try:
        documents = list(store.iter_documents("movies"))
    finally:
        store.close()
    assert KEY not in json.dumps(documents)
