"""MusicBrainz dump lines worked in processes: chunks of one entity, the same records with 0,
1 and 2 workers, order, a killed worker, stop latency, unchanged dump files."""

from __future__ import annotations

import io
import logging
import os
import signal
import tarfile
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f

from contentcrawl.batches import ItemBatch
from contentcrawl.dumps import DumpFile
from contentcrawl.items import ContentItem
from contentcrawl.sources.musicbrainz.dump import import_dumps
from contentcrawl.sources.musicbrainz.lines import EntityChunks, Mapper, line_revision
from contentcrawl.sources.musicbrainz.mappers import (
    DUMP_ITEM_CLASSES,
    DUMP_MAPPERS,
    artist_item,
)
from contentcrawl.spiders.musicbrainz_artists import MusicBrainzArtistsSpider
from contentcrawl.store import Store
from contentcrawl.store.base import content_hash
from spiders_tests.conftest import open_store_for
from spiders_tests.crawling import crawl, seconds_past_item_limit
from spiders_tests.fakes.musicbrainz_samples import (
    TOMBS,
    dump_docs,
    dump_lines,
    generated_docs,
    write_archive,
)
from spiders_tests.settings_for import dump_settings, sqlite_settings

ARTISTS = dump_docs("artist")
GROUPS = dump_docs("release-group")


def archive_of(path: Path, members: Mapping[str, list[bytes]]) -> Path:
    """A tar.xz dump with one ``mbdump/<entity>`` member per entry, in order."""
    with tarfile.open(path, "w:xz") as archive:
        for entity, lines in members.items():
            data = b"".join(lines)
            info = tarfile.TarInfo(f"mbdump/{entity}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def stored(store: Store, collection: str) -> dict[str, tuple[str, int, dict[str, Any]]]:
    """MBID → (hash, revision, document without its dates) of every stored record."""
    found = {}
    for document in store.iter_documents(collection):
        meta = document.pop("_meta")
        found[document["mbid"]] = (meta["hash"], meta["revision"], document)
    return found


# --- chunks -------------------------------------------------------------------------------


def test_a_chunk_holds_one_entity_and_counts_the_lines_of_entities_without_a_mapper(
    tmp_path: Path,
) -> None:
    (tmp_path / "empty").write_bytes(b"")
    read = [
        ("artist", 1, b"a1"),
        ("artist", 2, b"a2"),
        ("artist", 3, b"a3"),
        ("label", 1, b"l1"),
        ("release-group", 1, b"g1"),
        ("release-group", 2, b"g2"),
    ]
    with DumpFile(tmp_path / "empty") as dump:
        chunks = EntityChunks(dump, iter(read), DUMP_MAPPERS)
        seen = []
        while True:
            lines, note = chunks.read(2)
            seen.append((note.entity, lines, note.lines, dict(note.skipped), note.end))
            if note.end:
                break
    assert seen == [
        ("artist", [(1, b"a1"), (2, b"a2")], 2, {}, False),
        # A new entity ends a chunk; its line starts the next one.
        ("artist", [(3, b"a3")], 1, {}, False),
        ("label", [], 1, {"label": 1}, False),
        ("release-group", [(1, b"g1"), (2, b"g2")], 2, {}, False),
        # The end, found on the next read: no line, no entity.
        ("", [], 0, {}, True),
    ]


def test_every_dump_entity_has_the_item_class_its_mapper_makes() -> None:
    assert DUMP_ITEM_CLASSES.keys() == DUMP_MAPPERS.keys()
    for entity, mapper in DUMP_MAPPERS.items():
        assert type(mapper(dump_docs(entity)[0])) is DUMP_ITEM_CLASSES[entity]


# --- whole imports ------------------------------------------------------------------------


@deferred_f_from_coro_f
async def test_records_and_hashes_are_the_same_with_0_1_and_2_workers(
    store_settings: dict[str, Any], store: Store, tmp_path: Path
) -> None:
    # Both entities and an entity without a mapper in one archive, cut in chunks of 7.
    label = [b'{"id": "x", "name": "a label"}\n'] * 3
    members = {
        "artist": list(dump_lines(ARTISTS)),
        "label": label,
        "release-group": list(dump_lines(GROUPS)),
    }
    dump = str(archive_of(tmp_path / "mixed.tar.xz", members))
    seen = []
    for workers in (0, 1, 2):
        settings = dump_settings(store_settings, tmp_path, DUMP_WORKERS=workers, DUMP_CHUNK_LINES=7)
        # rework: every line worked again, none skipped by its revision.
        crawler = await crawl(MusicBrainzArtistsSpider, settings, dump=dump, rework="1")
        stats = crawler.stats.get_stats()
        assert stats["musicbrainz/import/worker_processes"] == workers
        assert stats["musicbrainz/dump/records/artist"] == len(ARTISTS)
        assert stats["musicbrainz/dump/records/release-group"] == len(GROUPS)
        assert stats["musicbrainz/dump/skipped/label"] == 3
        assert stats["musicbrainz/dump/lines"] == len(ARTISTS) + 3 + len(GROUPS)
        seen.append((stored(store, "artists"), stored(store, "albums")))
        outcome = "inserted" if workers == 0 else "unchanged"
        # The same canonical JSON and hash: nothing to write after the first import.
        assert stats[f"store/artists/{outcome}"] == len(ARTISTS)
        assert stats[f"store/albums/{outcome}"] == len(GROUPS)
    assert len(seen[0][0]) == len(ARTISTS)
    assert len(seen[0][1]) == len(GROUPS)
    assert seen[0] == seen[1] == seen[2]
    # The hash is the one the store pipeline gives the same content in this process, the
    # revision the digest of the record's line.
    revisions = {
        doc["id"]: line_revision(line.rstrip(b"\n"))
        for doc, line in zip(
            ARTISTS + GROUPS, members["artist"] + members["release-group"], strict=True
        )
    }
    for records in seen[0]:
        for mbid, (hash_, revision, document) in records.items():
            assert content_hash(document) == hash_, mbid
            assert revision == revisions[mbid], mbid


@deferred_f_from_coro_f
async def test_records_are_stored_in_dump_order_with_2_workers(tmp_path: Path) -> None:
    # Tombs three times, renamed each time, in three chunks: the last line must win.
    tombs = next(doc for doc in ARTISTS if doc["id"] == TOMBS)
    others = [doc for doc in ARTISTS if doc["id"] != TOMBS]
    docs = []
    for name in ("first", "second", "last"):
        docs += [*others, {**tombs, "name": name}]
    plain = tmp_path / "artist.jsonl"
    plain.write_bytes(b"".join(dump_lines(docs)))
    store_settings = sqlite_settings(tmp_path / "s.sqlite3")
    settings = dump_settings(store_settings, tmp_path, DUMP_WORKERS=2, DUMP_CHUNK_LINES=5)
    crawler = await crawl(MusicBrainzArtistsSpider, settings, dump=str(plain))
    assert crawler.stats.get_value("musicbrainz/dump/records/artist") == len(docs)
    store = open_store_for(store_settings)
    try:
        artist = store.get("artists", TOMBS)
    finally:
        store.close()
    assert artist is not None
    assert artist["name"] == "last"


@dataclass(frozen=True)
class KillOnce:
    """The artist mapper, killing its worker process once on the artist ``mbid``."""

    mbid: str
    marker: str

    def __call__(self, doc: Mapping[str, Any]) -> ContentItem:
        if doc.get("id") == self.mbid and not os.path.exists(self.marker):
            Path(self.marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return artist_item(doc)


class KilledWorkerSpider(MusicBrainzArtistsSpider):
    marker = ""

    def distributed_source(self) -> AsyncIterator[ItemBatch]:
        mappers: dict[str, Mapper] = {**DUMP_MAPPERS, "artist": KillOnce(TOMBS, self.marker)}
        return self.dump_import(import_dumps(self, mappers, DUMP_ITEM_CLASSES))


@deferred_f_from_coro_f
async def test_an_import_goes_on_after_a_worker_is_killed_mid_chunk(
    store_settings: dict[str, Any], store: Store, tmp_path: Path
) -> None:
    KilledWorkerSpider.marker = str(tmp_path / "killed")
    docs = list(generated_docs("artist", 60))
    # Tombs in the middle of the third chunk of ten.
    docs.insert(25, next(doc for doc in ARTISTS if doc["id"] == TOMBS))
    dump = write_archive(tmp_path / "artist.tar.xz", "artist", dump_lines(docs))
    settings = dump_settings(store_settings, tmp_path, DUMP_CHUNK_LINES=10, DUMP_WORKERS=2)
    crawler = await crawl(KilledWorkerSpider, settings, dump=str(dump))
    stats = crawler.stats.get_stats()
    assert (tmp_path / "killed").exists()
    assert stats["musicbrainz/import/worker_restarts"] == 1
    assert stats["store/artists/inserted"] == store.count("artists") == len(docs)
    assert stats["finish_reason"] == "finished"
    state = store.get_state("musicbrainz_artists/dump/artist.tar.xz")
    assert state is not None
    assert state["complete"] is True


@deferred_f_from_coro_f
async def test_a_stop_mid_import_ends_the_crawl_within_a_second(tmp_path: Path) -> None:
    plain = tmp_path / "artist.jsonl"
    plain.write_bytes(b"".join(dump_lines(generated_docs("artist", 30_000))))
    limit = 3000
    settings = dump_settings(sqlite_settings(tmp_path / "s.sqlite3"), tmp_path, DUMP_WORKERS=2)

    crawler, seconds = await seconds_past_item_limit(
        MusicBrainzArtistsSpider, settings, limit, dump=str(plain)
    )

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "closespider_itemcount"
    assert stats["musicbrainz/dump/lines"] < 30_000
    # Workers busy with the next chunks are not waited for.
    assert seconds < 1.0


@deferred_f_from_coro_f
async def test_an_unchanged_dump_file_is_not_read_unless_forced(
    store_settings: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = dump_settings(store_settings, tmp_path)
    artists = write_archive(tmp_path / "artist.tar.xz", "artist", dump_lines(ARTISTS))
    groups = tmp_path / "release-group.jsonl"
    groups.write_bytes(b"".join(dump_lines(GROUPS)))
    dumps = f"{artists},{groups}"
    await crawl(MusicBrainzArtistsSpider, settings, dump=dumps)

    again = await crawl(MusicBrainzArtistsSpider, settings, dump=dumps)
    stats = again.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert stats["musicbrainz/import/unchanged_dump"] == 2
    assert "musicbrainz/dump/lines" not in stats
    assert "artist.tar.xz is unchanged since its complete import" in caplog.text

    # A file changed since (here: its modification time) is read again, the other is not;
    # its lines are the stored ones, skipped by their revision.
    os.utime(groups, ns=(time.time_ns(), groups.stat().st_mtime_ns + 1_000_000_000))
    touched = await crawl(MusicBrainzArtistsSpider, settings, dump=dumps)
    stats = touched.stats.get_stats()
    assert stats["musicbrainz/import/unchanged_dump"] == 1
    assert stats["musicbrainz/dump/lines"] == len(GROUPS)
    assert stats["musicbrainz/import/unchanged_revision"] == len(GROUPS)

    # force reads both, every line skipped by its revision; rework works every line again.
    forced = await crawl(MusicBrainzArtistsSpider, settings, dump=dumps, force="1")
    stats = forced.stats.get_stats()
    assert "musicbrainz/import/unchanged_dump" not in stats
    assert stats["musicbrainz/dump/lines"] == len(ARTISTS) + len(GROUPS)
    assert stats["musicbrainz/import/unchanged_revision"] == len(ARTISTS) + len(GROUPS)
    assert "musicbrainz/dump/records/artist" not in stats
    reworked = await crawl(MusicBrainzArtistsSpider, settings, dump=dumps, rework="1")
    stats = reworked.stats.get_stats()
    assert "musicbrainz/import/unchanged_dump" not in stats
    assert "musicbrainz/import/unchanged_revision" not in stats
    assert stats["musicbrainz/dump/lines"] == len(ARTISTS) + len(GROUPS)
    assert stats["store/artists/unchanged"] == len(ARTISTS)
    assert stats["store/albums/unchanged"] == len(GROUPS)
