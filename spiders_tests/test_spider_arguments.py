"""Spider arguments: an unknown or bad ``-a`` is refused in one line, before the crawl."""

from __future__ import annotations

from pathlib import Path

import pytest
from scrapy.spiderloader import SpiderLoader
from scrapy.utils.project import get_project_settings

from contentcrawl.sources.base import TEXT, ContentSpider, SpiderArgumentError
from contentcrawl.verdict import EXIT_USAGE
from spiders_tests.crawling import child_env, run_scrapy

LOADER = SpiderLoader.from_settings(get_project_settings())
SPIDERS = {name: LOADER.load(name) for name in LOADER.list()}

# Bad values of every argument that does not take any text; a new argument must add its own.
BAD_VALUES = {
    "limit": ["abc", "0", "-5", "1.5"],
    "mode": ["bogus"],
    "ids": ["550,abc", "0"],
    "ids_file": ["/no/such/ids.txt"],
    "include_adult": ["maybe"],
    "include_video": ["2"],
    "episodes": ["yes please"],
    "min_popularity": ["high", "-1", "nan"],
    "older_than_days": ["-1", "a week"],
    "pages": ["0", "501", "x"],
    "min_budget": ["-1", "1e6"],
    "min_revenue": ["lots"],
    "require": ["genres,budget"],
    "entities": ["artist,label"],
    "force": ["maybe"],
    "rework": ["2"],
}


def bad_cases() -> list[tuple[str, str, str]]:
    return [
        (spider, name, value)
        for spider, spidercls in SPIDERS.items()
        for name, argument in spidercls.known_arguments().items()
        if argument is not TEXT
        for value in BAD_VALUES[name]
    ]


def test_every_spider_is_a_content_spider_with_a_limit() -> None:
    assert len(SPIDERS) == 12
    for spidercls in SPIDERS.values():
        assert issubclass(spidercls, ContentSpider)
        assert "limit" in spidercls.known_arguments()


@pytest.mark.parametrize("spider", sorted(SPIDERS))
def test_an_unknown_argument_is_refused_with_the_known_ones(spider: str) -> None:
    spidercls = SPIDERS[spider]
    known = ", ".join(sorted(spidercls.known_arguments()))

    with pytest.raises(SpiderArgumentError) as refused:
        spidercls(limt="5")

    assert str(refused.value) == (
        f"unknown argument 'limt' for {spider} (did you mean 'limit'?); known: {known}"
    )


@pytest.mark.parametrize(("spider", "name", "value"), bad_cases())
def test_a_bad_value_is_refused_naming_what_is_allowed(spider: str, name: str, value: str) -> None:
    with pytest.raises(SpiderArgumentError) as refused:
        SPIDERS[spider](**{name: value})

    message = str(refused.value)
    assert message.startswith(f"bad argument {name}={value!r} for {spider}: ")
    assert "\n" not in message


@pytest.mark.parametrize("spider", sorted(SPIDERS))
def test_scrapyd_job_arguments_are_accepted(spider: str) -> None:
    spider_object = SPIDERS[spider](_job="abc123", _version="r7", setting="X=1", limit="3")

    assert spider_object.limit == 3
    assert spider_object.arguments["_job"] == "abc123"


def test_good_values_are_parsed(tmp_path: Path) -> None:
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("# wanted\n603\n604, 605\n")

    movies = SPIDERS["tmdb_movies"](
        ids="550,551", ids_file=str(ids_file), include_adult="yes", pages="3", require="cast"
    )

    assert movies.ids == [550, 551, 603, 604, 605]
    assert (movies.mode, movies.include_adult, movies.list_pages) == ("ids", True, 3)
    series = SPIDERS["tmdb_series"](episodes="off", mode="LISTS")
    assert (series.episodes, series.mode) == (False, "lists")
    artists = SPIDERS["musicbrainz_artists"](entities="artist", mode="")
    assert (artists.entities, artists.mode) == (["artist"], "api")


@pytest.mark.parametrize(
    ("spider", "arguments", "problem"),
    [
        ("tmdb_keywords", {"mode": "changes"}, "tmdb_keywords has no TMDB changes feed"),
        ("tmdb_companies", {"mode": "lists"}, "tmdb_companies has no TMDB lists"),
        ("tmdb_movies", {"mode": "ids"}, "mode=ids needs -a ids=550,551"),
        ("musicbrainz_artists", {"mode": "api", "dump": "artist.tar.xz"}, "mode=dump"),
    ],
)
def test_arguments_that_do_not_go_together_are_refused(
    spider: str, arguments: dict[str, str], problem: str
) -> None:
    with pytest.raises(SpiderArgumentError, match=problem):
        SPIDERS[spider](**arguments)


def test_scrapy_crawl_refuses_a_bad_argument_in_one_line_with_exit_code_2(
    tmp_path: Path,
) -> None:
    env = child_env(tmp_path / "store.sqlite3")

    unknown = run_scrapy("crawl", "openlibrary_books", "-a", "dmup=x", cwd=tmp_path, env=env)
    bad = run_scrapy("crawl", "tmdb_movies", "-a", "limit=-5", cwd=tmp_path, env=env)
    no_spider = run_scrapy("crawl", "openlibrary_bookz", cwd=tmp_path, env=env)

    for done in (unknown, bad, no_spider):
        assert done.returncode == EXIT_USAGE
        assert "Traceback" not in done.stderr
        assert "Task exception was never retrieved" not in done.stderr
        assert "Spider opened" not in done.stderr
        # Refused before Scrapy's start-up banner: the one line is all the operator sees.
        assert len(done.stderr.splitlines()) == 1, done.stderr
    [line] = [line for line in unknown.stderr.splitlines() if " ERROR: " in line]
    assert line.endswith(
        "[contentcrawl.commands.crawl] ERROR: unknown argument 'dmup' for openlibrary_books "
        "(did you mean 'dump'?); known: dump, force, limit, rework"
    )
    [line] = [line for line in bad.stderr.splitlines() if " ERROR: " in line]
    assert line.endswith(
        "ERROR: bad argument limit='-5' for tmdb_movies: a whole number of 1 or more"
    )
    assert "Unknown spider 'openlibrary_bookz' (did you mean 'openlibrary_books'?)" in (
        no_spider.stderr
    )
    assert not (tmp_path / "store.sqlite3").exists()
