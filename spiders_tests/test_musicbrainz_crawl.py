"""Whole musicbrainz_artists API crawls against the local MusicBrainz fake: search, lookup,
browse, replays and politeness (dump imports: test_musicbrainz_dump_import.py)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f
from scrapy.utils.project import get_project_settings

from contentcrawl.spiders.musicbrainz_artists import MusicBrainzArtistsSpider
from spiders_tests.conftest import open_store_for, read_store
from spiders_tests.crawling import crawl, make_crawler, store_counts
from spiders_tests.fakes.musicbrainz import FakeMusicBrainz, gaps
from spiders_tests.fakes.musicbrainz_samples import (
    ERIC_ADAMS,
    MANOWAR,
    PERKELE,
    TOMBS,
    recorded_searches,
)
from spiders_tests.fakes.server import FakeResponse, FakeServer
from spiders_tests.musicbrainz_crawls import USER_AGENT, fast_fake
from spiders_tests.settings_for import musicbrainz_settings, sqlite_settings


def stored(store_settings: dict[str, Any], collection: str) -> dict[str, dict[str, Any]]:
    store = open_store_for(store_settings)
    try:
        return {doc["mbid"]: doc for doc in store.iter_documents(collection)}
    finally:
        store.close()


def lookups(fake: FakeMusicBrainz, mbid: str) -> int:
    return len(fake.answered(rf"/ws/2/artist/{mbid}"))


# --- API: search, lookup, browse --------------------------------------------------------------


@deferred_f_from_coro_f
async def test_search_lookup_and_browse_store_artist_and_all_albums(
    fake_server: FakeServer, store_settings: dict[str, Any]
) -> None:
    fake = fast_fake(fake_server)
    settings = musicbrainz_settings(fake, store_settings, MUSICBRAINZ_PAGE_SIZE=5)

    crawler = await crawl(MusicBrainzArtistsSpider, settings, query="Tombs")

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert store_counts(stats, "artists") == {
        "inserted": 1,
        "updated": 0,
        "unchanged": 0,
        "failed": 0,
    }
    assert store_counts(stats, "albums")["inserted"] == 12
    assert stats["musicbrainz/browse/pages"] == 3  # 12 release groups, 5 a page
    assert "musicbrainz/requests/failed" not in stats

    (search,) = fake.answered(r"/ws/2/artist/?")
    assert search.param("query") == "Tombs"
    assert search.param("limit") == "5"  # never ws/2's default of 25
    (lookup,) = fake.answered(rf"/ws/2/artist/{TOMBS}")
    assert lookup.param("inc") == "aliases tags genres ratings url-rels"  # "+" decoded
    browses = fake.answered(r"/ws/2/release-group/?")
    assert [(hit.param("artist"), hit.param("offset"), hit.param("limit")) for hit in browses] == [
        (TOMBS, "0", "5"),
        (TOMBS, "5", "5"),
        (TOMBS, "10", "5"),
    ]
    assert {hit.header("user-agent") for hit in fake.api_hits()} == {USER_AGENT}

    artist = stored(store_settings, "artists")[TOMBS]
    assert artist["name"] == "Tombs"
    assert artist["begin_date"] == "2007"
    assert artist["ended"] is False
    assert artist["begin_area"]["name"] == "Brooklyn"
    albums = stored(store_settings, "albums")
    assert len(albums) == 12
    assert all(album["artist_mbids"] == [TOMBS] for album in albums.values())
    dates = {album["title"]: album["first_release_date"] for album in albums.values()}
    assert dates["Tombs"] == "2007"
    assert dates["Ashes"] == "2012-09"
    assert dates["Winterhours"] == "2009-04-17"

    # The fake sends every object with a new key order: nothing may look changed.
    fake.next_run()
    again = await crawl(MusicBrainzArtistsSpider, settings, query="Tombs")
    stats = again.stats.get_stats()
    assert store_counts(stats, "artists") == {
        "inserted": 0,
        "updated": 0,
        "unchanged": 1,
        "failed": 0,
    }
    assert store_counts(stats, "albums") == {
        "inserted": 0,
        "updated": 0,
        "unchanged": 12,
        "failed": 0,
    }


@deferred_f_from_coro_f
async def test_search_pages_by_offset_until_its_count(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    fake = fast_fake(fake_server)
    settings = musicbrainz_settings(fake, sqlite_settings(tmp_path), MUSICBRAINZ_PAGE_SIZE=4)

    crawler = await crawl(MusicBrainzArtistsSpider, settings, query="Manowar")

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    searches = fake.answered(r"/ws/2/artist/?")
    assert [hit.param("offset") for hit in searches] == ["0", "4"]  # count 6: two pages
    recorded = {hit["id"] for hit in recorded_searches()["manowar"]}
    assert set(stored(sqlite_settings(tmp_path), "artists")) == recorded
    assert stats["musicbrainz/search/results"] == 6
    assert stats["musicbrainz/artists/looked_up"] == 6
    # One browse each: the search artists have no release groups in the fake.
    assert stats["musicbrainz/browse/pages"] == 6
    assert "store/albums/inserted" not in stats


@deferred_f_from_coro_f
async def test_artist_found_by_several_queries_and_mbids_is_fetched_once(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    fake = fast_fake(fake_server)
    settings = musicbrainz_settings(
        fake,
        sqlite_settings(tmp_path),
        MUSICBRAINZ_QUERIES=["Manowar", "Eric Adams", "Womanowar", "Manowar"],
    )

    crawler = await crawl(MusicBrainzArtistsSpider, settings)

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert lookups(fake, ERIC_ADAMS) == 1
    assert lookups(fake, MANOWAR) == 1
    assert len(fake.answered(r"/ws/2/artist/[0-9a-f-]{36}")) == 6
    # Eric Adams and Womanowar by their own searches too; the repeated search runs once.
    assert len(fake.answered(r"/ws/2/artist/?")) == 3
    assert stats["musicbrainz/artists/duplicate"] == 2
    assert stats["store/artists/inserted"] == 6

    fake.next_run()
    given = await crawl(
        MusicBrainzArtistsSpider,
        settings,
        query="Eric Adams",
        mbids=f"{ERIC_ADAMS},{ERIC_ADAMS.upper()}",
    )
    assert given.stats.get_value("musicbrainz/artists/duplicate") == 2
    assert lookups(fake, ERIC_ADAMS) == 2  # once in each run


@deferred_f_from_coro_f
async def test_unknown_and_malformed_mbids_are_counted_not_fatal(
    fake_server: FakeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = fast_fake(fake_server)
    unknown = "00000000-0000-4000-8000-000000000000"
    with caplog.at_level(logging.WARNING):
        crawler = await crawl(
            MusicBrainzArtistsSpider,
            musicbrainz_settings(fake, sqlite_settings(tmp_path)),
            mbids=f"{unknown}, not-an-mbid ,{PERKELE}",
        )

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert stats["musicbrainz/artists/not_found"] == 1
    assert stats["musicbrainz/mbids/invalid"] == 1
    assert f"Artist {unknown} not found (404)" in caplog.text
    assert "'not-an-mbid' from -a mbids: not an MBID" in caplog.text
    assert set(stored(sqlite_settings(tmp_path), "artists")) == {PERKELE}
    albums = stored(sqlite_settings(tmp_path), "albums")
    assert len(albums) == 15
    demo = next(album for album in albums.values() if album["secondary_types"] == ["Demo"])
    assert demo["primary_type"] is None


@deferred_f_from_coro_f
async def test_limit_caps_the_artists_looked_up(fake_server: FakeServer, tmp_path: Path) -> None:
    fake = fast_fake(fake_server)
    settings = musicbrainz_settings(fake, sqlite_settings(tmp_path), MUSICBRAINZ_PAGE_SIZE=10)

    crawler = await crawl(MusicBrainzArtistsSpider, settings, query="Solstice", limit="3")

    assert crawler.stats.get_value("store/artists/inserted") == 3
    assert len(fake.answered(r"/ws/2/artist/?")) == 1  # no second search page


@deferred_f_from_coro_f
async def test_a_lookup_out_of_retries_is_replayed_by_mode_failed(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    fake = fast_fake(fake_server)
    settings = musicbrainz_settings(
        fake,
        sqlite_settings(tmp_path),
        RETRY_TIMES=1,
        RETRY_BACKOFF_BASE=0.01,
        RETRY_BACKOFF_MAX=0.05,
    )
    fake_server.fail(rf"/ws/2/artist/{PERKELE}", 503, 503)

    first = await crawl(MusicBrainzArtistsSpider, settings, mbids=PERKELE)
    assert first.stats.get_value("failures/recorded") == 1
    assert stored(sqlite_settings(tmp_path), "artists") == {}

    replay = await crawl(MusicBrainzArtistsSpider, settings, mode="failed")
    stats = replay.stats.get_stats()
    assert stats["failures/replay/requested"] == 1
    assert stats["failures/cleared"] == 1
    assert list(stored(sqlite_settings(tmp_path), "artists")) == [PERKELE]
    # The replayed lookup goes on as the first one would have: the artist's albums too.
    assert stats["store/albums/inserted"] == len(fake.artists[PERKELE].release_groups)
    assert read_store(sqlite_settings(tmp_path), lambda store: store.pending_failures()) == []


@deferred_f_from_coro_f
async def test_a_replay_with_nothing_pending_needs_no_contact(tmp_path: Path) -> None:
    settings = {**sqlite_settings(tmp_path), "MUSICBRAINZ_CONTACT": ""}
    crawler = await crawl(MusicBrainzArtistsSpider, settings, mode="failed")
    assert crawler.stats.get_value("finish_reason") == "finished"
    assert crawler.stats.get_value("failures/replay/pending") == 0


def test_queries_setting_splits_on_semicolons_however_given() -> None:
    from_env_file = ['artist:"Tombs, The"', "tag:doom"]
    for value in ('artist:"Tombs, The"; tag:doom', from_env_file):
        crawler = make_crawler(MusicBrainzArtistsSpider, {"MUSICBRAINZ_QUERIES": value})
        spider = MusicBrainzArtistsSpider.from_crawler(crawler)
        assert spider.queries == from_env_file


# --- politeness: the rate limit, 503 + Retry-After, User-Agent ---------------------------


@pytest.mark.timing
@deferred_f_from_coro_f
async def test_project_rate_never_puts_two_requests_in_one_second(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    fake = FakeMusicBrainz(fake_server)  # MusicBrainz's own 1 s
    settings = fake.settings(**sqlite_settings(tmp_path), MUSICBRAINZ_PAGE_SIZE=5)  # project slots

    crawler = await crawl(MusicBrainzArtistsSpider, settings, query="Tombs")

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    hits = fake.api_hits()
    assert len(hits) == 5  # search, lookup, 3 album pages
    assert fake.rejected == []
    assert fake_server.max_requests_in_window(1.0) == 1
    assert min(gaps(hits)) >= 1.0
    # Paced by the slot, not slowed further: close to MusicBrainz's 1 request/s.
    assert max(gaps(hits)) < 1.3
    assert stats["store/albums/inserted"] == 12


def test_project_slot_keeps_a_margin_above_one_second() -> None:
    """The slot's gap is measured where requests leave the pacer; they reach the server a
    few milliseconds apart from that, so a gap of exactly 1 s lets two land 0.999 s apart."""
    settings = get_project_settings()
    slot = settings.getdict("DOWNLOAD_SLOTS")["musicbrainz"]
    rate = settings.getfloat("MUSICBRAINZ_REQUESTS_PER_SECOND")
    assert slot["concurrency"] == 1
    assert slot["jitter"] == 0
    assert not slot.get("pace")  # a minimum gap, not a rate kept on average
    assert 1.0 / rate < 1.0 / slot["rate"] <= 1.05 / rate


@deferred_f_from_coro_f
async def test_503_with_retry_after_pauses_the_slot_then_retries(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    fake = fast_fake(fake_server, retry_after="1")
    fake.reject_next = 2

    crawler = await crawl(
        MusicBrainzArtistsSpider,
        musicbrainz_settings(fake, sqlite_settings(tmp_path)),
        mbids=PERKELE,
    )

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert stats["retry/musicbrainz/503"] == 2
    assert "retry/musicbrainz/gave_up" not in stats
    hits = fake.api_hits()
    assert [hit.path for hit in hits[:3]] == [f"/ws/2/artist/{PERKELE}"] * 3
    # Each retry waits out the Retry-After instead of piling onto an over-limit server.
    assert gaps(hits[:3])[0] >= 0.95
    assert gaps(hits[:3])[1] >= 0.95
    assert len(fake.rejected) == 2
    assert set(stored(sqlite_settings(tmp_path), "artists")) == {PERKELE}


@pytest.mark.timing
@deferred_f_from_coro_f
async def test_too_fast_a_slot_is_refused_and_slowed_down(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    fake = FakeMusicBrainz(fake_server, min_interval=0.5, retry_after="1")

    crawler = await crawl(
        MusicBrainzArtistsSpider,
        musicbrainz_settings(fake, sqlite_settings(tmp_path), MUSICBRAINZ_PAGE_SIZE=5),
        mbids=TOMBS,
    )

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert stats["store/albums/inserted"] == 12
    assert stats["retry/musicbrainz/503"] >= 1
    # After each refusal the slot waits the Retry-After: refusals never come back to back.
    accepted = fake.answered()
    assert len(accepted) == 4
    assert len(fake.rejected) <= len(accepted)


@deferred_f_from_coro_f
async def test_missing_contact_refuses_to_start(
    fake_server: FakeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = fast_fake(fake_server)
    settings = musicbrainz_settings(fake, sqlite_settings(tmp_path), MUSICBRAINZ_CONTACT="  ")

    with caplog.at_level(logging.ERROR):
        crawler = await crawl(MusicBrainzArtistsSpider, settings, query="Tombs")

    assert crawler.stats.get_value("finish_reason") == "musicbrainz_contact_missing"
    assert crawler.stats.get_value("log_count/ERROR") == 1
    assert "MUSICBRAINZ_CONTACT is not set" in caplog.text
    assert fake_server.hits() == []


@deferred_f_from_coro_f
async def test_nothing_to_crawl_is_a_clear_error(
    fake_server: FakeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = fast_fake(fake_server)
    with caplog.at_level(logging.ERROR):
        crawler = await crawl(
            MusicBrainzArtistsSpider, musicbrainz_settings(fake, sqlite_settings(tmp_path))
        )
    assert crawler.stats.get_value("finish_reason") == "nothing_to_crawl"
    assert "MUSICBRAINZ_QUERIES" in caplog.text
    assert fake_server.hits() == []


@deferred_f_from_coro_f
async def test_request_out_of_retries_is_logged_and_counted(
    fake_server: FakeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = fast_fake(fake_server, retry_after="0")
    fake.reject_next = 2
    settings = musicbrainz_settings(fake, sqlite_settings(tmp_path), RETRY_TIMES=1)

    with caplog.at_level(logging.ERROR):
        crawler = await crawl(MusicBrainzArtistsSpider, settings, mbids=PERKELE)

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert stats["retry/musicbrainz/gave_up"] == 1
    assert stats["musicbrainz/requests/failed"] == 1
    assert (
        f"MusicBrainz request lost: GET {fake.server.url}/ws/2/artist/{PERKELE}?fmt=json"
        "&inc=aliases+tags+genres+ratings+url-rels: HTTP 503: Your requests are exceeding "
        "the allowable rate limit" in caplog.text
    )


@deferred_f_from_coro_f
async def test_unreadable_answer_is_logged_and_counted(
    fake_server: FakeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Registered before the fake's own routes, so it answers Perkele's lookup.
    fake_server.route("GET", rf"/ws/2/artist/{PERKELE}")(
        lambda request: FakeResponse(200, b"<html>Down for maintenance</html>", {})
    )
    fake = fast_fake(fake_server)

    with caplog.at_level(logging.ERROR):
        crawler = await crawl(
            MusicBrainzArtistsSpider,
            musicbrainz_settings(fake, sqlite_settings(tmp_path)),
            mbids=f"{PERKELE},{TOMBS}",
        )

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert stats["musicbrainz/requests/failed"] == 1
    assert "not an artist: '<html>Down for maintenance</html>'" in caplog.text
    assert set(stored(sqlite_settings(tmp_path), "artists")) == {TOMBS}
