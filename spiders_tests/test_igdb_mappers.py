"""IGDB mappers and query building, on recorded real IGDB bodies (data/igdb/)."""

from __future__ import annotations

import json
from itertools import pairwise
from typing import Any

import pytest
from scrapy.http import TextResponse

from contentcrawl.sources.igdb import (
    GAME_EXPANDED_FIELDS,
    GAME_FIELDS,
    apicalypse,
    count_query,
    error_message,
    external_ids,
    game_item,
    iso_date,
    iso_datetime,
    multiquery,
    plan_ranges,
    unexpanded_fields,
    valid_id,
)
from spiders_tests.conftest import DATA
from spiders_tests.fakes.igdb import templates
from spiders_tests.fakes.igdb_apicalypse import error_400, parse_query, project

COVER = "https://images.igdb.com/igdb/image/upload/t_cover_big"


def recorded(name: str) -> Any:
    return json.loads((DATA / "igdb" / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def search() -> dict[int, dict[str, Any]]:
    """The recorded 2021 search answer (expanded fields mixed with bare ids), by id."""
    return {game["id"]: game for game in recorded("games_search_sengoku3_expanded_2021.json")}


def test_game_from_recorded_search(search: dict[int, dict[str, Any]]) -> None:
    item = game_item(search[46784])

    assert item.igdb_id == 46784
    assert item.name == "Sengoku 3"
    assert item.slug == "sengoku-3"
    assert item.url == "https://www.igdb.com/games/sengoku-3"
    assert item.summary.startswith("The game takes a greater departure")
    assert item.storyline is None  # absent, not null, in IGDB's answer
    assert item.first_release_date == "2001-01-18"  # 979776000
    assert item.updated_at == "2021-07-13T11:19:39Z"
    # "\u0027" in the body is an apostrophe once decoded.
    assert item.genres == ["Fighting", "Hack and slash/Beat 'em up", "Arcade"]
    assert item.platforms == ["Wii", "Arcade", "Neo Geo MVS", "Neo Geo AES"]
    assert item.involved_companies == [
        {
            "company_id": 2837,
            "name": "D4 Enterprise",
            "developer": False,
            "publisher": True,
            "porting": False,
            "supporting": False,
        }
    ]
    assert item.developers == []
    assert item.publishers == ["D4 Enterprise"]
    assert item.rating == pytest.approx(84.1015253345384)
    assert item.rating_count == 11
    assert item.total_rating_count == 11
    assert item.aggregated_rating is None
    assert item.cover_url == f"{COVER}/co1w4y.jpg"
    assert item.image_urls == [item.cover_url]


def test_developers_and_publishers_keep_company_order(search: dict[int, dict[str, Any]]) -> None:
    item = game_item(search[5138])

    assert item.name == "Samurai Warriors 3"
    assert item.developers == ["Nintendo EAD", "Omega Force"]
    assert item.publishers == ["Koei Tecmo", "Nintendo"]
    assert item.aggregated_rating_count == search[5138]["aggregated_rating_count"]


def test_bare_ids_give_no_names_and_are_reported(search: dict[int, dict[str, Any]]) -> None:
    game = search[50654]  # themes, game modes, franchises, alternative names: bare ids

    item = game_item(game)

    assert item.themes == []
    assert item.game_modes == []
    assert item.franchises == []
    assert item.alternative_names == []
    assert unexpanded_fields(game, GAME_EXPANDED_FIELDS) == [
        "themes",
        "game_modes",
        "franchises",
        "alternative_names",
        "external_games",
    ]


def test_game_without_cover_or_release_date(search: dict[int, dict[str, Any]]) -> None:
    item = game_item(search[66279])

    assert item.cover_url is None
    assert item.image_urls == []
    assert item.first_release_date is None
    assert item.platforms == []


def test_unexpanded_v3_record_maps_plain_fields_only() -> None:
    (game,) = recorded("games_7346_fields_all_v3era.json")

    item = game_item(game, "https://cdn.example/igdb/t_720p")

    assert item.name == "The Legend of Zelda: Breath of the Wild"
    assert item.first_release_date == "2017-03-03"
    assert item.cover_url is None  # "cover": 54903, no image_id to build a URL from
    assert item.genres == []
    assert item.developers == []
    assert {"genres", "cover", "involved_companies"} <= set(
        unexpanded_fields(game, GAME_EXPANDED_FIELDS)
    )


def test_cover_url_follows_the_image_base_setting(search: dict[int, dict[str, Any]]) -> None:
    item = game_item(search[46784], "https://cdn.example/igdb/t_720p/")

    assert item.cover_url == "https://cdn.example/igdb/t_720p/co1w4y.jpg"


def test_fully_expanded_record_from_the_fake_catalogue() -> None:
    game = project(
        next(t for t in templates() if t["id"] == 50654),
        parse_query(apicalypse(fields=GAME_FIELDS)).fields,
    )

    item = game_item(game)

    assert unexpanded_fields(game, GAME_EXPANDED_FIELDS) == []
    assert item.themes == ["Action", "Historical"]
    assert item.game_modes == ["Single player", "Multiplayer", "Co-operative", "Split screen"]
    assert item.franchises == ["Franchise 1173"]
    assert item.alternative_names == [
        "Sengoku Basara 3 Utage (30178)",
        "Sengoku Basara 3 Utage (30179)",
    ]
    assert item.external_ids[0] == {
        "source": "Steam",
        "category": 1,
        "uid": "36266",
        "url": "https://store.steampowered.com/app/36266",
    }


def test_external_ids_before_and_after_the_2024_schema() -> None:
    assert external_ids(
        [
            {"id": 1, "category": 5, "uid": "1207658924", "url": "https://www.gog.com/game/x"},
            {"id": 2, "external_game_source": {"id": 1, "name": "Steam"}, "uid": "292030"},
            {"id": 3, "category": 1},  # nothing to identify the game by
            17,
        ]
    ) == [
        {"source": None, "category": 5, "uid": "1207658924", "url": "https://www.gog.com/game/x"},
        {"source": "Steam", "category": None, "uid": "292030", "url": None},
    ]


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (979776000, "2001-01-18"),
        (-86400, "1969-12-31"),
        (-62135683200, None),  # IGDB's "no date" placeholder (year 0)
        (10**15, None),
        (None, None),
        ("979776000", None),
        (True, None),
    ],
)
def test_iso_date(timestamp: Any, expected: str | None) -> None:
    assert iso_date(timestamp) == expected


def test_iso_datetime() -> None:
    assert iso_datetime(1626175179) == "2021-07-13T11:19:39Z"
    assert iso_datetime(None) is None


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"id": 1}, True),
        ({"id": 0}, False),
        ({"id": "7"}, False),
        ({"id": True}, False),
        (7, False),
    ],
)
def test_valid_id(payload: Any, expected: bool) -> None:
    assert valid_id(payload) is expected


def test_apicalypse_queries_parse_as_igdb_reads_them() -> None:
    text = apicalypse(
        fields=["name", "cover.image_id"],
        where=["id > 10", "", "id <= 20"],
        sort="id asc",
        limit=500,
    )

    assert text == "fields name,cover.image_id; where id > 10 & id <= 20; sort id asc; limit 500;"
    query = parse_query(text)
    assert query.fields == [["name"], ["cover", "image_id"]]
    assert query.where == [("id", ">", 10), ("id", "<=", 20)]
    assert (query.sort, query.limit) == (("id", False), 500)
    assert count_query([]) == ""


def test_multiquery_holds_one_to_ten_queries() -> None:
    body = multiquery([("games/count", "count", count_query(["id > 0"]))])

    assert body == 'query games/count "count" { where id > 0; };'
    with pytest.raises(ValueError, match="1 to 10"):
        multiquery([("games", str(n), "fields id;") for n in range(11)])
    with pytest.raises(ValueError, match="1 to 10"):
        multiquery([])


@pytest.mark.parametrize(
    ("low", "high", "count", "max_ranges"),
    [(0, 350_000, 300_000, 24), (0, 1000, 1200, 24), (0, 7, 7000, 24), (100, 101, 1, 8)],
)
def test_plan_ranges_cover_every_id_once(low: int, high: int, count: int, max_ranges: int) -> None:
    ranges = plan_ranges(low, high, count, 500, max_ranges)

    assert 1 <= len(ranges) <= max_ranges
    assert ranges[0][0] == low
    assert ranges[-1][1] == high
    assert all(start < end for start, end in ranges)
    assert all(a[1] == b[0] for a, b in pairwise(ranges))


def test_plan_ranges_for_few_or_no_records() -> None:
    assert plan_ranges(0, 350_000, 120, 500, 24) == [(0, 350_000)]
    assert len(plan_ranges(0, 350_000, 1_001, 500, 24)) == 3
    assert plan_ranges(0, 350_000, 0, 500, 24) == []
    assert plan_ranges(0, 0, 5, 500, 24) == []


@pytest.mark.parametrize(
    ("name", "status", "expected"),
    [
        (
            "error_400_syntax_error.json",
            400,
            "Syntax Error: Expecting a STRING as input, surround your input with quotes "
            "starting at 'Diablo'",
        ),
        ("error_401_auth_failure.json", 401, "Authorization Failure. Have you tried:"),
    ],
)
def test_error_message_from_recorded_error_bodies(name: str, status: int, expected: str) -> None:
    body = (DATA / "igdb" / name).read_bytes()
    response = TextResponse("https://api.igdb.com/v4/games", status=status, body=body)

    assert error_message(response) == expected


def test_fake_400_has_the_recorded_shape() -> None:
    (recorded_error,) = recorded("error_400_syntax_error.json")
    (fake_error,) = json.loads(error_400("Unexpected input").body)

    assert fake_error.keys() == recorded_error.keys()
    assert fake_error["status"] == 400
