"""Whole igdb_games crawls against the local IGDB + Twitch fake, into SQLite and MongoDB."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f

from contentcrawl.sources.base import SpiderArgumentError
from contentcrawl.sources.igdb import GAME_FIELDS
from contentcrawl.spiders.igdb_games import IgdbGamesSpider
from spiders_tests.conftest import open_store_for, read_store
from spiders_tests.crawling import crawl
from spiders_tests.fakes.igdb import FakeIgdb, sample_games, unlimited_fake
from spiders_tests.fakes.server import FakeServer
from spiders_tests.settings_for import IGDB_FAST_SLOTS, igdb_settings, sqlite_settings

SYNC_STATE = "igdb_games/sync"


def stored(store_settings: dict[str, Any], *, state: str = SYNC_STATE) -> tuple[dict, Any]:
    """Every stored game by id, and the sync state."""
    store = open_store_for(store_settings)
    try:
        return {doc["igdb_id"]: doc for doc in store.iter_documents("games")}, store.get_state(
            state
        )
    finally:
        store.close()


def page_queries(server: FakeServer) -> list[str]:
    return [hit.body.decode() for hit in server.hits(r"/v4/games")]


@deferred_f_from_coro_f
async def test_a_page_out_of_retries_is_replayed_by_mode_failed(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    fake = unlimited_fake(fake_server, 60)
    settings = igdb_settings(
        fake,
        sqlite_settings(tmp_path),
        IGDB_PARALLEL_RANGES=1,
        RETRY_TIMES=1,
        RETRY_BACKOFF_BASE=0.01,
        RETRY_BACKOFF_MAX=0.05,
    )
    # The first page and its retry: the range stops there.
    fake_server.fail(r"/v4/games", 500, 500)

    first = await crawl(IgdbGamesSpider, settings, mode="full")
    assert first.stats.get_value("failures/recorded") == 1
    assert stored(sqlite_settings(tmp_path))[0] == {}

    replay = await crawl(IgdbGamesSpider, settings, mode="failed")
    stats = replay.stats.get_stats()
    assert stats["failures/replay/requested"] == 1
    assert stats["failures/cleared"] == 1
    # The replayed page goes on through its range as the first one would have.
    assert len(stored(sqlite_settings(tmp_path))[0]) == 60
    assert read_store(sqlite_settings(tmp_path), lambda store: store.pending_failures()) == []


@deferred_f_from_coro_f
async def test_full_crawl_stores_every_game_once(
    fake_server: FakeServer, store_settings: dict[str, Any]
) -> None:
    fake = unlimited_fake(fake_server, 700)
    started = int(time.time())

    crawler = await crawl(IgdbGamesSpider, igdb_settings(fake, store_settings), mode="full")

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert stats["igdb/games/expected"] == 700
    assert stats["item_scraped_count"] == 700
    assert stats["store/games/inserted"] == 700
    # Each game served once (ranges neither overlap nor repeat), plus the probe's highest id.
    assert fake.records_served == 701
    queries = page_queries(fake_server)
    assert stats["igdb/pages/fetched"] == len(queries)
    assert all(
        re.search(r"where id > \d+ & id <= \d+; sort id asc; limit 25;$", q) for q in queries
    )
    (probe,) = fake_server.hits(r"/v4/multiquery")
    assert 'query games/count "count" { where id > 0; };' in probe.body.decode()
    games, state = stored(store_settings)
    assert sorted(games) == sorted(fake.games)
    assert state["mode"] == "full"
    assert started <= state["synced_at"] <= time.time()


@deferred_f_from_coro_f
async def test_stored_game_has_expanded_fields(fake_server: FakeServer, tmp_path: Path) -> None:
    fake = unlimited_fake(fake_server, 9)
    store_settings = sqlite_settings(tmp_path)
    game_id = next(
        i for i, game in fake.games.items() if game["name"].startswith("Samurai Warriors 3")
    )

    await crawl(IgdbGamesSpider, igdb_settings(fake, store_settings))

    games, _ = stored(store_settings)
    game = games[game_id]
    assert game["name"] == f"Samurai Warriors 3 #{game_id}"
    assert game["first_release_date"] == "2009-12-03"
    assert game["updated_at"] == "2021-10-17T16:24:31Z"
    assert game["genres"] == ["Hack and slash/Beat 'em up"]
    assert game["themes"] == ["Action", "Fantasy", "Historical"]
    assert game["game_modes"] == ["Single player", "Multiplayer", "Co-operative", "Split screen"]
    assert game["developers"] == ["Nintendo EAD", "Omega Force"]
    assert game["publishers"] == ["Koei Tecmo", "Nintendo"]
    assert game["franchises"] == ["Franchise 907", "Franchise 2089"]
    assert game["cover_url"] == (
        "https://images.igdb.com/igdb/image/upload/t_cover_big/msqh7tk34svfzz2p9qbk.jpg"
    )
    assert game["image_urls"] == [game["cover_url"]]
    assert game["external_ids"][0]["source"] == "Steam"
    assert game["_meta"]["source"] == "igdb"


@deferred_f_from_coro_f
async def test_rerun_writes_nothing(
    fake_server: FakeServer, store_settings: dict[str, Any]
) -> None:
    fake = unlimited_fake(fake_server, 300)
    settings = igdb_settings(fake, store_settings)

    await crawl(IgdbGamesSpider, settings, mode="full")
    again = await crawl(IgdbGamesSpider, settings, mode="full")
    incremental = await crawl(IgdbGamesSpider, settings)

    stats = again.stats.get_stats()
    assert stats["store/games/unchanged"] == 300
    assert "store/games/inserted" not in stats
    assert "store/games/updated" not in stats
    stats = incremental.stats.get_stats()
    assert stats["igdb/games/expected"] == 0
    assert "item_scraped_count" not in stats
    assert not [key for key in stats if key.startswith("store/games/")]


@deferred_f_from_coro_f
async def test_incremental_reads_only_what_changed_since_the_last_clean_run(
    fake_server: FakeServer, store_settings: dict[str, Any]
) -> None:
    fake = unlimited_fake(fake_server, 400)
    settings = igdb_settings(fake, store_settings)
    await crawl(IgdbGamesSpider, settings)
    _, first_state = stored(store_settings)
    before, _ = stored(store_settings)
    edited = sorted(fake.games)[::40]  # 10 games
    fake.touch(edited, summary="Edited after the first run.")
    new_id = max(fake.games) + 5
    fake.set_games(
        {**fake.games, new_id: {**fake.games[edited[0]], "id": new_id, "name": "Brand new game"}}
    )
    fake_server.requests.clear()

    crawler = await crawl(IgdbGamesSpider, settings)

    stats = crawler.stats.get_stats()
    assert stats["igdb/games/expected"] == 11
    assert stats["item_scraped_count"] == 11
    assert stats["store/games/updated"] == 10
    assert stats["store/games/inserted"] == 1
    since = first_state["synced_at"] - 900
    assert all(f"& updated_at > {since};" in query for query in page_queries(fake_server))
    games, state = stored(store_settings)
    assert len(games) == 401
    assert {
        i for i in games if games[i]["summary"] == "Edited after the first run." and i != new_id
    } == set(edited)
    assert games[new_id]["name"] == "Brand new game"
    untouched = next(i for i in before if i not in edited)
    assert games[untouched] == before[untouched]
    assert state["mode"] == "incremental"
    assert state["synced_at"] >= first_state["synced_at"]


@deferred_f_from_coro_f
async def test_429_backs_off_and_retries_without_losing_a_page(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    # IGDB's real limits against a slot twice as fast as they allow.
    fake = FakeIgdb(fake_server, sample_games(200), requests_per_second=4, max_open=8)
    slots = {**IGDB_FAST_SLOTS, "igdb": {"concurrency": 8, "delay": 0.0, "rate": 8.0, "jitter": 0}}
    store_settings = sqlite_settings(tmp_path)

    crawler = await crawl(
        IgdbGamesSpider,
        igdb_settings(fake, store_settings, DOWNLOAD_SLOTS=slots, RETRY_BACKOFF_BASE=0.3),
    )

    stats = crawler.stats.get_stats()
    assert fake.statuses[429] > 0
    assert stats["retry/igdb/429"] == fake.statuses[429]
    assert "retry/igdb/gave_up" not in stats
    assert "igdb/pages/failed" not in stats
    assert stats["store/games/inserted"] == 200
    games, state = stored(store_settings)
    assert len(games) == 200
    assert state is not None


@pytest.mark.timing
@deferred_f_from_coro_f
async def test_project_igdb_slot_stays_within_igdb_limits(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    # Slow answers keep several requests open at once, as a loaded IGDB would. The window
    # is 50 ms short of a second: arrival times on a busy test machine jitter by that much,
    # while a slot paced above 4.2 requests/s would still break it.
    fake = FakeIgdb(fake_server, sample_games(500), latency=0.3, window=0.95)

    crawler = await crawl(
        IgdbGamesSpider,
        fake.settings(**sqlite_settings(tmp_path), IGDB_PAGE_SIZE=50, IGDB_PARALLEL_RANGES=8),
    )

    assert fake.statuses[429] == 0
    assert fake_server.max_requests_in_window(0.95, r"/v4/.*") <= 4
    assert fake.max_open_seen <= 8
    assert fake.max_open_seen >= 2  # the slot does keep requests in parallel
    assert crawler.stats.get_value("store/games/inserted") == 500


@deferred_f_from_coro_f
async def test_limit_stops_early_and_keeps_the_sync_point(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    fake = unlimited_fake(fake_server, 300)
    store_settings = sqlite_settings(tmp_path)

    crawler = await crawl(IgdbGamesSpider, igdb_settings(fake, store_settings), limit="30")

    assert crawler.stats.get_value("item_scraped_count") == 30
    assert crawler.stats.get_value("igdb/pages/fetched") < 12  # 300 games need 12+ pages
    games, state = stored(store_settings)
    assert len(games) == 30
    assert state is None


class BadQueryGamesSpider(IgdbGamesSpider):
    """Asks IGDB for a field list it cannot parse."""

    name = "igdb_games_bad_query_test"
    fields = ("name", "summary; oops")


@deferred_f_from_coro_f
async def test_rejected_query_is_logged_counted_and_keeps_the_sync_point(
    fake_server: FakeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = unlimited_fake(fake_server, 60)
    store_settings = sqlite_settings(tmp_path)

    crawler = await crawl(BadQueryGamesSpider, igdb_settings(fake, store_settings))

    ranges = len(page_queries(fake_server))
    assert ranges >= 2
    assert fake.statuses[400] == ranges
    assert crawler.stats.get_value("igdb/pages/failed") == ranges
    assert "HTTP 400: Syntax Error: Unexpected input at ' oops;'" in caplog.text
    _, state = stored(store_settings, state="igdb_games_bad_query_test/sync")
    assert state is None


class BareGenresGamesSpider(IgdbGamesSpider):
    """Asks for ``genres`` without ``.name``: IGDB answers with bare ids."""

    name = "igdb_games_bare_genres_test"
    fields = (*(f for f in GAME_FIELDS if not f.startswith("genres")), "genres")


@deferred_f_from_coro_f
async def test_bare_ids_where_names_were_asked_are_counted(
    fake_server: FakeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = unlimited_fake(fake_server, 18)
    with_genres = sum(1 for game in fake.games.values() if game.get("genres"))

    with caplog.at_level(logging.WARNING):
        crawler = await crawl(BareGenresGamesSpider, igdb_settings(fake, sqlite_settings(tmp_path)))

    assert crawler.stats.get_value("igdb/games/unexpanded") == with_genres
    assert "genres came back as bare ids, their names are lost" in caplog.text
    assert crawler.stats.get_value("item_scraped_count") == 18


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(SpiderArgumentError, match="one of full, incremental, failed"):
        IgdbGamesSpider(mode="everything")


class UnknownEndpointSpider(IgdbGamesSpider):
    """Probes an endpoint IGDB does not have."""

    name = "igdb_unknown_endpoint_test"
    endpoint = "gamez"


@deferred_f_from_coro_f
async def test_failed_probe_is_logged_and_keeps_the_sync_point(
    fake_server: FakeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = unlimited_fake(fake_server, 10)
    store_settings = sqlite_settings(tmp_path)

    crawler = await crawl(UnknownEndpointSpider, igdb_settings(fake, store_settings))

    assert fake.statuses[400] == 1
    assert crawler.stats.get_value("igdb/pages/failed") == 1
    assert crawler.stats.get_value("item_scraped_count") is None
    assert "HTTP 400: Syntax Error: Unknown endpoint gamez" in caplog.text
    _, state = stored(store_settings, state="igdb_unknown_endpoint_test/sync")
    assert state is None
