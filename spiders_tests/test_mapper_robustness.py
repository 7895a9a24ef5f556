"""Bad real-world input: real recorded records, mutated, through the mappers, callbacks and
dump readers. A bad value is left empty (the record kept), or the record is skipped counted
and logged; the crawl goes on and the other records are stored."""

from __future__ import annotations

import copy
import gzip
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scrapy import Request, Spider
from scrapy.http import TextResponse
from scrapy.utils.defer import deferred_f_from_coro_f
from scrapy.utils.test import get_crawler

from contentcrawl.dates import normalise_date
from contentcrawl.pipelines.validation import ValidationPipeline
from contentcrawl.sources.igdb import game_item, plan_ranges
from contentcrawl.sources.musicbrainz import artist_item, rating
from contentcrawl.sources.openlibrary import book_from_edition, parse_line
from contentcrawl.sources.tmdb import map_movie, map_person, map_series, select_export_ids
from contentcrawl.spiders.igdb_games import IgdbGamesSpider
from contentcrawl.spiders.musicbrainz_artists import MusicBrainzArtistsSpider
from contentcrawl.spiders.openlibrary_books import OpenLibraryBooksSpider
from contentcrawl.spiders.tmdb_keywords import TmdbKeywordsSpider
from contentcrawl.spiders.tmdb_movies import TmdbMoviesSpider
from contentcrawl.spiders.tmdb_series import TmdbSeriesSpider
from spiders_tests.conftest import DATA, open_store_for
from spiders_tests.crawling import crawl, make_crawler
from spiders_tests.dates import utc_today
from spiders_tests.fakes.igdb import FakeIgdb, sample_games, templates
from spiders_tests.fakes.musicbrainz_samples import TOMBS, dump_docs, dump_lines
from spiders_tests.fakes.openlibrary import sample_lines, write_dump
from spiders_tests.fakes.server import FakeServer
from spiders_tests.fakes.tmdb import TmdbFake, load, movie_550
from spiders_tests.settings_for import igdb_settings, sqlite_settings, tmdb_settings
from spiders_tests.tmdb_crawls import running_tmdb

COVERS = "https://covers.openlibrary.org/b"
IMAGES = "https://image.tmdb.org/t/p/w500"
# Deeper than the json module follows: it raises RecursionError, not a ValueError.
TOO_DEEP = "[" * 5000 + "]" * 5000


def stored(settings: dict[str, Any], collection: str, key: Any) -> dict[str, Any] | None:
    store = open_store_for(settings)
    try:
        return store.get(collection, key)
    finally:
        store.close()


def with_field(line: bytes, name: str, json_value: str) -> bytes:
    """An Open Library dump line with ``name`` set to the raw JSON text ``json_value``."""
    head, payload = line.rstrip(b"\n").rsplit(b"\t", 1)
    doc = json.loads(payload)
    doc.pop(name, None)
    text = json.dumps(doc)[:-1] + f', "{name}": {json_value}}}'
    return head + b"\t" + text.encode() + b"\n"


def key_of(line: bytes) -> str:
    return line.split(b"\t", 2)[1].decode()


# --- dates ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [["2001-01-01"], {"value": "2001"}, 10**30, float("nan"), float("inf")]
)
def test_unreadable_date_of_any_type_is_a_value_error(value: Any) -> None:
    with pytest.raises(ValueError, match=r"not a date|out of range"):
        normalise_date(value)


def test_validation_nulls_and_counts_a_date_of_the_wrong_type() -> None:
    crawler = get_crawler(Spider)
    pipeline = ValidationPipeline.from_crawler(crawler)
    person = map_person(load("person_287_2024.json"), IMAGES)
    person.birthday = ["1963-12-18"]  # type: ignore[assignment]

    pipeline.process_item(person)

    assert (person.name, person.birthday) == ("Brad Pitt", None)
    assert crawler.stats.get_value("dates/people/unreadable") == 1


def test_tmdb_date_that_is_not_text_is_left_empty_and_named() -> None:
    payload = load("person_287_2024.json")
    payload["birthday"] = ["1963-12-18"]
    # A number is no TMDB date: validation would read it as a Unix timestamp (1970-08-16).
    payload["deathday"] = 19650101
    found: list[str] = []

    person = map_person(payload, IMAGES, found)

    assert found == ["birthday", "deathday"]
    assert (person.name, person.birthday, person.deathday) == ("Brad Pitt", None, None)


# --- Open Library -------------------------------------------------------------------------


def test_page_count_in_digits_int_cannot_read_is_left_empty() -> None:
    line = with_field(sample_lines("editions")[5], "number_of_pages", '"\\u00b9\\u00b2\\u00b3"')
    record = parse_line(line.rstrip(b"\n"))
    assert not isinstance(record, str)

    book = book_from_edition(record.doc, covers_url=COVERS, revision=record.revision)

    assert book.number_of_pages is None
    assert book.title == record.doc["title"]


def test_oclc_numbers_under_the_legacy_singular_name_are_kept() -> None:
    lines = (DATA / "openlibrary" / "ol_dump_editions_grep_dostoyevsky.txt").read_bytes()
    line = next(line for line in lines.splitlines() if b"/books/OL16388474M\t" in line)
    record = parse_line(line)
    assert not isinstance(record, str)
    doc = record.doc
    assert "oclc_numbers" not in doc

    book = book_from_edition(doc, covers_url=COVERS)
    both = book_from_edition({**doc, "oclc_numbers": ["1", *doc["oclc_number"]]}, covers_url=COVERS)

    assert book.identifiers["oclc"] == doc["oclc_number"]
    assert both.identifiers["oclc"] == ["1", *doc["oclc_number"]]


@deferred_f_from_coro_f
async def test_openlibrary_import_skips_a_line_too_deep_to_parse_and_stores_the_rest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines = sample_lines("editions")[:20]
    lines[3] = with_field(lines[3], "notes", TOO_DEEP)
    lines[5] = with_field(lines[5], "number_of_pages", '"\\u00b9\\u00b2\\u00b3"')
    dump = write_dump(tmp_path / "editions.txt.gz", lines)
    settings = {**sqlite_settings(tmp_path), "DUMPS_DIR": str(tmp_path / "dumps")}

    with caplog.at_level(logging.WARNING):
        crawler = await crawl(OpenLibraryBooksSpider, settings, dump=str(dump))

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert stats["store/books/inserted"] == 19
    assert stats["openlibrary/bad_lines"] == stats["openlibrary/bad_lines/json"] == 1
    assert "editions.txt.gz line 4 skipped (json)" in caplog.text
    assert stored(settings, "books", key_of(lines[3])) is None
    book = stored(settings, "books", key_of(lines[5]))
    assert book is not None
    assert book["number_of_pages"] is None


# --- MusicBrainz --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [pytest.param(10**400, id="10**400"), float("nan"), float("inf")])
def test_musicbrainz_rating_that_is_no_number_is_left_empty(value: Any) -> None:
    assert rating({"value": value, "votes-count": 3}) is None
    assert rating({"value": 4, "votes-count": 3}) == {"value": 4.0, "votes_count": 3}


@deferred_f_from_coro_f
async def test_musicbrainz_dump_skips_a_line_too_deep_to_parse_and_stores_the_rest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    docs = dump_docs("artist")
    tombs = next(doc for doc in docs if doc["id"] == TOMBS)
    # A score past any float (json writes and reads it exactly).
    tombs["rating"] = {"value": 10**400, "votes-count": 2}
    lines = list(dump_lines(docs))
    unparsable = f'{{"id": "{TOMBS}", "aliases": {TOO_DEEP}}}\n'
    lines.insert(1, unparsable.encode())
    plain = tmp_path / "artist.jsonl"
    plain.write_bytes(b"".join(lines))
    settings = {**sqlite_settings(tmp_path), "DUMPS_DIR": str(tmp_path / "dumps")}

    with caplog.at_level(logging.WARNING):
        crawler = await crawl(MusicBrainzArtistsSpider, settings, mode="dump", dump=str(plain))

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert stats["store/artists/inserted"] == len(docs)
    assert stats["musicbrainz/dump/bad_lines"] == stats["musicbrainz/dump/bad_lines/json"] == 1
    assert "artist.jsonl artist line 2 skipped (json)" in caplog.text
    artist = stored(settings, "artists", TOMBS)
    assert artist is not None
    assert (artist["name"], artist["rating"]) == ("Tombs", None)
    assert artist["tags"] == artist_item(tombs).tags


# --- IGDB ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("rating", 10**400, id="rating-10**400"),
        ("rating_count", float("inf")),
        ("total_rating_count", float("nan")),
        ("aggregated_rating", float("nan")),
        ("first_release_date", float("nan")),
        ("updated_at", float("nan")),
    ],
)
def test_igdb_number_that_is_no_number_is_left_empty(field: str, value: Any) -> None:
    game = copy.deepcopy(templates()[0])
    game[field] = value

    item = game_item(game)

    assert getattr(item, field) is None
    assert item.name == game["name"]


def test_igdb_ranges_for_an_absurd_count_and_id_are_planned_without_overflow() -> None:
    ranges = plan_ranges(0, 10**400, 10**400, 500, 4)

    assert len(ranges) == 4
    assert ranges[0][0] == 0
    assert ranges[-1][1] == 10**400


def test_igdb_probe_answer_with_unusable_names_is_a_lost_page_not_a_crash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    crawler = make_crawler(IgdbGamesSpider)
    spider = IgdbGamesSpider.from_crawler(crawler)
    answer = [{"name": ["count"], "count": 3}, {"name": {"last": 1}, "result": [{"id": 9}]}]
    request = spider.probe_request([])
    response = TextResponse(
        request.url, body=json.dumps(answer).encode(), encoding="utf-8", request=request
    )

    with caplog.at_level(logging.ERROR):
        requests = list(spider.parse_probe(response, where=[]))

    assert requests == []
    assert crawler.stats.get_value("igdb/pages/failed") == 1
    assert "unexpected multiquery answer" in caplog.text


@deferred_f_from_coro_f
async def test_igdb_page_keeps_every_game_after_one_with_bad_numbers(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    games = sample_games(9)
    first = min(games)
    # NaN and a number past float: the fake's JSON writes them as IGDB never would.
    games[first] = {**games[first], "rating_count": float("nan"), "rating": 10**400}
    fake = FakeIgdb(fake_server, games, requests_per_second=None, max_open=None)
    settings = igdb_settings(fake, sqlite_settings(tmp_path), IGDB_PARALLEL_RANGES=1)

    crawler = await crawl(IgdbGamesSpider, settings, mode="full")

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert "spider_exceptions" not in " ".join(stats)
    assert stats["store/games/inserted"] == 9
    game = stored(settings, "games", first)
    assert game is not None
    assert (game["rating"], game["rating_count"]) == (None, None)
    assert game["name"] == games[first]["name"]


# --- TMDB ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "misshapen", "empty"),
    [
        ("genres", "Drama", "genres", ("genres", [])),
        ("keywords", "bomb", "keywords", ("keywords", [])),
        ("keywords", {"keywords": 258}, "keywords.keywords", ("keywords", [])),
        ("credits", [{"id": 819}], "credits", ("credits", {"cast": [], "crew": []})),
        ("external_ids", "tt0137523", "external_ids", ("external_ids", {})),
        ("release_dates", {"results": "US"}, "release_dates.results", ("release_dates", [])),
        ("poster_path", 5, "poster_path", ("poster_url", None)),
    ],
)
def test_tmdb_field_of_the_wrong_type_is_left_empty_and_named(
    field: str, value: Any, misshapen: str, empty: tuple[str, Any]
) -> None:
    payload = movie_550()
    payload[field] = value
    found: list[str] = []

    movie = map_movie(payload, IMAGES, found)

    assert found == [misshapen]
    assert getattr(movie, empty[0]) == empty[1]
    assert (movie.title, movie.runtime, movie.release_date) == ("Fight Club", 139, "1999-10-15")


def test_tmdb_export_lines_that_are_no_id_are_bad_lines_and_the_rest_kept() -> None:
    lines = [
        b'{"id":550,"popularity":61.4}',
        b'{"id":1e400,"popularity":1.0}',
        b'{"id":1000000000000000000000000000000,"popularity":1.0}',
        b'{"id":true,"popularity":1.0}',
        b'{"id":' + TOO_DEEP.encode() + b"}",
        b'{"id":47964,"popularity":"high"}',
        b'["id", 5]',
    ]

    selection = select_export_ids(lines, min_popularity=10.0)

    assert list(selection.ids) == [550, 47964]
    assert selection.bad_lines == 5


@pytest.fixture
def tmdb(fake_server: FakeServer) -> Iterator[TmdbFake]:
    """The fake TMDB with Fight Club."""
    with running_tmdb(fake_server, [("movie", movie_550())]) as fake:
        yield fake


@deferred_f_from_coro_f
async def test_tmdb_movie_with_misshapen_parts_is_stored_counted_and_logged(
    tmdb: TmdbFake, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    payload = movie_550()
    payload["keywords"] = "bomb"
    payload["genres"] = {"id": 18, "name": "Drama"}
    tmdb.add("movie", payload)
    settings = tmdb_settings(tmdb, sqlite_settings(tmp_path), tmp_path)

    with caplog.at_level(logging.WARNING):
        crawler = await crawl(TmdbMoviesSpider, settings, ids="550")

    stats = crawler.stats.get_stats()
    assert stats["store/movies/inserted"] == 1
    assert stats["tmdb/movies/misshapen"] == 1
    assert "TMDB movie 550: genres, keywords of the wrong type, left empty" in caplog.text
    movie = stored(settings, "movies", 550)
    assert movie is not None
    assert (movie["genres"], movie["keywords"]) == ([], [])
    assert movie["external_ids"]["wikidata_id"] == "Q190050"


@deferred_f_from_coro_f
async def test_tmdb_changes_page_with_bad_entries_fetches_the_good_ones(
    tmdb: TmdbFake, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = tmdb_settings(tmdb, sqlite_settings(tmp_path), tmp_path)
    store = open_store_for(settings)
    try:
        store.set_state("tmdb_movies/changes", {"synced_through": utc_today().isoformat()})
    finally:
        store.close()
    tmdb.changes["movie"].extend(
        [
            (utc_today(), "550"),
            (utc_today(), {"adult": False}),
            (utc_today(), {"id": "abc"}),
            (utc_today(), {"id": None}),
        ]
    )
    tmdb.add_change("movie", utc_today(), 550)

    with caplog.at_level(logging.WARNING):
        crawler = await crawl(TmdbMoviesSpider, settings, mode="changes")

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert stats["store/movies/inserted"] == 1
    assert stats["tmdb/movies/changes/invalid"] == 4
    assert "Skipping a TMDB changes entry without an id: '550'" in caplog.text


def test_tmdb_season_part_of_the_wrong_type_keeps_the_series(
    caplog: pytest.LogCaptureFixture,
) -> None:
    crawler = make_crawler(TmdbSeriesSpider)
    spider = TmdbSeriesSpider.from_crawler(crawler, episodes="1", ids="1396")
    payload = load("tv_1396_append_9_parts.json")
    payload["seasons"] = [*payload["seasons"][:2], "Season 9"]
    series = map_series(payload, IMAGES)
    first, second = (season["season_number"] for season in series.seasons[:2])
    answer = {f"season/{first}": "no episodes", f"season/{second}": {"episodes": [{"id": 1}]}}
    request = Request("https://tmdb.test/3/tv/1396")
    response = TextResponse(
        request.url, body=json.dumps(answer).encode(), encoding="utf-8", request=request
    )

    with caplog.at_level(logging.WARNING):
        found = list(spider.parse_seasons(response, tmdb_id=1396, item=series, first=0))

    assert found == [series]
    assert series.seasons[0]["episodes"] == []
    assert series.seasons[1]["episodes"] == [{"id": 1}]
    assert crawler.stats.get_value("tmdb/series/misshapen") == 1
    assert f"season/{first} of the wrong type" in caplog.text


@deferred_f_from_coro_f
async def test_tmdb_keywords_export_cut_short_keeps_what_it_read_and_is_an_error(
    tmdb: TmdbFake, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keywords = [{"id": number, "name": f"keyword {number}"} for number in range(1, 3001)]
    text = "".join(json.dumps(keyword) + "\n" for keyword in keywords)
    lines = text.splitlines(keepends=True)
    lines[1] = '{"id": 2, "name": ' + TOO_DEEP + "}\n"
    whole = gzip.compress("".join(lines).encode())
    name = tmdb.add_export("keyword_ids", utc_today(), [])
    tmdb.export_files[name] = whole[: len(whole) * 2 // 3]
    settings = tmdb_settings(tmdb, sqlite_settings(tmp_path), tmp_path)

    with caplog.at_level(logging.WARNING):
        crawler = await crawl(TmdbKeywordsSpider, settings)

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert 0 < stats["store/keywords/inserted"] < len(keywords) - 1
    assert stats["tmdb/keywords/export/bad_line"] == 1
    assert stats["tmdb/keywords/export/damaged"] == 1
    assert f"{name} line 2 skipped" in caplog.text
    assert f"Export {name} is damaged" in caplog.text
    assert stored(settings, "keywords", 1) is not None
