"""TMDB mappers and pure helpers, on recorded real bodies (spiders_tests/data/tmdb)."""

from __future__ import annotations

import json
from datetime import date

import pytest
from itemadapter import ItemAdapter

from contentcrawl.items import MovieItem
from contentcrawl.records import to_record
from contentcrawl.sources.tmdb import (
    RecordFilters,
    change_windows,
    collection_ids,
    company_ids,
    credit_person_ids,
    export_file_name,
    filter_reason,
    image_url,
    keyword_ids,
    map_collection,
    map_company,
    map_keyword,
    map_movie,
    map_network,
    map_person,
    map_series,
    network_ids,
    next_page,
    parse_ids,
    person_movie_ids,
    read_ids_file,
    select_export_ids,
)
from spiders_tests.fakes.tmdb import load, movie_550

IMAGES = "https://image.tmdb.org/t/p/w500"


def test_movie_with_every_appended_part() -> None:
    payload = load("movie_47964_append_15_parts.json")

    item = map_movie(payload, IMAGES)

    assert item.tmdb_id == 47964
    assert item.title == "A Good Day to Die Hard"
    assert item.imdb_id == "tt1606378"
    assert item.release_date == "2013-02-06"
    assert item.belongs_to_collection["id"] == 1570
    # Movies keep keywords under keywords.keywords (TV: keywords.results).
    assert {"id": 258, "name": "bomb"} in item.keywords
    assert len(item.credits["cast"]) == len(payload["credits"]["cast"])
    assert set(item.credits) == {"cast", "crew"}
    assert item.release_dates[0]["release_dates"][0]["release_date"] == "2013-02-22T00:00:00Z"
    assert item.alternative_titles[0]["iso_3166_1"] == "FR"
    assert item.videos[0]["site"] == "YouTube"
    assert item.translations
    assert item.external_ids["imdb_id"] == "tt1606378"
    assert item.poster_url == IMAGES + payload["poster_path"]
    assert item.image_urls == [item.poster_url, item.backdrop_url]


def test_movie_assembled_from_2024_sub_resources() -> None:
    item = map_movie(movie_550(), IMAGES)

    assert (item.tmdb_id, item.title, item.budget, item.revenue) == (
        550,
        "Fight Club",
        63000000,
        100853753,
    )
    assert item.external_ids == {
        "imdb_id": "tt0137523",
        "wikidata_id": "Q190050",
        "facebook_id": "FightClub",
        "instagram_id": None,
        "twitter_id": None,
    }
    # Newer release dates carry milliseconds and descriptors.
    dates = [d for country in item.release_dates for d in country["release_dates"]]
    assert any(d["release_date"].endswith(".000Z") for d in dates)
    assert item.belongs_to_collection is None


def test_movie_without_appended_parts_has_empty_lists() -> None:
    item = map_movie(load("movie_550_2024.json"), IMAGES)

    assert item.keywords == []
    assert item.credits == {"cast": [], "crew": []}
    assert item.external_ids == {}
    assert item.imdb_id == "tt0137523"


def test_unknown_release_date_becomes_none_and_images_are_optional() -> None:
    payload = {"id": 1, "title": "Untitled", "release_date": "", "poster_path": None}

    item = map_movie(payload, IMAGES)

    assert item.release_date is None
    assert item.poster_url is None
    assert item.image_urls == []


def test_series_keywords_under_results_and_credits_without_cast_id() -> None:
    payload = load("tv_1396_append_9_parts.json")

    item = map_series(payload, IMAGES)

    assert (item.tmdb_id, item.name, item.number_of_seasons) == (1396, "Breaking Bad", 5)
    assert {"name": "drug dealer", "id": 2231} in item.keywords
    assert item.credits["cast"][0]["name"] == "Bryan Cranston"
    assert "cast_id" not in item.credits["cast"][0]
    assert {"iso_3166_1": "DE", "rating": "16"} in item.content_ratings
    assert item.networks[0]["id"] == 174
    assert item.external_ids["tvdb_id"] == 81189
    assert item.first_air_date == "2008-01-20"


def test_series_prefers_aggregate_credits() -> None:
    payload = load("tv_1399_2024.json")
    payload["aggregate_credits"] = {"cast": [{"id": 1, "roles": []}], "crew": []}
    payload["credits"] = {"cast": [{"id": 2}], "crew": []}

    item = map_series(payload, IMAGES)

    assert item.credits["cast"] == [{"id": 1, "roles": []}]
    assert item.tagline == "Winter Is Coming"


def test_person_with_credits_and_null_deathday() -> None:
    payload = load("person_62_append_6_parts.json")

    item = map_person(payload, IMAGES)

    assert (item.tmdb_id, item.name, item.birthday, item.deathday) == (
        62,
        "Bruce Willis",
        "1955-03-19",
        None,
    )
    assert item.imdb_id == "nm0000246"
    assert item.movie_credits["cast"]
    assert item.tv_credits["cast"]
    # Person credits keep TMDB's "" release dates: normalising them is validation's job.
    assert any(c["release_date"] == "" for c in item.movie_credits["cast"])
    assert item.profile_url == IMAGES + payload["profile_path"]


def test_person_2024_plain() -> None:
    item = map_person(load("person_287_2024.json"), IMAGES)

    assert item.name == "Brad Pitt"
    assert item.movie_credits == {"cast": [], "crew": []}
    assert len(item.also_known_as) > 3


def test_small_entities() -> None:
    # No recorded bodies exist for these endpoints; the shapes follow TMDB's documentation.
    collection = map_collection(
        {"id": 1570, "name": "Die Hard Collection", "overview": "", "parts": [{"id": 47964}]},
        IMAGES,
    )
    company = map_company(
        {"id": 25, "name": "20th Century Fox", "logo_path": "/qZ.png", "parent_company": None},
        IMAGES,
    )
    network = map_network({"id": 174, "name": "AMC", "logo_path": None}, IMAGES)
    keyword = map_keyword({"id": 258, "name": "bomb"}, IMAGES)

    assert collection.parts == [{"id": 47964}]
    assert company.logo_url == IMAGES + "/qZ.png"
    assert company.image_urls == [company.logo_url]
    assert network.logo_url is None
    assert (keyword.tmdb_id, keyword.name) == (258, "bomb")


@pytest.mark.parametrize(
    ("name", "mapper"),
    [
        ("movie_47964_append_15_parts.json", map_movie),
        ("tv_1396_append_9_parts.json", map_series),
        ("person_62_append_6_parts.json", map_person),
    ],
)
def test_mapped_items_are_storable_json(name: str, mapper) -> None:
    item = mapper(load(name), IMAGES)

    record = to_record(item)

    assert json.loads(json.dumps(record.content)) == record.content
    assert "fetched_at" not in record.content


def test_image_url_joins_base_and_path() -> None:
    assert image_url(IMAGES + "/", "/abc.jpg") == IMAGES + "/abc.jpg"
    assert image_url(IMAGES, None) is None
    assert image_url(IMAGES, "") is None


def test_filters() -> None:
    movie = map_movie(movie_550(), IMAGES)
    cheap = MovieItem(tmdb_id=2, title="Cheap", budget=10, genres=[], credits={"cast": []})

    assert filter_reason(movie, RecordFilters()) is None
    assert filter_reason(movie, RecordFilters(min_budget=1_000_000)) is None
    assert filter_reason(cheap, RecordFilters(min_budget=1_000_000)) == "min_budget"
    assert filter_reason(cheap, RecordFilters(require=frozenset({"genres"}))) == "no_genres"
    assert filter_reason(cheap, RecordFilters(require=frozenset({"cast"}))) == "no_cast"
    assert filter_reason(movie, RecordFilters(require=frozenset({"genres", "cast"}))) is None


def test_export_selection_skips_adult_video_and_unpopular_lines() -> None:
    lines = [
        b'{"adult":false,"id":3924,"original_title":"Blondie","popularity":1.723,"video":false}\n',
        b'{"adult":true,"id":5,"original_title":"A","popularity":9.0,"video":false}\n',
        b'{"adult":false,"id":6,"original_title":"V","popularity":9.0,"video":true}\n',
        b'{"adult":false,"id":7,"original_title":"L","popularity":0.1,"video":false}\n',
        b"not json\n",
        b"\n",
        b'{"id":1,"original_name":"\xe3\x83\x97\xe3\x83\xa9\xe3\x82\xa4\xe3\x83\x89","popularity":3.872}\n',
    ]

    default = select_export_ids(lines)
    narrowed = select_export_ids(lines, min_popularity=1.0)
    everything = select_export_ids(lines, include_adult=True, include_video=True)
    limited = select_export_ids(lines, limit=2)

    assert list(default.ids) == [3924, 7, 1]
    assert default.skipped == {"adult": 1, "video": 1}
    assert default.bad_lines == 1
    assert list(narrowed.ids) == [3924, 1]
    assert narrowed.skipped["popularity"] == 1
    assert list(everything.ids) == [3924, 5, 6, 7, 1]
    assert list(limited.ids) == [3924, 7]


def test_export_file_name() -> None:
    assert export_file_name("movie_ids", date(2024, 5, 3)) == "movie_ids_05_03_2024.json.gz"


def test_change_windows_are_at_most_14_days() -> None:
    windows = change_windows(date(2024, 1, 1), date(2024, 2, 1))

    assert windows == [
        (date(2024, 1, 1), date(2024, 1, 15)),
        (date(2024, 1, 15), date(2024, 1, 29)),
        (date(2024, 1, 29), date(2024, 2, 1)),
    ]
    assert change_windows(date(2024, 1, 1), date(2024, 1, 1)) == [
        (date(2024, 1, 1), date(2024, 1, 1))
    ]


def test_next_page_does_not_trust_the_2019_totals() -> None:
    lie = load("movie_changes_2019.json")
    honest = load("movie_changes_2024.json")

    # total_pages says 1, but a page of 1,637 results may not be the last one.
    assert (lie["total_pages"], len(lie["results"])) == (1, 1637)
    assert next_page(lie, 1) == 2
    assert next_page(honest, 1) == 2
    assert next_page({**honest, "page": 62}, 62) == 63  # a full last page: ask once more
    assert next_page({"results": [{"id": 1}], "total_pages": 62}, 62) is None
    assert next_page({"results": [], "total_pages": 62}, 5) is None


def test_reference_extractors() -> None:
    movie = ItemAdapter(map_movie(load("movie_47964_append_15_parts.json"), IMAGES)).asdict()
    series = ItemAdapter(map_series(load("tv_1396_append_9_parts.json"), IMAGES)).asdict()
    person = ItemAdapter(map_person(load("person_62_append_6_parts.json"), IMAGES)).asdict()

    assert list(collection_ids(movie)) == [1570]
    assert 62 in set(credit_person_ids(movie))
    assert 66633 in set(credit_person_ids(series))  # a creator
    assert list(network_ids(series)) == [174]
    assert 258 in set(keyword_ids(movie))
    assert set(company_ids(movie))
    assert 47964 in set(person_movie_ids(person))


def test_ids_arguments(tmp_path) -> None:
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("550\n# a comment\n\n551, 552\n", encoding="utf-8")

    assert parse_ids("550,551 552") == [550, 551, 552]
    assert read_ids_file(ids_file) == [550, 551, 552]
    with pytest.raises(ValueError, match="abc"):
        parse_ids("550,abc")
    ids_file.write_text("550\nx\n", encoding="utf-8")
    with pytest.raises(ValueError, match=":2:"):
        read_ids_file(ids_file)


def test_series_keeps_languages_countries_and_its_episodes_to_air() -> None:
    payload = load("tv_1399_2024.json")

    item = map_series(payload, IMAGES)

    assert item.languages == ["en"]
    assert [c["iso_3166_1"] for c in item.production_countries] == ["GB", "US"]
    assert item.origin_country == ["US"]
    assert item.last_episode_to_air is not None
    assert item.last_episode_to_air["name"] == "The Iron Throne"
    assert item.next_episode_to_air is None  # null for an ended series


def test_series_alternative_titles_under_results() -> None:
    payload = load("tv_1396_append_9_parts.json")

    item = map_series(payload, IMAGES)

    assert item.alternative_titles == payload["alternative_titles"]["results"]
    assert item.alternative_titles


def test_movie_origin_country_is_kept() -> None:
    payload = movie_550()
    payload["origin_country"] = ["US"]  # sent by TMDB since 2024, absent in the recordings

    assert map_movie(payload, IMAGES).origin_country == ["US"]
