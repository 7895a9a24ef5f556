"""The read API over both stores, seeded by the real mappers from the recorded bodies."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from scrapy.settings import Settings

from contentcrawl.api.app import create_app
from contentcrawl.api.read_indexes import READ_MODELS, ensure_read_indexes
from contentcrawl.records import to_record
from contentcrawl.sources.tmdb import map_movie
from contentcrawl.store import Store
from contentcrawl.store.sqlite import SqliteStore
from spiders_tests.conftest import open_store_for
from spiders_tests.fakes.musicbrainz_samples import ED_SHEERAN, PERKELE, TOMBS
from spiders_tests.recorded_mirror import POSTER_PATH, TMDB_IMAGES, fight_club, seed_mirror


@pytest.fixture(scope="module")
def images_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    images = tmp_path_factory.mktemp("images")
    poster = images / POSTER_PATH
    poster.parent.mkdir(parents=True)
    poster.write_bytes(b"\xff\xd8\xff\xe0 a JPEG")
    return images


@pytest.fixture(scope="module", params=["sqlite", "mongo"])
def mirror(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    """One seeded mirror of each kind for the tests that only read it."""
    if request.param == "sqlite":
        settings = {"MONGO_URI": "", "SQLITE_PATH": str(tmp_path_factory.mktemp("api") / "s.db")}
    else:
        uri = request.getfixturevalue("mongo_uri")
        settings = {"MONGO_URI": uri, "MONGO_DATABASE": f"test_api_{uuid.uuid4().hex[:12]}"}
    store = open_store_for(settings)
    seed_mirror(store)
    yield store
    store.close()


@pytest.fixture(scope="module")
def client(mirror: Store, images_dir: Path) -> Iterator[TestClient]:
    """The API over a seeded mirror, once on SQLite and once on MongoDB, for reading."""
    app = create_app(mirror, Settings({"IMAGES_STORE": str(images_dir)}))
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def writable_client(store: Store, images_dir: Path) -> Iterator[TestClient]:
    """The API over a seeded mirror of this test's own (``store``), which it may change."""
    seed_mirror(store)
    app = create_app(store, Settings({"IMAGES_STORE": str(images_dir)}))
    with TestClient(app) as test_client:
        yield test_client


def ids(response: Any) -> list[Any]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def test_movies_filter_and_sort(client: TestClient) -> None:
    assert ids(client.get("/movies")) == ["550", "47964"]  # popularity, highest first
    assert ids(client.get("/movies", params={"year": 1999})) == ["550"]
    assert ids(client.get("/movies", params={"genre": "Thriller"})) == ["47964"]
    assert ids(client.get("/movies", params={"genre": "Western"})) == []
    assert ids(client.get("/movies", params={"language": "en", "status": "Released"})) == [
        "550",
        "47964",
    ]
    assert ids(client.get("/movies", params={"sort": "release_date"})) == ["47964", "550"]
    assert ids(client.get("/movies", params={"sort": "rating", "year": 2013})) == ["47964"]
    first = client.get("/movies").json()["items"][0]
    assert first["title"] == "Fight Club"
    assert "credits" not in first  # a list entry is a summary


def test_paging(client: TestClient) -> None:
    first = client.get("/games", params={"page_size": 3}).json()
    second = client.get("/games", params={"page_size": 3, "page": 2}).json()
    assert first["has_more"]
    assert len(first["items"]) == 3
    assert not {i["id"] for i in first["items"]} & {i["id"] for i in second["items"]}
    everything = client.get("/games", params={"page_size": 100}).json()
    assert not everything["has_more"]
    assert len(everything["items"]) == 10
    assert [i["id"] for i in everything["items"][:6]] == [
        i["id"] for i in first["items"] + second["items"]
    ]


@pytest.mark.parametrize(
    ("url", "params", "where", "message"),
    [
        ("/movies", {"page_size": 101}, ["query", "page_size"], "less than or equal to 100"),
        ("/movies", {"page": 0}, ["query", "page"], "greater than or equal to 1"),
        ("/movies", {"page": 101, "page_size": 100}, ["query", "page"], "may not exceed 10000"),
        ("/movies", {"year": "nineteen"}, ["query", "year"], "valid integer"),
        ("/movies", {"sort": "budget"}, ["query", "sort"], "'popularity', 'rating'"),
        ("/movies", {"colour": "red"}, ["query", "colour"], "Extra inputs are not permitted"),
        ("/movies/search", {}, ["query", "query"], "Field required"),
        ("/movies/search", {"query": "?!"}, ["query", "query"], "at least one letter or digit"),
        ("/movies/fight-club", {}, ["path", "record_id"], "should match pattern"),
        ("/works/OL155455M", {}, ["path", "record_id"], "should match pattern"),
        ("/artists/tombs/albums", {}, ["path", "record_id"], "should match pattern"),
    ],
)
def test_bad_parameters_are_422_with_the_reason(
    client: TestClient, url: str, params: dict[str, Any], where: list[str], message: str
) -> None:
    response = client.get(url, params=params)
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert [error["loc"] for error in errors] == [where]
    assert message in errors[0]["msg"]


@pytest.mark.parametrize(
    "url",
    [
        "/movies/9",
        "/series/9/credits",
        "/people/9",
        "/games/9",
        "/books/OL1M",
        "/authors/OL1A",
        f"/artists/{TOMBS[:-1]}0",
        f"/artists/{TOMBS[:-1]}0/albums",
    ],
)
def test_unknown_ids_are_404(client: TestClient, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 404
    assert "in the mirror" in response.json()["detail"]


def test_search_by_title_words_and_prefixes(client: TestClient) -> None:
    assert ids(client.get("/movies/search", params={"query": "FIGHT"})) == ["550"]
    assert ids(client.get("/movies/search", params={"query": "die ha"})) == ["47964"]
    assert ids(client.get("/movies/search", params={"query": "good day fight"})) == []
    assert ids(client.get("/series/search", params={"query": "thrones"})) == ["1399"]
    # Most rated first (IGDB's stand-in for popularity), unrated last, ties by id.
    sengoku = ids(client.get("/games/search", params={"query": "sengoku"}))
    assert sengoku == ["7455", "46784", "135721", "104269", "66279", "50654", "43053", "43052"]
    assert ids(client.get("/people/search", params={"query": "willis"})) == ["62"]
    assert ids(client.get("/authors/search", params={"query": "gordon dickson"})) == ["OL25176A"]


def test_book_search_by_title_author_and_isbn(client: TestClient) -> None:
    dorsai = ["OL8131917M"]
    assert ids(client.get("/books/search", params={"query": "dorsai"})) == dorsai
    assert ids(client.get("/books/search", params={"query": "Dickson"})) == dorsai
    assert ids(client.get("/books/search", params={"query": "0-87997-342-0"})) == dorsai
    assert ids(client.get("/books/search", params={"query": "978 0879973421"})) == dorsai
    assert ids(client.get("/books/search", params={"query": "9780000000000"})) == []


def test_movie_detail_credits_and_local_poster(client: TestClient) -> None:
    movie = client.get("/movies/550").json()
    assert movie["title"] == "Fight Club"
    assert movie["_meta"]["source"] == "tmdb"
    assert "credits" not in movie
    assert movie["image"] == {"url": f"/images/{POSTER_PATH}", "local": True}
    assert client.get(movie["image"]["url"]).content.startswith(b"\xff\xd8")
    people = client.get("/movies/550/credits").json()
    cast = {entry["name"]: entry for entry in people["cast"]}
    assert cast["Brad Pitt"]["in_mirror"] is True
    assert cast["Brad Pitt"]["character"] == "Tyler Durden"
    assert cast["Edward Norton"]["in_mirror"] is False
    assert any(entry["job"] == "Director" for entry in people["crew"])
    # Not downloaded: the remote URL.
    other = client.get("/movies/47964").json()["image"]
    assert other == {"url": f"{TMDB_IMAGES}/c2SQMd00CCGTiDxGXVqA2J9lmzF.jpg", "local": False}


def test_person_with_credits_linked_to_the_mirror(client: TestClient) -> None:
    person = client.get("/people/62").json()
    assert person["name"] == "Bruce Willis"
    movies = {entry["id"]: entry for entry in person["movie_credits"]["cast"]}
    assert movies[47964]["in_mirror"] is True
    assert movies[47964]["character"] == "John McClane"
    assert sum(entry["in_mirror"] for entry in movies.values()) == 1


def test_series_and_game_credits(client: TestClient) -> None:
    cast = client.get("/series/1396/credits").json()["cast"]
    assert "Bryan Cranston" in {entry["name"] for entry in cast}
    companies = client.get("/games/46784/credits").json()["companies"]
    assert companies[0]["name"] == "D4 Enterprise"
    assert companies[0]["publisher"] is True


def test_books_works_and_authors_link_each_other(client: TestClient) -> None:
    book = client.get("/books/OL8131917M").json()
    assert [work["id"] for work in book["work"]] == ["OL155455W"]
    assert [author["name"] for author in book["authors"]] == ["Gordon R. Dickson"]
    work = client.get("/works/OL155455W").json()
    assert [edition["id"] for edition in work["editions"]] == ["OL8131917M"]
    assert [author["id"] for author in work["authors"]] == ["OL25176A"]
    author = client.get("/authors/OL25176A").json()
    assert [item["id"] for item in author["works"]] == ["OL155455W"]
    assert author["image"]["url"].endswith("/id/11413394-L.jpg")


def test_artists_and_their_albums(client: TestClient) -> None:
    assert ids(client.get("/artists")) == [ED_SHEERAN, PERKELE, TOMBS]  # by name
    assert ids(client.get("/artists", params={"country": "US"})) == [TOMBS]
    assert ids(client.get("/artists/search", params={"query": "perk"})) == [PERKELE]
    albums = client.get(f"/artists/{TOMBS}/albums", params={"page_size": 2}).json()
    assert [album["title"] for album in albums["items"]] == [
        "Under Sullen Skies",
        "Monarchy of Shadows",
    ]
    assert albums["has_more"]
    assert client.get(f"/artists/{ED_SHEERAN}/albums").json()["items"] == []
    album = client.get(f"/albums/{albums['items'][0]['id']}").json()
    assert [artist["name"] for artist in album["artists"]] == ["Tombs"]


def test_genres_and_stats(client: TestClient) -> None:
    genres = client.get("/genres").json()
    assert {"name": "Drama", "count": 2} in genres["series"]
    assert genres["movies"] == client.get("/movies/genres").json()
    assert genres["games"][0] == {"name": "Hack and slash/Beat 'em up", "count": 4}
    stats = client.get("/stats").json()
    assert stats["movies"]["count"] == 2
    assert stats["books"]["count"] == 171
    assert stats["albums"]["count"] == 27
    assert stats["movies"]["last_updated"].endswith("Z")
    assert stats["keywords"] == {"count": 0, "last_updated": None}


def test_writes_after_startup_are_found_and_deletions_hidden(
    writable_client: TestClient, store: Store
) -> None:
    client = writable_client
    renamed = map_movie(fight_club() | {"title": "Fight Club Redux"}, TMDB_IMAGES)
    store.upsert_many("movies", [to_record(renamed)])
    assert ids(client.get("/movies/search", params={"query": "redux"})) == ["550"]
    store.mark_deleted("movies", [550])
    assert ids(client.get("/movies/search", params={"query": "fight"})) == []
    assert ids(client.get("/movies", params={"year": 1999})) == []
    response = client.get("/movies/550")
    assert response.status_code == 410
    assert "deleted at the source" in response.json()["detail"]
    assert client.get("/movies/genres").json() == [
        {"name": "Action", "count": 1},
        {"name": "Thriller", "count": 1},
    ]


def test_openapi_documents_every_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for route in (
        "/movies",
        "/movies/search",
        "/movies/{record_id}",
        "/movies/{record_id}/credits",
        "/people/{record_id}",
        "/genres",
        "/series/{record_id}/credits",
        "/games/search",
        "/artists/{record_id}/albums",
        "/books/search",
        "/authors/{record_id}",
        "/works/{record_id}",
        "/stats",
    ):
        assert route in paths
    parameters = {p["name"] for p in paths["/movies"]["get"]["parameters"]}
    assert parameters == {"page", "page_size", "sort", "year", "genre", "language", "status"}


def test_browse_pages_render_links(client: TestClient) -> None:
    home = client.get("/")
    assert 'name="q"' in home.text
    results = client.get("/browse/search", params={"q": "dorsai"})
    assert 'href="/browse/books/OL8131917M"' in results.text
    assert "1977 · Gordon R. Dickson" in results.text
    escaped = client.get("/browse/search", params={"q": "<b>dorsai</b>"}).text
    assert "&lt;b&gt;dorsai&lt;/b&gt;" in escaped
    assert "<b>dorsai" not in escaped
    assert 'href="/browse/works/OL155455W"' in results.text
    movie = client.get("/browse/movies/550").text
    assert f'src="/images/{POSTER_PATH}"' in movie
    assert '<a href="/browse/people/287">Brad Pitt</a>' in movie
    assert "Edward Norton" in movie
    assert 'href="/browse/people/819"' not in movie  # not in the mirror: no dead link
    missing = client.get("/browse/movies/9")
    assert missing.status_code == 404
    assert "no movie 9 in the mirror" in missing.text


# -- the read indexes ------------------------------------------------------------------------


def plan(store: SqliteStore, sql: str) -> str:
    return " | ".join(row[3] for row in store.connection.execute(f"EXPLAIN QUERY PLAN {sql}"))


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "store.sqlite3")
    opened.open()
    yield opened
    opened.close()


def test_sqlite_queries_use_the_read_indexes(sqlite_store: SqliteStore) -> None:
    ensure_read_indexes(sqlite_store)
    listing = plan(
        sqlite_store,
        "SELECT key FROM movies WHERE deleted_at IS NULL "
        "AND json_extract(doc, '$.release_date') >= '1999' "
        "AND json_extract(doc, '$.release_date') < '2000' "
        "ORDER BY json_extract(doc, '$.popularity') DESC LIMIT 20",
    )
    assert "USING INDEX movies__release_date" in listing or "movies__popularity" in listing
    by_isbn = plan(
        sqlite_store,
        "SELECT key FROM books WHERE key IN "
        "(SELECT key FROM books__terms WHERE name = 'isbn' AND term = '0879973420')",
    )
    assert "books__terms" in by_isbn
    assert "SCAN books" not in by_isbn
    search = plan(sqlite_store, "SELECT rowid FROM movies__search WHERE movies__search MATCH 'x*'")
    assert "VIRTUAL TABLE INDEX" in search


def test_sqlite_read_indexes_fill_from_existing_rows_and_rebuild_on_change(
    sqlite_store: SqliteStore,
) -> None:
    seed_mirror(sqlite_store)
    ensure_read_indexes(sqlite_store)
    connection = sqlite_store.connection
    count = "SELECT COUNT(*) FROM books__search"
    assert connection.execute(count).fetchone()[0] == 171
    # A changed definition (an older version of the code) is dropped and built again.
    connection.execute("UPDATE read_indexes SET definition = 'old' WHERE collection = 'books'")
    connection.execute("DELETE FROM books__search")
    ensure_read_indexes(sqlite_store)
    assert connection.execute(count).fetchone()[0] == 171
    ensure_read_indexes(sqlite_store)  # unchanged: nothing rebuilt, nothing lost
    assert connection.execute(count).fetchone()[0] == 171


def test_mongo_read_indexes(mongo_uri: str) -> None:
    from contentcrawl.store.mongo import MongoStore

    store = MongoStore(mongo_uri, "test_read_indexes")
    store.open()
    try:
        ensure_read_indexes(store)
        ensure_read_indexes(store)  # idempotent
        keys = [list(dict(i["key"])) for i in store.db["movies"].index_information().values()]
        assert ["genres.name", "tmdb_id"] in keys
        assert ["popularity", "tmdb_id"] in keys
        assert ["title"] in keys
        books = [list(dict(i["key"])) for i in store.db["books"].index_information().values()]
        assert ["isbn_13", "ol_key"] in books
    finally:
        store.db.client.drop_database("test_read_indexes")
        store.close()


def test_every_model_names_known_fields() -> None:
    from dataclasses import fields

    from contentcrawl.items import ITEM_CLASSES

    declared = {cls.collection: {f.name for f in fields(cls)} for cls in ITEM_CLASSES}
    for model in READ_MODELS.values():
        paths = [*model.search, model.rank.path, *(s.path for s in model.sorts)]
        paths += [path for item in model.filters for path in item.paths]
        for path in paths:
            assert path.split("[]")[0] in declared[model.collection], (model.collection, path)
