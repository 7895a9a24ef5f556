"""The item schema's declared types, enforced at validation on real recorded bodies.

TMDB has sent numbers as strings (``"popularity": "12.5"``): stored as they came, sorting
and filtering would mix strings and numbers. Validation gives each field its declared type,
counting what it coerced and what it could not, and both stores hold the same record.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f

from contentcrawl.items import MovieItem, SeriesItem
from contentcrawl.sources.tmdb import map_movie, map_series
from contentcrawl.validation import coerce_scalar, field_types
from spiders_tests.conftest import read_store
from spiders_tests.crawling import crawl
from spiders_tests.fakes.tmdb import load, movie_550
from spiders_tests.pipeline_crawls import ItemsSpider, validated

IMAGES = "https://image.tmdb.org/t/p/w500"


def stringly_movie() -> MovieItem:
    """The real movie 550, its numbers sent as strings the way TMDB once sent them."""
    payload = movie_550()
    for name in ("popularity", "vote_average", "vote_count", "budget", "revenue", "runtime"):
        payload[name] = str(payload[name])
    payload["adult"] = "false"
    return map_movie(payload, IMAGES)


def test_numeric_strings_become_the_declared_numbers_and_are_counted() -> None:
    original = movie_550()
    movie, stats = validated(stringly_movie())

    assert movie.popularity == float(original["popularity"])
    assert type(movie.popularity) is float
    assert (movie.vote_count, movie.budget, movie.revenue, movie.runtime) == (
        original["vote_count"],
        original["budget"],
        original["revenue"],
        original["runtime"],
    )
    assert type(movie.vote_count) is int
    assert movie.adult is False
    # popularity, vote_average, vote_count, budget, revenue, runtime and adult.
    assert stats.get_value("validation/movies/coerced") == 7
    assert stats.get_value("validation/movies/uncoercible") is None


def test_a_whole_number_for_a_float_field_is_the_same_number_not_a_coercion() -> None:
    payload = load("tv_1399_2024.json")
    payload["vote_average"] = 8
    series, stats = validated(map_series(payload, IMAGES))

    assert type(series.vote_average) is float
    assert series.vote_average == 8.0
    assert stats.get_value("validation/series/coerced") is None


def test_values_that_cannot_be_coerced_are_left_empty_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    payload = load("tv_1399_2024.json")
    payload["popularity"] = "n/a"
    payload["number_of_seasons"] = "8.5"
    payload["in_production"] = "maybe"
    payload["origin_country"] = ["US", {"iso": "GB"}, 7]
    payload["homepage"] = ["https://example.org"]
    caplog.set_level(logging.DEBUG)

    series, stats = validated(map_series(payload, IMAGES))

    assert (series.popularity, series.number_of_seasons, series.in_production) == (
        None,
        None,
        None,
    )
    assert series.homepage is None
    # The list keeps what it can: a number where a country code belongs becomes its text.
    assert series.origin_country == ["US", "7"]
    assert series.name == "Game of Thrones"
    assert stats.get_value("validation/series/uncoercible") == 5
    assert stats.get_value("validation/series/coerced") == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "left empty" in warnings[0].getMessage()


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        ("12.5", float, 12.5),
        (" 7 ", int, 7),
        ("-3", int, -3),
        (12.0, int, 12),
        ("1e3", float, 1000.0),
        ("TRUE", bool, True),
        (550, str, "550"),
    ],
)
def test_coerce_scalar(value: Any, kind: type, expected: Any) -> None:
    coerced = coerce_scalar(value, kind)
    assert coerced == expected
    assert type(coerced) is kind


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("n/a", float),
        ("NaN", float),
        ("Infinity", float),
        (float("nan"), float),
        ("12.5", int),
        (True, int),
        (1, bool),
        ("yes", bool),
        ({"value": 1}, str),
        (None, str),
    ],
)
def test_coerce_scalar_refuses(value: Any, kind: type) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the messages vary by cause
        coerce_scalar(value, kind)


def test_every_declared_field_of_every_item_has_an_enforced_type() -> None:
    # A field typed so that validation cannot enforce it (a union of two kinds) would pass
    # any value to the store unchecked.
    for item_class in (MovieItem, SeriesItem):
        declared = {spec.name for spec in field_types(item_class)}
        assert {"popularity", "vote_average", "vote_count", "adult"} <= declared


@deferred_f_from_coro_f
async def test_both_stores_hold_the_same_typed_record(store_settings: dict[str, Any]) -> None:
    original = movie_550()
    crawler = await crawl(ItemsSpider, store_settings, items=[stringly_movie()])
    assert crawler.stats.get_value("store/movies/inserted") == 1

    stored = read_store(store_settings, lambda store: store.get("movies", 550))

    assert stored is not None
    typed = {name: stored[name] for name in ("popularity", "vote_count", "budget", "adult")}
    assert typed == {
        "popularity": float(original["popularity"]),
        "vote_count": original["vote_count"],
        "budget": original["budget"],
        "adult": False,
    }
    assert [type(value) for value in typed.values()] == [float, int, int, bool]
