"""IgdbOAuthMiddleware against the local Twitch token endpoint and IGDB fake."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import scrapy
from scrapy.http import Response
from scrapy.utils.defer import deferred_f_from_coro_f

from contentcrawl.middlewares.igdb_oauth import STATE_NAME, where_kept
from contentcrawl.spiders.igdb_games import IgdbGamesSpider
from spiders_tests.conftest import open_store_for
from spiders_tests.crawling import crawl
from spiders_tests.fakes.igdb import FakeIgdb, unlimited_fake
from spiders_tests.fakes.server import FakeResponse, FakeServer
from spiders_tests.settings_for import igdb_settings, sqlite_settings

# Slots faster than IGDB's limits: these tests run against a fake without them.


def bearer(request: Any) -> str:
    return request.header("authorization") or ""


class RequestsSpider(scrapy.Spider):
    """Sends ``requests`` (dicts of scrapy.Request arguments) all at once; keeps the answers."""

    name = "igdb_oauth_test"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.statuses: list[int] = []

    async def start(self) -> AsyncIterator[scrapy.Request]:
        for arguments in self.requests:
            yield scrapy.Request(
                **arguments,
                meta={"download_slot": "igdb", "handle_httpstatus_all": True},
                callback=self.parse,
                dont_filter=True,
            )

    def parse(self, response: Response) -> None:
        self.statuses.append(response.status)


def games_request(fake: FakeIgdb, n: int, **arguments: Any) -> dict[str, Any]:
    return {
        "url": f"{fake.api_url}/games",
        "method": "POST",
        "body": f"fields name; where id = {n};",
        **arguments,
    }


@deferred_f_from_coro_f
async def test_one_token_request_for_a_burst_of_requests(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    # The token endpoint is slow: every request of the burst is waiting for the token.
    fake = unlimited_fake(fake_server, 20, token_latency=0.5)
    requests = [games_request(fake, n) for n in range(1, 13)]

    crawler = await crawl(
        RequestsSpider, igdb_settings(fake, sqlite_settings(tmp_path)), requests=requests
    )

    assert fake.token_requests == 1
    (token,) = fake.issued
    hits = fake_server.hits(r"/v4/games")
    assert len(hits) == 12
    assert {bearer(hit) for hit in hits} == {f"Bearer {token}"}
    assert {hit.header("client-id") for hit in hits} == {fake.client_id}
    assert crawler.spider.statuses == [200] * 12
    assert crawler.stats.get_value("igdb/token/fetched") == 1


@deferred_f_from_coro_f
async def test_token_is_reused_across_requests_and_runs(
    fake_server: FakeServer, store_settings: dict[str, Any]
) -> None:
    fake = unlimited_fake(fake_server, 200)
    settings = igdb_settings(fake, store_settings)

    first = await crawl(IgdbGamesSpider, settings)
    second = await crawl(IgdbGamesSpider, settings, mode="full")

    assert fake.token_requests == 1
    (token,) = fake.issued
    api_hits = fake_server.hits(r"/v4/.*")
    assert len(api_hits) > 2 * 8  # several pages per run
    assert {bearer(hit) for hit in api_hits} == {f"Bearer {token}"}
    assert first.stats.get_value("igdb/token/fetched") == 1
    assert second.stats.get_value("igdb/token/fetched") is None
    assert second.stats.get_value("igdb/token/loaded") == 1
    assert second.stats.get_value("item_scraped_count") == 200
    store = open_store_for(store_settings)
    try:
        state = store.get_state(STATE_NAME)
    finally:
        store.close()
    assert state["access_token"] == token
    assert state["client_id"] == fake.client_id
    assert state["expires_at"] == pytest.approx(time.time() + fake.expires_in, abs=60)


@pytest.mark.parametrize(
    ("client_id", "expires_in"),
    [(None, 60), ("another-app-client-id", 5_000_000)],
    ids=["about-to-expire", "other-app"],
)
@deferred_f_from_coro_f
async def test_stored_token_not_usable_is_replaced(
    fake_server: FakeServer, tmp_path: Path, client_id: str | None, expires_in: int
) -> None:
    fake = unlimited_fake(fake_server, 30)
    stale = fake.issue_token()
    store_settings = sqlite_settings(tmp_path)
    store = open_store_for(store_settings)
    store.set_state(
        STATE_NAME,
        {
            "client_id": client_id or fake.client_id,
            "access_token": stale,
            "expires_at": time.time() + expires_in,
        },
    )
    store.close()

    crawler = await crawl(IgdbGamesSpider, igdb_settings(fake, store_settings))

    assert fake.token_requests == 1
    assert not [hit for hit in fake_server.hits(r"/v4/.*") if stale in bearer(hit)]
    assert crawler.stats.get_value("igdb/token/fetched") == 1
    assert crawler.stats.get_value("item_scraped_count") == 30


@deferred_f_from_coro_f
async def test_token_expiring_mid_crawl_is_refreshed_once_and_no_page_is_lost(
    fake_server: FakeServer, store_settings: dict[str, Any]
) -> None:
    # 1200 games in pages of 25 over 8 parallel ranges: about 56 API requests. The first
    # token dies after 40 while about 7 others signed with it are on their way; the second
    # lives through the rest.
    fake = unlimited_fake(fake_server, 1200, token_uses=40)

    crawler = await crawl(IgdbGamesSpider, igdb_settings(fake, store_settings))

    first, second = fake.issued
    assert fake.token_requests == 2
    assert fake.expired == {first}
    rejected = fake.unauthorized_tokens[first]
    assert rejected >= 2  # concurrent 401s, still one token request
    assert set(fake.unauthorized_tokens) == {first}
    stats = crawler.stats.get_stats()
    assert stats["igdb/token/rejected"] == 1
    assert stats["igdb/requests/replayed"] == rejected
    assert "igdb/requests/unauthorized" not in stats
    assert "igdb/pages/failed" not in stats
    assert stats["store/games/inserted"] == 1200
    assert stats["finish_reason"] == "finished"
    store = open_store_for(store_settings)
    try:
        assert store.count("games") == 1200
        assert store.get_state(STATE_NAME)["access_token"] == second
    finally:
        store.close()


@pytest.mark.parametrize(
    ("wrong", "status", "message"),
    [("client_secret", 403, "invalid client secret"), ("client_id", 400, "invalid client")],
)
@deferred_f_from_coro_f
async def test_bad_credentials_close_the_spider_at_once(
    fake_server: FakeServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    wrong: str,
    status: int,
    message: str,
) -> None:
    fake = unlimited_fake(fake_server, 30)
    settings = igdb_settings(fake, sqlite_settings(tmp_path))
    settings[f"IGDB_{wrong.upper()}"] = "wrong-value-0123456789"

    with caplog.at_level(logging.DEBUG):
        crawler = await crawl(IgdbGamesSpider, settings)

    assert crawler.stats.get_value("finish_reason") == "igdb_bad_credentials"
    assert fake.token_requests == 1
    assert fake.api_requests == 0
    assert crawler.stats.get_value("igdb/token/failed") == 1
    assert (
        f"Twitch refused the IGDB credentials (HTTP {status}: {message}); "
        "check IGDB_CLIENT_ID and IGDB_CLIENT_SECRET"
    ) in caplog.text
    assert "wrong-value-0123456789" not in caplog.text or wrong == "client_id"
    store = open_store_for(sqlite_settings(tmp_path))
    try:
        assert store.get_state("igdb_games/sync") is None
        assert store.get_state(STATE_NAME) is None
    finally:
        store.close()


@deferred_f_from_coro_f
async def test_missing_credentials_close_the_spider(
    fake_server: FakeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = unlimited_fake(fake_server, 30)

    crawler = await crawl(
        IgdbGamesSpider, igdb_settings(fake, sqlite_settings(tmp_path), IGDB_CLIENT_SECRET="")
    )

    assert crawler.stats.get_value("finish_reason") == "igdb_credentials_missing"
    assert fake.token_requests == 0
    assert fake.api_requests == 0
    assert "IGDB_CLIENT_ID and IGDB_CLIENT_SECRET must both be set" in caplog.text


@deferred_f_from_coro_f
async def test_app_refused_even_with_a_new_token_closes_the_spider(
    fake_server: FakeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Every token dies on first use: the replay after the refresh gets a 401 too.
    fake = unlimited_fake(fake_server, 30, token_uses=0)

    crawler = await crawl(IgdbGamesSpider, igdb_settings(fake, sqlite_settings(tmp_path)))

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "igdb_unauthorized"
    assert fake.token_requests == 2  # the first token and one refresh, no more
    assert fake.statuses[401] == 2
    assert stats["igdb/requests/replayed"] == 1
    assert stats["igdb/requests/unauthorized"] == 1
    assert stats["igdb/pages/failed"] == 1
    assert "IGDB refused a freshly obtained token too (401)" in caplog.text


@deferred_f_from_coro_f
async def test_token_endpoint_failing_closes_the_spider(
    fake_server: FakeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = unlimited_fake(fake_server, 30)

    @fake_server.route("POST", r"/broken/token")
    def broken(request: Any) -> FakeResponse:
        return FakeResponse(503, b"upstream unavailable")

    settings = igdb_settings(
        fake,
        sqlite_settings(tmp_path),
        TWITCH_TOKEN_URL=f"{fake_server.url}/broken/token",
        RETRY_TIMES=1,
        RETRY_BACKOFF_BASE=0.01,
    )

    crawler = await crawl(IgdbGamesSpider, settings)

    assert crawler.stats.get_value("finish_reason") == "igdb_token_unavailable"
    assert len(fake_server.hits(r"/broken/token")) == 2  # the request and its one retry
    assert fake.api_requests == 0
    assert "the Twitch token endpoint gave no token (HTTP 503: upstream unavailable)" in (
        caplog.text
    )


@deferred_f_from_coro_f
async def test_only_igdb_api_requests_are_signed(fake_server: FakeServer, tmp_path: Path) -> None:
    fake = unlimited_fake(fake_server, 5)

    @fake_server.route("GET", r"/elsewhere")
    def elsewhere(request: Any) -> FakeResponse:
        return FakeResponse.json({})

    requests = [
        games_request(fake, 1),
        {"url": f"{fake_server.url}/elsewhere"},
        {"url": f"{fake_server.url}/v40/elsewhere"},
        games_request(fake, 2, headers={"Authorization": "Bearer the-callers-own"}),
    ]

    crawler = await crawl(
        RequestsSpider, igdb_settings(fake, sqlite_settings(tmp_path)), requests=requests
    )

    (token,) = fake.issued
    signed, callers = sorted(fake_server.hits(r"/v4/games"), key=lambda hit: hit.body)
    assert bearer(signed) == f"Bearer {token}"
    assert bearer(callers) == "Bearer the-callers-own"  # kept, and its 401 not replayed
    assert sorted(crawler.spider.statuses) == [200, 200, 401, 404]
    assert [bearer(hit) for hit in fake_server.hits(r"/elsewhere|/v40/elsewhere")] == ["", ""]
    (token_request,) = fake_server.hits(r"/oauth2/token")
    assert bearer(token_request) == ""
    assert token_request.query == {}  # the secret rides in the body: Scrapy logs URLs
    assert b"client_secret=" in token_request.body
    assert crawler.stats.get_value("igdb/requests/replayed") is None


@deferred_f_from_coro_f
async def test_secrets_never_reach_logs_stats_or_records(
    fake_server: FakeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = unlimited_fake(fake_server, 600, token_uses=22)
    store_settings = sqlite_settings(tmp_path)

    with caplog.at_level(logging.DEBUG):
        crawler = await crawl(IgdbGamesSpider, igdb_settings(fake, store_settings))

    assert crawler.stats.get_value("igdb/requests/replayed")  # a refresh happened
    assert len(fake.issued) >= 2
    secrets = [fake.client_secret, *fake.issued]
    assert "Crawled (200) <POST" in caplog.text  # DEBUG lines were captured
    stats = repr(crawler.stats.get_stats())
    store = open_store_for(store_settings)
    try:
        records = json.dumps(list(store.iter_documents("games")))
    finally:
        store.close()
    for secret in secrets:
        assert secret not in caplog.text
        assert secret not in stats
        assert secret not in records
    # Nothing had to be masked by the log redaction either: no component tried to log one.
    assert "***" not in caplog.text


@pytest.mark.parametrize(
    ("configured", "redis_url", "kept_in"),
    [("store", "", "store"), (" Memory ", "", "memory"), ("redis", "redis://127.0.0.1:1", "redis")],
)
def test_igdb_token_store_names_where_the_token_is_kept(
    configured: str, redis_url: str, kept_in: str
) -> None:
    assert where_kept(configured, redis_url) == kept_in


@pytest.mark.parametrize(
    ("configured", "redis_url", "error"),
    [
        ("redis", "", "IGDB_TOKEN_STORE=redis keeps the token in Redis: set REDIS_URL"),
        ("disk", "", "IGDB_TOKEN_STORE must be one of store, redis, memory, not 'disk'"),
    ],
)
def test_an_igdb_token_store_that_cannot_be_is_a_clear_error(
    configured: str, redis_url: str, error: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        where_kept(configured, redis_url)
