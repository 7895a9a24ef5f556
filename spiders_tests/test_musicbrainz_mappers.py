"""MusicBrainz mappers on recorded real bodies, and the dump archive reader."""

from __future__ import annotations

import json
import random
import tracemalloc
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from contentcrawl.dumps import DumpFile, DumpReadError
from contentcrawl.items import AlbumItem, ArtistItem
from contentcrawl.sources.musicbrainz import (
    album_item,
    artist_item,
    is_mbid,
    user_agent,
)
from contentcrawl.sources.musicbrainz.archive import ArchiveLines, is_archive, plain_entity
from contentcrawl.sources.musicbrainz.lines import BadLineError, parse_entity_line
from contentcrawl.sources.musicbrainz.queries import browse_url, lookup_url, search_url
from contentcrawl.sources.musicbrainz.spider import split_list
from contentcrawl.store.base import content_hash
from spiders_tests.fakes.musicbrainz import shuffled
from spiders_tests.fakes.musicbrainz_samples import (
    DATA,
    DUMP_TIMESTAMP,
    ED_SHEERAN,
    PERKELE,
    TOMBS,
    dump_docs,
    dump_lines,
    generated_docs,
    write_archive,
)


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


TOMBS_LOOKUP = load("artist_8b2cccef_inc_release-groups_tombs_2021.json")
PERKELE_LOOKUP = load("artist_9d62c5a5_inc_release-groups_perkele_2021.json")
SHEERAN_LOOKUP = load("artist_b8a7c51f_inc_url-rels_releases_ratings_tags.json")
RELEASE_GROUP = load("release-group_lookup_inc_many.json")
MANOWAR_SEARCH = load("artist_search_manowar_2021.json")


def content(item: ArtistItem | AlbumItem) -> dict[str, Any]:
    return {k: v for k, v in asdict(item).items() if k not in ("revision", "fetched_at")}


def reordered(value: Any, rng: random.Random) -> Any:
    """``value`` with keys shuffled and every list of objects reversed."""
    value = shuffled(value, rng)
    if isinstance(value, dict):
        return {key: reordered(entry, rng) for key, entry in value.items()}
    if isinstance(value, list):
        entries = [reordered(entry, rng) for entry in value]
        return entries[::-1] if all(isinstance(entry, dict) for entry in entries) else entries
    return value


# --- artists --------------------------------------------------------------------------------


def test_artist_from_lookup_with_both_begin_area_spellings() -> None:
    item = artist_item(TOMBS_LOOKUP)
    assert item.mbid == TOMBS
    assert item.name == item.sort_name == "Tombs"
    assert item.type == "Group"
    assert item.country == "US"
    assert item.area == {
        "mbid": "489ce91b-6658-3307-9877-795b68554c98",
        "name": "United States",
        "sort_name": "United States",
        "iso_3166_1_codes": ["US"],
    }
    assert item.begin_area is not None
    assert item.begin_area["name"] == "Brooklyn"
    assert item.begin_date == "2007"
    assert item.end_date is None
    assert item.ended is False
    assert item.disambiguation is None  # "" in the body
    assert item.gender is None
    assert item.aliases == item.tags == item.genres == item.urls == []
    assert item.rating is None


def test_legacy_begin_area_alone_is_read() -> None:
    payload = {k: v for k, v in TOMBS_LOOKUP.items() if k != "begin-area"}
    assert artist_item(payload).begin_area == artist_item(TOMBS_LOOKUP).begin_area


def test_artist_with_url_relations_rating_tags_and_ids() -> None:
    item = artist_item(SHEERAN_LOOKUP)
    assert item.mbid == ED_SHEERAN
    assert item.gender == "Male"
    assert item.begin_date == "1991-02-17"
    assert item.rating == {"value": 4.25, "votes_count": 4}
    assert item.isnis == ["0000000364434564"]
    assert item.ipis == ["00600664284"]
    names = [tag["name"] for tag in item.tags]
    assert names == sorted(names)
    assert {"name": "pop soul", "count": 0} in item.tags  # a down-voted tag is still a tag
    assert {"type": "allmusic", "url": "https://www.allmusic.com/artist/mn0002639628"}.items() <= (
        next(url for url in item.urls if url["type"] == "allmusic").items()
    )
    assert len(item.urls) == len(
        [rel for rel in SHEERAN_LOOKUP["relations"] if rel["target-type"] == "url"]
    )
    assert all(url["ended"] is False for url in item.urls)


def test_search_hit_ended_null_maps_like_lookup_false() -> None:
    manowar = MANOWAR_SEARCH["artists"][0]
    assert manowar["life-span"]["ended"] is None
    item = artist_item(manowar)
    assert item.ended is False
    assert item.aliases == [
        {
            "name": "Man o' War",
            "sort_name": "Man o' War",
            "locale": None,
            "type": None,
            "primary": False,
            "begin_date": None,
            "end_date": None,
        }
    ]
    dead = next(hit for hit in MANOWAR_SEARCH["artists"] if hit["name"] == "Josef Manowarda")
    assert artist_item(dead).ended is True
    assert artist_item(dead).end_date == "1942-12-24"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_artist_record_does_not_depend_on_key_or_list_order(seed: int) -> None:
    """MusicBrainz sends keys in random order; the record and its hash must not change."""
    rng = random.Random(seed)
    for body in (SHEERAN_LOOKUP, MANOWAR_SEARCH["artists"][0], TOMBS_LOOKUP):
        again = reordered(body, rng)
        assert content(artist_item(again)) == content(artist_item(body))
        assert content_hash(content(artist_item(again))) == content_hash(content(artist_item(body)))


# --- albums ---------------------------------------------------------------------------------


def test_album_from_release_group_lookup() -> None:
    item = album_item(RELEASE_GROUP)
    assert item.mbid == "05ce100c-eddf-4967-8d7e-33fc0883fe39"
    assert item.title == "+"
    assert item.primary_type == "Album"
    assert item.secondary_types == []
    assert item.first_release_date == "2011-09-09"
    assert item.disambiguation == "plus"
    assert item.artist_credit == [
        {"mbid": ED_SHEERAN, "name": "Ed Sheeran", "artist_name": "Ed Sheeran", "joinphrase": ""}
    ]
    assert item.artist_mbids == [ED_SHEERAN]
    assert item.rating == {"value": 4.15, "votes_count": 8}
    assert [tag["name"] for tag in item.tags] == [
        "folk pop",
        "indie rock",
        "pop",
        "singer/songwriter",
        "uk hip hop",
    ]


def test_album_without_credit_is_linked_to_the_browsed_artist() -> None:
    groups = {group["title"]: group for group in PERKELE_LOOKUP["release-groups"]}
    demo = next(group for group in groups.values() if group["secondary-types"] == ["Demo"])
    item = album_item(demo, artist_mbid=PERKELE)
    assert item.primary_type is None  # null for release groups with only secondary types
    assert item.secondary_types == ["Demo"]
    assert item.artist_mbids == [PERKELE]
    assert album_item(demo).artist_mbids == []


def test_album_dates_keep_their_precision() -> None:
    dates = {
        group["title"]: album_item(group).first_release_date
        for group in TOMBS_LOOKUP["release-groups"]
    }
    assert dates["Tombs"] == "2007"
    assert dates["Ashes"] == "2012-09"
    assert dates["Winterhours"] == "2009-04-17"


def test_collaboration_credit_keeps_order_and_joinphrases() -> None:
    search = load("release-group_search_many_2021.json")["release-groups"]
    # No recorded release group credits two artists: join two recorded credits with " & ".
    first, second = search[0]["artist-credit"][0], search[-1]["artist-credit"][0]
    group = {**search[0], "artist-credit": [{**first, "joinphrase": " & "}, second, first]}
    item = album_item(group)
    assert [entry["name"] for entry in item.artist_credit] == [
        first["name"],
        second["name"],
        first["name"],
    ]
    assert [entry["joinphrase"] for entry in item.artist_credit] == [" & ", "", ""]
    assert item.artist_mbids == [first["artist"]["id"], second["artist"]["id"]]


@pytest.mark.parametrize("seed", [4, 5])
def test_album_record_does_not_depend_on_key_order(seed: int) -> None:
    rng = random.Random(seed)
    again = shuffled(RELEASE_GROUP, rng)
    assert content(album_item(again)) == content(album_item(RELEASE_GROUP))


# --- small helpers --------------------------------------------------------------------------


def test_user_agent_names_version_and_contact() -> None:
    assert user_agent("me@example.org", "1.2.3") == "contentcrawl/1.2.3 ( me@example.org )"


def test_ws2_urls_ask_for_json_with_literal_plus_includes() -> None:
    api = "http://127.0.0.1:1/ws/2"
    assert lookup_url(api, TOMBS) == (
        f"{api}/artist/{TOMBS}?fmt=json&inc=aliases+tags+genres+ratings+url-rels"
    )
    assert browse_url(api, TOMBS, 100, 200) == (
        f"{api}/release-group?artist={TOMBS}&limit=100&offset=200&fmt=json"
        "&inc=artist-credits+tags+genres+ratings"
    )
    # A Lucene query is URL-encoded; a search asks for no includes.
    assert search_url(api, 'artist:"Tombs" AND country:US', 25, 0) == (
        f"{api}/artist?query=artist%3A%22Tombs%22+AND+country%3AUS&limit=25&offset=0&fmt=json"
    )


def test_mbids_and_lists() -> None:
    assert is_mbid(TOMBS)
    assert not is_mbid(TOMBS.upper())
    assert not is_mbid("8b2cccef")
    assert not is_mbid(None)
    assert split_list(" a, b ,,c ") == ["a", "b", "c"]
    assert split_list(["x", " ", "y"]) == ["x", "y"]
    assert split_list(None) == []


# --- the dump reader ------------------------------------------------------------------------


def test_dump_file_names() -> None:
    assert is_archive("artist.tar.xz")
    assert is_archive("release-group.TAR")
    assert not is_archive("artist.jsonl.gz")
    assert plain_entity("artist") == "artist"
    assert plain_entity("release-group.jsonl.gz") == "release-group"
    assert plain_entity("artist.json.xz") == "artist"
    assert plain_entity("mbdump.txt") == "mbdump.txt"


def test_entity_lines_are_objects_with_an_id() -> None:
    assert parse_entity_line(b'{"id": "x", "name": "y"}') == {"id": "x", "name": "y"}
    with pytest.raises(BadLineError) as json_error:
        parse_entity_line(b"{oops")
    assert json_error.value.reason == "json"
    with pytest.raises(BadLineError) as list_error:
        parse_entity_line(b"[1, 2]")
    assert list_error.value.reason == "json"
    with pytest.raises(BadLineError) as no_id:
        parse_entity_line(b'{"name": "nameless"}')
    assert no_id.value.reason == "fields"


def test_archive_reader_streams_the_data_member_and_keeps_metadata(tmp_path: Path) -> None:
    docs = dump_docs("artist")
    archive = write_archive(tmp_path / "artist.tar.xz", "artist", dump_lines(docs))
    with DumpFile(archive) as dump:
        reader = ArchiveLines(dump.stream)
        lines = list(reader)
        assert dump.position == dump.size
    assert [entity for entity, _, _ in lines] == ["artist"] * len(docs)
    assert [number for _, number, _ in lines] == list(range(1, len(docs) + 1))
    assert [json.loads(line) for _, _, line in lines] == docs
    assert reader.metadata["TIMESTAMP"] == DUMP_TIMESTAMP
    assert reader.metadata["JSON_DUMPS_SCHEMA_NUMBER"] == "1"
    assert reader.members[-1] == "mbdump/artist"


def test_archive_reader_maps_the_same_records_as_the_api() -> None:
    docs = {doc["id"]: doc for doc in dump_docs("artist")}
    lookup = {k: v for k, v in TOMBS_LOOKUP.items() if k != "release-groups"}
    assert content(artist_item(docs[TOMBS])) == content(
        artist_item(shuffled(lookup, random.Random(9)))
    )


def test_truncated_archive_raises_after_the_last_whole_line(tmp_path: Path) -> None:
    docs = list(generated_docs("artist", 400))
    whole = write_archive(tmp_path / "whole.tar.xz", "artist", dump_lines(docs))
    cut = tmp_path / "cut.tar.xz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    read: list[int] = []

    def read_all() -> None:
        with DumpFile(cut) as dump:
            for _, number, line in ArchiveLines(dump.stream):
                json.loads(line)
                read.append(number)

    with pytest.raises(DumpReadError) as error:
        read_all()
    assert error.value.reason == "truncated"
    assert 0 < len(read) < len(docs)
    assert error.value.line_number == read[-1] + 1


def test_uncompressed_tar_is_read_too(tmp_path: Path) -> None:
    docs = dump_docs("release-group")[:3]
    archive = write_archive(tmp_path / "release-group.tar", "release-group", dump_lines(docs))
    with DumpFile(archive) as dump:
        assert [json.loads(line)["id"] for _, _, line in ArchiveLines(dump.stream)] == [
            doc["id"] for doc in docs
        ]


def test_archive_reader_memory_does_not_grow_with_the_dump(tmp_path: Path) -> None:
    small = write_archive(
        tmp_path / "s" / "artist.tar.xz",
        "artist",
        dump_lines(generated_docs("artist", 500)),
        preset=0,
    )
    large = write_archive(
        tmp_path / "l" / "artist.tar.xz",
        "artist",
        dump_lines(generated_docs("artist", 5000)),
        preset=0,
    )

    def peak(path: Path) -> int:
        tracemalloc.start()
        try:
            with DumpFile(path) as dump:
                for _ in ArchiveLines(dump.stream):
                    pass
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small_peak, large_peak = peak(small), peak(large)
    # Ten times the lines, the same buffers: well under 2 MB more at the peak.
    assert large_peak - small_peak < 2 * 1024 * 1024


def test_artist_keeps_its_end_area() -> None:
    search = load("artist_search_solstice_2021.json")
    ended = next(a for a in search["artists"] if a["id"] == "989f692e-628d-4bac-92bb-d945811f75a2")

    item = artist_item(ended)

    assert item.end_area is not None
    assert item.end_area["name"] == "Quebec"
    assert (item.begin_date, item.end_date, item.ended) == ("1976", "1981", True)


@pytest.mark.parametrize(
    ("begin", "end"),
    [("begin", "end"), ("begin-date", "end-date")],  # lookups and dumps; search results
)
def test_alias_dates_are_read_under_either_spelling(begin: str, end: str) -> None:
    artist = json.loads(json.dumps(MANOWAR_SEARCH["artists"][0]))
    alias = artist["aliases"][0]
    alias[begin], alias[end] = "1980-06", "1991"

    (kept,) = [a for a in artist_item(artist).aliases if a["name"] == alias["name"]]

    assert (kept["begin_date"], kept["end_date"]) == ("1980-06", "1991")
