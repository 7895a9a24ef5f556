"""AIMD pacing: the rate a slot learns under a server's real limit (contentcrawl/pacing.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f
from scrapy.utils.project import get_project_settings

from contentcrawl.pacing import AimdRate, SlotRates, configured_slot, host_slot
from contentcrawl.spiders.tmdb_movies import TmdbMoviesSpider
from spiders_tests.crawling import crawl
from spiders_tests.fakes.server import FakeServer
from spiders_tests.fakes.tmdb import TmdbFake, load
from spiders_tests.settings_for import with_tmdb_auth


# -- the rate ----------------------------------------------------------------------------
def test_a_rate_starts_at_its_limit_and_a_refusal_multiplies_it() -> None:
    rate = AimdRate(40.0, decrease=0.5, recovery_requests=10)
    assert rate.rate == 40.0
    assert rate.delay == pytest.approx(1 / 40)
    assert not rate.succeeded()  # at the limit already
    assert rate.refused(sent_at=1.0, now=2.0)
    assert rate.rate == 20.0
    assert rate.delay == pytest.approx(1 / 20)


def test_successes_add_back_to_the_refused_rate_then_to_the_limit_only() -> None:
    rate = AimdRate(40.0, decrease=0.5, recovery_requests=10)
    rate.refused(sent_at=0.0, now=0.0)
    for _ in range(5):
        assert rate.succeeded()
    assert rate.rate == pytest.approx(30.0)  # additive: half way in half the requests
    for _ in range(5):
        rate.succeeded()
    assert rate.rate == pytest.approx(40.0)
    rate.succeeded()
    assert rate.rate == 40.0


def test_refusals_of_requests_sent_before_the_last_decrease_do_not_decrease_again() -> None:
    rate = AimdRate(40.0, decrease=0.5, recovery_requests=10)
    assert rate.refused(sent_at=9.9, now=10.0)
    # Sent at the old rate, answered after the decrease: the same overload.
    assert not rate.refused(sent_at=9.95, now=10.05)
    assert rate.rate == 20.0
    assert rate.refused(sent_at=10.1, now=10.2)
    assert rate.rate == 10.0
    # The step is taken from the last refusal: 10 successes go from 10 back to 20.
    for _ in range(10):
        rate.succeeded()
    assert rate.rate == pytest.approx(20.0)


@pytest.mark.parametrize(
    ("limit", "options", "message"),
    [
        (0.0, {}, "above 0"),
        (10.0, {"decrease": 1.0}, "between 0 and 1"),
        (10.0, {"decrease": 0.0}, "between 0 and 1"),
        (10.0, {"recovery_requests": 0}, "at least 1"),
    ],
)
def test_a_rate_refuses_settings_that_cannot_work(
    limit: float, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        AimdRate(limit, **options)


def test_slot_rates_cover_limited_slots_and_give_each_host_slot_its_own() -> None:
    rates = SlotRates(
        {
            "tmdb": {"rate": 39.0},
            "covers": {"rate": 10.0},
            "tmdb_images": {"delay": 0.0},
            "twitch": {"concurrency": 1},
        }
    )
    assert rates.get("tmdb").limit == pytest.approx(39.0)
    assert rates.get("tmdb_images") is None
    assert rates.get("twitch") is None
    assert rates.get("unknown") is None
    one, other = host_slot("covers", "a.example"), host_slot("covers", "b.example:8080")
    assert configured_slot(one) == configured_slot(other) == "covers"
    assert configured_slot("covers") == "covers"
    rates.get(one).refused(sent_at=0.0, now=0.0)
    assert rates.get(one).rate < 10.0
    assert rates.get(other).rate == pytest.approx(10.0)  # another host keeps its own rate
    assert rates.get("covers").rate == pytest.approx(10.0)


# -- a crawl against a server that enforces less than the configured limit ---------------
FAKE_LIMIT = 20  # requests/s the fake allows; the tmdb slot is configured at 39/s
SETTLE = 5.0  # seconds the rate may take to come down from 39/s
WINDOW = 15.0  # seconds measured after that


@pytest.fixture
def tmdb_at_20(fake_server: FakeServer) -> Iterator[TmdbFake]:
    exports = FakeServer().start()
    fake = TmdbFake(fake_server, exports, rate_limit=FAKE_LIMIT)
    body = load("movie_550_2024.json")
    for tmdb_id in range(1, int(FAKE_LIMIT * (SETTLE + WINDOW)) + 1):
        fake.add_clone("movie", body, tmdb_id)
    yield fake
    exports.stop()


@pytest.mark.long
@pytest.mark.timing
@deferred_f_from_coro_f
async def test_the_slot_learns_a_lower_limit_and_stops_drawing_429s(
    tmdb_at_20: TmdbFake, tmp_path: Path
) -> None:
    project = get_project_settings()
    assert project.getdict("DOWNLOAD_SLOTS")["tmdb"]["rate"] > FAKE_LIMIT * 1.5
    settings = {
        **tmdb_at_20.settings(),
        "MONGO_URI": "",
        "SQLITE_PATH": str(tmp_path / "store.sqlite3"),
        "STORE_FAILED_DIR": str(tmp_path / "failed"),
        "DOWNLOADER_MIDDLEWARES": with_tmdb_auth(),
        "SPIDERMON_ENABLED": False,
        "LOG_LEVEL": "INFO",
    }
    ids = ",".join(str(tmdb_id) for tmdb_id in sorted(tmdb_at_20.records["movie"]))

    crawler = await crawl(TmdbMoviesSpider, settings, ids=ids)

    stats = crawler.stats.get_stats()
    assert stats["store/movies/inserted"] == len(tmdb_at_20.records["movie"])
    arrivals = sorted(r.arrived for r in tmdb_at_20.api.hits(r"/3/movie/\d+"))
    start, end = arrivals[0] + SETTLE, arrivals[-1]
    assert end - start >= WINDOW * 0.8, "the crawl ended too soon to measure"
    sent = [t for t in arrivals if start <= t <= end]
    refused = [t for t in tmdb_at_20.rate_limited_at if start <= t <= end]
    assert tmdb_at_20.rate_limited_at, "the configured rate never met the fake's limit"
    assert len(refused) / len(sent) < 0.01, (len(refused), len(sent))
    answered = (len(sent) - len(refused)) / (end - start)
    assert 0.8 * FAKE_LIMIT <= answered <= 1.02 * FAKE_LIMIT, answered
