"""MusicBrainz dump re-imports skip, before the workers, the lines whose record the store
holds at the line's revision (a digest of its bytes): forced re-imports, changed and moved
lines, an import cut short, records first fetched by the API."""

from __future__ import annotations

import json
import logging
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f

from contentcrawl.sources.musicbrainz.lines import line_keys, line_revision, line_revisions
from contentcrawl.spiders.musicbrainz_artists import MusicBrainzArtistsSpider
from spiders_tests.conftest import read_store
from spiders_tests.crawling import crawl, store_counts
from spiders_tests.fakes.musicbrainz_samples import TOMBS, dump_docs, dump_lines, generated_docs
from spiders_tests.fakes.server import FakeServer
from spiders_tests.musicbrainz_crawls import fast_fake
from spiders_tests.settings_for import dump_settings, musicbrainz_settings, sqlite_settings

# The recorded artists and generated ones: 74 lines, in chunks of 10 with 2 workers.
DOCS = dump_docs("artist") + list(generated_docs("artist", 40))


def write_dump(path: Path, docs: list[dict[str, Any]]) -> list[bytes]:
    """``docs`` as a JSON-lines artist dump at ``path``; its lines without newlines."""
    lines = list(dump_lines(docs))
    path.write_bytes(b"".join(lines))
    return [line.rstrip(b"\n") for line in lines]


def stored_artists(store_settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """MBID → stored document, ``_meta`` included."""
    return read_store(
        store_settings,
        lambda store: {document["mbid"]: document for document in store.iter_documents("artists")},
    )


def import_settings(store_settings: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    return dump_settings(store_settings, tmp_path, DUMP_WORKERS=2, DUMP_CHUNK_LINES=10)


def test_line_keys_reads_each_lines_own_id_and_none_where_it_cannot() -> None:
    # A release group whose artist credit (with the artist's id) comes before its own id.
    group = next(doc for doc in dump_docs("release-group") if next(iter(doc)) == "artist-credit")
    lines = [
        (1, next(dump_lines([group])).rstrip(b"\n")),
        (2, b"{not json"),
        (3, b'["an array"]'),
        (4, b'{"name": "no id"}'),
        (5, b""),
        (6, b'{"id": "00000000-0000-4000-8000-000000000006"}'),
    ]
    assert line_keys(lines) == [
        group["id"],
        None,
        None,
        None,
        None,
        "00000000-0000-4000-8000-000000000006",
    ]
    assert line_revisions(lines) == [line_revision(line) for _, line in lines]
    # Any byte changed, another revision; always 63 bits.
    assert line_revision(b'{"id": "x"}') != line_revision(b'{"id":"x"}')
    assert 0 <= line_revision(lines[0][1]) < 2**63
    # Stores hold these digests: another function would have every line worked again.
    assert line_revision(b'{"id":"x"}') == 1245271181322261888


@deferred_f_from_coro_f
async def test_a_first_import_leaves_the_index_of_revisions_its_reimports_read(
    tmp_path: Path,
) -> None:
    """Dropped while a first import writes (one build at its end costs less than its
    upkeep), the index is there once the import is over."""
    settings = import_settings(sqlite_settings(tmp_path), tmp_path)
    plain = tmp_path / "artist.jsonl"
    write_dump(plain, DOCS)
    await crawl(MusicBrainzArtistsSpider, settings, dump=str(plain))

    with closing(sqlite3.connect(settings["SQLITE_PATH"])) as connection:
        indexes = {name for (name,) in connection.execute("SELECT name FROM sqlite_master")}
    assert "artists_revision" in indexes


@deferred_f_from_coro_f
async def test_a_forced_reimport_skips_every_unchanged_line_and_keeps_every_record(
    store_settings: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plain = tmp_path / "artist.jsonl"
    lines = write_dump(plain, DOCS)
    settings = import_settings(store_settings, tmp_path)
    first = await crawl(MusicBrainzArtistsSpider, settings, dump=str(plain))
    stats = first.stats.get_stats()
    assert stats["store/artists/inserted"] == len(DOCS)
    assert "musicbrainz/import/unchanged_revision" not in stats
    before = stored_artists(store_settings)
    # Each record's revision is the digest of its line.
    assert {mbid: document["_meta"]["revision"] for mbid, document in before.items()} == {
        doc["id"]: line_revision(line) for doc, line in zip(DOCS, lines, strict=True)
    }

    caplog.set_level(logging.INFO)
    forced = await crawl(MusicBrainzArtistsSpider, settings, dump=str(plain), force="1")

    stats = forced.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert stats["musicbrainz/dump/lines"] == len(DOCS)
    assert stats["musicbrainz/import/unchanged_revision"] == len(DOCS)
    assert "musicbrainz/dump/records/artist" not in stats
    assert "store/artists/received" not in stats
    assert stored_artists(store_settings) == before
    assert (
        f"artist.jsonl: 0 records () from {len(DOCS)} lines, 0 bad lines, "
        f"{len(DOCS)} lines at the revision already stored skipped" in caplog.text
    )
    assert "no mbdump/artist" not in caplog.text


@deferred_f_from_coro_f
async def test_a_changed_line_is_worked_wherever_its_key_moved(
    store_settings: dict[str, Any], tmp_path: Path
) -> None:
    plain = tmp_path / "artist.jsonl"
    write_dump(plain, DOCS)
    settings = import_settings(store_settings, tmp_path)
    await crawl(MusicBrainzArtistsSpider, settings, dump=str(plain))
    before = stored_artists(store_settings)

    # The same artists in reverse order: one renamed in the middle of the second chunk, one
    # written with its keys in another order (the same content, other bytes).
    docs = DOCS[::-1]
    renamed, reordered = docs[15]["id"], docs[40]["id"]
    docs[15] = {**docs[15], "name": "Renamed"}
    docs[40] = dict(reversed(docs[40].items()))
    lines = write_dump(plain, docs)
    again = await crawl(MusicBrainzArtistsSpider, settings, dump=str(plain), force="1")

    stats = again.stats.get_stats()
    assert stats["musicbrainz/import/unchanged_revision"] == len(DOCS) - 2
    assert stats["musicbrainz/dump/records/artist"] == 2
    assert store_counts(stats, "artists") == {
        "inserted": 0,
        "updated": 2,
        "unchanged": 0,
        "failed": 0,
    }
    after = stored_artists(store_settings)
    assert after[renamed]["name"] == "Renamed"
    assert after[renamed]["_meta"]["revision"] == line_revision(lines[15])
    # Its content unchanged, the reordered line's record has only its revision rewritten.
    assert after[reordered]["_meta"]["revision"] == line_revision(lines[40])
    assert after[reordered]["_meta"]["hash"] == before[reordered]["_meta"]["hash"]
    assert after[reordered]["_meta"]["updated_at"] == before[reordered]["_meta"]["updated_at"]
    unchanged = set(after) - {renamed, reordered}
    assert {mbid: after[mbid] for mbid in unchanged} == {mbid: before[mbid] for mbid in unchanged}


@deferred_f_from_coro_f
async def test_an_import_cut_short_resumes_past_the_lines_it_stored(
    store_settings: dict[str, Any], tmp_path: Path
) -> None:
    plain = tmp_path / "artist.jsonl"
    write_dump(plain, DOCS)
    settings = import_settings(store_settings, tmp_path)
    cut = await crawl(MusicBrainzArtistsSpider, settings, dump=str(plain), limit="25")
    assert cut.stats.get_value("store/artists/inserted") == 25

    # Not read to its end: read again (no force), the 25 stored lines skipped.
    resumed = await crawl(MusicBrainzArtistsSpider, settings, dump=str(plain))

    stats = resumed.stats.get_stats()
    assert "musicbrainz/import/unchanged_dump" not in stats
    assert stats["musicbrainz/import/unchanged_revision"] == 25
    assert stats["store/artists/inserted"] == len(DOCS) - 25
    assert "store/artists/unchanged" not in stats


@deferred_f_from_coro_f
async def test_a_record_first_fetched_by_the_api_is_worked_again_from_the_dump(
    fake_server: FakeServer, store_settings: dict[str, Any], tmp_path: Path
) -> None:
    fake = fast_fake(fake_server)
    settings = musicbrainz_settings(fake, import_settings(store_settings, tmp_path))
    await crawl(MusicBrainzArtistsSpider, settings, mbids=TOMBS)
    fetched = stored_artists(store_settings)[TOMBS]
    assert fetched["_meta"]["revision"] is None

    plain = tmp_path / "artist.jsonl"
    lines = write_dump(plain, dump_docs("artist"))
    imported = await crawl(MusicBrainzArtistsSpider, settings, dump=str(plain))

    # The store held artists: every line was looked up, Tombs's record had no revision.
    stats = imported.stats.get_stats()
    assert "musicbrainz/import/unchanged_revision" not in stats
    assert stats["musicbrainz/dump/records/artist"] == len(lines)
    assert store_counts(stats, "artists") == {
        "inserted": len(lines) - 1,
        "updated": 1,
        "unchanged": 0,
        "failed": 0,
    }
    tombs_line = next(line for line in lines if json.loads(line)["id"] == TOMBS)
    tombs = stored_artists(store_settings)[TOMBS]
    assert tombs["_meta"]["revision"] == line_revision(tombs_line)
    # The same content as the API's: only the revision was written.
    assert tombs["_meta"]["hash"] == fetched["_meta"]["hash"]
    assert tombs["_meta"]["updated_at"] == fetched["_meta"]["updated_at"]

    # The API again: the same content, nothing written, the dump line's revision kept, so
    # a forced re-import skips every line.
    fetched_again = await crawl(MusicBrainzArtistsSpider, settings, mbids=TOMBS)
    assert store_counts(fetched_again.stats.get_stats(), "artists")["unchanged"] == 1
    assert stored_artists(store_settings)[TOMBS] == tombs
    forced = await crawl(MusicBrainzArtistsSpider, settings, dump=str(plain), force="1")
    assert forced.stats.get_value("musicbrainz/import/unchanged_revision") == len(lines)
