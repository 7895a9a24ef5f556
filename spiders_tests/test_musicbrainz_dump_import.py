"""Whole musicbrainz_artists dump imports against the local MusicBrainz dump host and local
files: latest dumps, unchanged and forced re-imports, bad lines, limits, truncated archives
(API crawls: test_musicbrainz_crawl.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f

from contentcrawl.sources.base import SpiderArgumentError
from contentcrawl.spiders.musicbrainz_artists import MusicBrainzArtistsSpider
from spiders_tests.conftest import open_store_for
from spiders_tests.crawling import crawl, store_counts
from spiders_tests.fakes.musicbrainz import LATEST, FakeMusicBrainz
from spiders_tests.fakes.musicbrainz_samples import (
    DATA,
    DUMP_TIMESTAMP,
    ED_SHEERAN,
    LOOKUP_FILES,
    PERKELE,
    TOMBS,
    build_archive,
    dump_docs,
    dump_lines,
    sample_artists,
    write_archive,
)
from spiders_tests.fakes.server import FakeServer
from spiders_tests.musicbrainz_crawls import USER_AGENT, fast_fake
from spiders_tests.settings_for import dump_settings, musicbrainz_settings, sqlite_settings

ARTISTS = sample_artists()


# --- dumps --------------------------------------------------------------------------------


def dump_fake(server: FakeServer, tmp_path: Path) -> FakeMusicBrainz:
    files = {
        f"{entity}.tar.xz": build_archive(entity, dump_docs(entity), tmp_path / "built")
        for entity in ("artist", "release-group")
    }
    return fast_fake(server, dumps=files)


@deferred_f_from_coro_f
async def test_latest_dumps_import_then_unchanged_ones_are_not_read_unless_forced(
    fake_server: FakeServer, store_settings: dict[str, Any], tmp_path: Path
) -> None:
    fake = dump_fake(fake_server, tmp_path)
    settings = fake.settings(**dump_settings(store_settings, tmp_path))
    artists, groups = len(dump_docs("artist")), len(dump_docs("release-group"))

    crawler = await crawl(MusicBrainzArtistsSpider, settings, mode="dump")

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert stats["dumps/download/downloaded"] == 2
    assert store_counts(stats, "artists")["inserted"] == artists
    assert store_counts(stats, "albums")["inserted"] == groups
    assert stats["musicbrainz/dump/records/artist"] == artists
    assert stats["musicbrainz/dump/records/release-group"] == groups
    assert "musicbrainz/dump/bad_lines" not in stats
    assert [hit.path for hit in fake_server.hits()] == [
        "/pub/musicbrainz/data/json-dumps/LATEST",
        f"/pub/musicbrainz/data/json-dumps/{LATEST}/artist.tar.xz",
        f"/pub/musicbrainz/data/json-dumps/{LATEST}/release-group.tar.xz",
    ]
    assert {hit.header("user-agent") for hit in fake_server.hits()} == {USER_AGENT}
    store = open_store_for(store_settings)
    try:
        state = store.get_state("musicbrainz_artists/dump/artist.tar.xz")
        tombs = store.get("artists", TOMBS)
        album = next(doc for doc in store.iter_documents("albums") if doc["title"] == "Savage Gold")
    finally:
        store.close()
    assert state is not None
    assert state["complete"] is True
    assert state["timestamp"] == DUMP_TIMESTAMP
    assert state["records"] == {"artist": artists}
    assert tombs is not None
    assert tombs["begin_area"]["name"] == "Brooklyn"
    assert album["artist_mbids"] == [TOMBS]

    again = await crawl(MusicBrainzArtistsSpider, settings, mode="dump")
    stats = again.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert stats["dumps/download/not_modified"] == 2
    # The same ETag/Last-Modified and size as the complete import: not read at all.
    assert stats["musicbrainz/import/unchanged_dump"] == 2
    assert "musicbrainz/dump/lines" not in stats
    assert "store/artists/received" not in stats

    # force: read again, every line skipped before the workers (its record holds its digest).
    forced = await crawl(MusicBrainzArtistsSpider, settings, mode="dump", force="1")
    stats = forced.stats.get_stats()
    assert "musicbrainz/import/unchanged_dump" not in stats
    assert stats["musicbrainz/dump/lines"] == artists + groups
    assert stats["musicbrainz/import/unchanged_revision"] == artists + groups
    assert "store/artists/received" not in stats
    assert "store/albums/received" not in stats


@deferred_f_from_coro_f
async def test_dump_and_api_give_the_same_records(fake_server: FakeServer, tmp_path: Path) -> None:
    fake = dump_fake(fake_server, tmp_path)
    settings = musicbrainz_settings(fake, dump_settings(sqlite_settings(tmp_path), tmp_path))
    await crawl(MusicBrainzArtistsSpider, settings, mode="dump")

    crawler = await crawl(
        MusicBrainzArtistsSpider, settings, mbids=f"{TOMBS},{ED_SHEERAN},{PERKELE}"
    )

    stats = crawler.stats.get_stats()
    assert store_counts(stats, "artists") == {
        "inserted": 0,
        "updated": 0,
        "unchanged": 3,
        "failed": 0,
    }
    assert store_counts(stats, "albums") == {
        "inserted": 0,
        "updated": 0,
        "unchanged": 12 + 15 + 1,
        "failed": 0,
    }


@deferred_f_from_coro_f
async def test_plain_json_lines_dump_needs_no_contact(tmp_path: Path) -> None:
    plain = tmp_path / "artist.jsonl"
    plain.write_bytes(b"".join(dump_lines(dump_docs("artist"))))
    settings = dump_settings(sqlite_settings(tmp_path), tmp_path, MUSICBRAINZ_CONTACT="")

    crawler = await crawl(MusicBrainzArtistsSpider, settings, mode="dump", dump=str(plain))

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert stats["store/artists/inserted"] == len(ARTISTS)
    assert not (tmp_path / "dumps").exists()


@deferred_f_from_coro_f
async def test_bad_lines_are_counted_and_skipped_and_limit_holds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines = list(dump_lines(dump_docs("release-group")[:5]))
    lines[1:1] = [b"{not json\n", b'{"title": "no id"}\n', b"\n"]
    archive = write_archive(tmp_path / "release-group.tar.xz", "release-group", lines)
    settings = dump_settings(sqlite_settings(tmp_path), tmp_path)

    with caplog.at_level(logging.WARNING):
        crawler = await crawl(MusicBrainzArtistsSpider, settings, mode="dump", dump=str(archive))
    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert stats["store/albums/inserted"] == 5
    assert stats["musicbrainz/dump/bad_lines"] == 2
    assert stats["musicbrainz/dump/bad_lines/json"] == 1
    assert stats["musicbrainz/dump/bad_lines/fields"] == 1
    assert "release-group.tar.xz release-group line 2 skipped (json)" in caplog.text

    limited = await crawl(
        MusicBrainzArtistsSpider, settings, mode="dump", dump=str(archive), limit="3", rework="1"
    )
    assert limited.stats.get_value("store/albums/unchanged") == 3


@deferred_f_from_coro_f
async def test_dump_argument_alone_imports_and_limit_spans_the_files(tmp_path: Path) -> None:
    artists = tmp_path / "artist.jsonl"
    artists.write_bytes(b"".join(dump_lines(dump_docs("artist"))))
    albums = tmp_path / "release-group.jsonl"
    albums.write_bytes(b"".join(dump_lines(dump_docs("release-group"))))
    settings = dump_settings(sqlite_settings(tmp_path), tmp_path)
    limit = len(ARTISTS) + 2

    crawler = await crawl(
        MusicBrainzArtistsSpider, settings, dump=f"{artists},{albums}", limit=str(limit)
    )

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert stats["store/artists/inserted"] == len(ARTISTS)
    assert stats["store/albums/inserted"] == 2
    with pytest.raises(SpiderArgumentError, match="mode=dump"):
        await crawl(MusicBrainzArtistsSpider, settings, mode="api", dump=str(artists))


@deferred_f_from_coro_f
async def test_truncated_archive_keeps_what_it_read_and_is_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    docs = list(dump_docs("artist")) * 40  # enough lines to cut through the data member
    whole = write_archive(tmp_path / "whole" / "artist.tar.xz", "artist", dump_lines(docs))
    cut = tmp_path / "artist.tar.xz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    settings = dump_settings(sqlite_settings(tmp_path), tmp_path)

    with caplog.at_level(logging.ERROR):
        crawler = await crawl(MusicBrainzArtistsSpider, settings, mode="dump", dump=str(cut))

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert stats["musicbrainz/dump/bad_lines/truncated"] == 1
    assert 0 < stats["musicbrainz/dump/lines"] < len(docs)
    assert stats["store/artists/inserted"] > 0
    assert "artist.tar.xz is truncated" in caplog.text
    assert stats["sync_state/not_saved"] == 1


@deferred_f_from_coro_f
async def test_missing_latest_or_archive_closes_with_a_reason(
    fake_server: FakeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    artists = build_archive("artist", dump_docs("artist")[:2], tmp_path / "built")
    fake = fast_fake(fake_server, dumps={"artist.tar.xz": artists})
    settings = fake.settings(**dump_settings(sqlite_settings(tmp_path), tmp_path))

    with caplog.at_level(logging.ERROR):
        nowhere = await crawl(
            MusicBrainzArtistsSpider,
            {**settings, "MUSICBRAINZ_DUMPS_URL": f"{fake_server.url}/nowhere"},
            mode="dump",
        )
        missing = await crawl(MusicBrainzArtistsSpider, settings, mode="dump")

    assert nowhere.stats.get_value("finish_reason") == "dump_latest_unavailable"
    assert "/nowhere/LATEST answered HTTP 404" in caplog.text
    # The artists were imported; the release groups' archive is not there.
    assert missing.stats.get_value("finish_reason") == "dump_download_failed"
    assert missing.stats.get_value("store/artists/inserted") == 2
    assert "release-group.tar.xz: HTTP 404" in caplog.text


@deferred_f_from_coro_f
async def test_unknown_plain_dump_name_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plain = tmp_path / "sample.jsonl"
    plain.write_bytes(b"".join(dump_lines(dump_docs("artist")[:2])))
    with caplog.at_level(logging.ERROR):
        crawler = await crawl(
            MusicBrainzArtistsSpider,
            dump_settings(sqlite_settings(tmp_path), tmp_path),
            mode="dump",
            dump=str(plain),
        )
    assert crawler.stats.get_value("finish_reason") == "dump_unknown_entity"
    assert "cannot tell which entity" in caplog.text


def test_dump_lines_are_the_recorded_entity_json() -> None:
    """The sample dump is made of recorded bodies, not invented records."""
    tombs = next(doc for doc in dump_docs("artist") if doc["id"] == TOMBS)
    recorded = json.loads((DATA / LOOKUP_FILES[TOMBS]).read_text(encoding="utf-8"))
    recorded.pop("release-groups")
    assert tombs == recorded
