"""The store contract, run against both implementations (SQLite file, MongoDB wire server)."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest
from bson import ObjectId

from contentcrawl.api.queries.mongo import MongoReadQueries
from contentcrawl.store import COLLECTION_KEYS, Record, Store, StoreError
from contentcrawl.store.base import UnknownCollectionError, content_hash
from contentcrawl.store.mongo import MongoStore
from spiders_tests.conftest import open_store_for


def movie(tmdb_id: int, **fields: Any) -> Record:
    return Record({"tmdb_id": tmdb_id, "title": f"Movie {tmdb_id}", **fields}, "tmdb")


def test_insert_then_get_carries_meta(store: Store) -> None:
    result = store.upsert_many("movies", [movie(1), movie(2)])
    assert (result.inserted, result.updated, result.unchanged) == (2, 0, 0)
    stored = store.get("movies", 1)
    assert stored is not None
    assert stored["title"] == "Movie 1"
    meta = stored["_meta"]
    assert meta["source"] == "tmdb"
    assert meta["hash"] == content_hash({"tmdb_id": 1, "title": "Movie 1"})
    assert meta["first_seen"] == meta["updated_at"]
    assert meta["fetched_at"]
    assert meta["revision"] is None
    assert store.count("movies") == 2
    assert store.get("movies", 3) is None


def test_unchanged_rerun_writes_nothing(store: Store) -> None:
    store.upsert_many("movies", [movie(i) for i in range(50)])
    before = {doc["tmdb_id"]: doc for doc in store.iter_documents("movies")}
    result = store.upsert_many("movies", [movie(i) for i in range(50)])
    assert (result.inserted, result.updated, result.unchanged) == (0, 0, 50)
    assert result.written == 0
    after = {doc["tmdb_id"]: doc for doc in store.iter_documents("movies")}
    assert after == before


def test_one_changed_record_is_one_update_keeping_first_seen(store: Store) -> None:
    store.upsert_many("movies", [movie(i) for i in range(5)])
    first = store.get("movies", 3)
    assert first is not None
    records = [movie(i) for i in range(5)]
    records[3] = movie(3, title="Renamed")
    result = store.upsert_many("movies", records)
    assert (result.inserted, result.updated, result.unchanged) == (0, 1, 4)
    changed = store.get("movies", 3)
    assert changed is not None
    assert changed["title"] == "Renamed"
    assert changed["_meta"]["first_seen"] == first["_meta"]["first_seen"]
    assert changed["_meta"]["hash"] != first["_meta"]["hash"]


def test_removed_field_does_not_linger(store: Store) -> None:
    store.upsert_many("movies", [movie(1, tagline="Old tagline")])
    store.upsert_many("movies", [movie(1)])
    stored = store.get("movies", 1)
    assert stored is not None
    assert "tagline" not in stored


def test_revision_change_alone_is_written_but_content_date_kept(store: Store) -> None:
    book = {"ol_key": "/books/OL1M", "title": "Dune"}
    store.upsert_many("books", [Record(book, "openlibrary", revision=3)])
    first = store.get("books", "/books/OL1M")
    assert store.upsert_many("books", [Record(book, "openlibrary", revision=3)]).unchanged == 1
    result = store.upsert_many("books", [Record(book, "openlibrary", revision=4)])
    assert result.updated == 1
    stored = store.get("books", "/books/OL1M")
    assert first is not None
    assert stored is not None
    assert stored["_meta"]["revision"] == 4
    assert stored["_meta"]["updated_at"] == first["_meta"]["updated_at"]


def test_record_without_revision_of_the_stored_content_keeps_the_stored_revision(
    store: Store,
) -> None:
    """An API fetch (no revision) of what a dump line stored writes nothing: the stored
    revision still names that line. Other content is written, without a revision."""
    artist = {"mbid": "mbid-1", "name": "Tombs"}
    store.upsert_many("artists", [Record(artist, "musicbrainz", revision=2**62)])
    first = store.get("artists", "mbid-1")
    assert store.upsert_many("artists", [Record(artist, "musicbrainz")]).unchanged == 1
    assert store.get("artists", "mbid-1") == first
    assert store.unchanged_keys("artists", {"mbid-1": 2**62}) == {"mbid-1"}

    renamed = {**artist, "name": "Tombs (US)"}
    assert store.upsert_many("artists", [Record(renamed, "musicbrainz")]).updated == 1
    stored = store.get("artists", "mbid-1")
    assert stored is not None
    assert stored["_meta"]["revision"] is None
    assert store.unchanged_keys("artists", {"mbid-1": 2**62}) == set()
    # The dump line again: its revision is written back.
    result = store.upsert_many("artists", [Record(artist, "musicbrainz", revision=2**62)])
    assert result.updated == 1
    assert store.unchanged_keys("artists", {"mbid-1": 2**62}) == {"mbid-1"}


def test_key_given_twice_in_a_batch_keeps_the_last(store: Store) -> None:
    result = store.upsert_many("movies", [movie(7, title="A"), movie(7, title="B")])
    assert (result.inserted, result.updated) == (1, 1)
    assert store.count("movies") == 1
    stored = store.get("movies", 7)
    assert stored is not None
    assert stored["title"] == "B"


ODD = {
    "tmdb_id": 99,
    "title": "Amélie — 天使 \U0001f3ac \u200b zero-width, RTL \u05e9\u05dc\u05d5\u05dd",
    "nested": [[1, [2, [3, {"deep": ["x", None, True, 1.5, -0.0]}]]], [], {}],
    "quotes": 'it\'s "quoted" \\ backslash \n newline \t tab',
    "big": 2**53 + 1,
    "float": 0.1 + 0.2,
    "empty": "",
}


def test_odd_unicode_and_nesting_round_trip_exactly(store: Store) -> None:
    store.upsert_many("movies", [Record(dict(ODD), "tmdb")])
    stored = store.get("movies", 99)
    assert stored is not None
    stored.pop("_meta")
    assert stored == ODD
    assert store.upsert_many("movies", [Record(dict(ODD), "tmdb")]).unchanged == 1


def test_integer_beyond_64_bits_is_stored_and_rereads_unchanged(store: Store) -> None:
    huge = 10**30
    result = store.upsert_many("books", [book_with_pages(huge), book_with_pages(7, "OL2M")])
    assert result.inserted == 2
    stored = store.get("books", "/books/OL1M")
    assert stored is not None
    # SQLite keeps JSON's number; BSON has no such integer, so MongoDB keeps its text.
    expected = str(huge) if isinstance(store, MongoStore) else huge
    assert stored["number_of_pages"] == expected
    assert (store.get("books", "/books/OL2M") or {})["number_of_pages"] == 7
    again = store.upsert_many("books", [book_with_pages(huge)])
    assert again.unchanged == 1


def book_with_pages(pages: int, key: str = "OL1M") -> Record:
    content = {"ol_key": f"/books/{key}", "title": "Long", "number_of_pages": pages}
    return Record(content, "openlibrary")


def test_fetched_times_of_stored_records_in_one_call(store: Store) -> None:
    store.upsert_many(
        "movies",
        [
            Record({"tmdb_id": 1, "title": "One"}, "tmdb", fetched_at="2026-01-01T00:00:00Z"),
            Record({"tmdb_id": 2, "title": "Two"}, "tmdb", fetched_at="2026-02-01T00:00:00Z"),
        ],
    )
    assert store.fetched_times("movies", [1, 2, 3]) == {
        1: "2026-01-01T00:00:00Z",
        2: "2026-02-01T00:00:00Z",
    }
    assert store.fetched_times("movies", []) == {}


def test_existing_keys_are_the_stored_ones_flagged_deleted_or_not(store: Store) -> None:
    store.upsert_many("movies", [movie(1), movie(2), movie(3)])
    store.mark_deleted("movies", [2])

    assert store.existing_keys("movies", [1, 2, 4]) == {1, 2}
    assert store.existing_keys("movies", []) == set()
    with pytest.raises(UnknownCollectionError):
        store.existing_keys("films", [1])


def test_hash_ignores_key_order() -> None:
    assert content_hash({"a": 1, "b": {"x": 1, "y": 2}}) == content_hash(
        {"b": {"y": 2, "x": 1}, "a": 1}
    )


@pytest.mark.parametrize("collection", sorted(COLLECTION_KEYS))
def test_every_collection_keys_on_its_source_id(store: Store, collection: str) -> None:
    key_field = COLLECTION_KEYS[collection]
    key: Any = {"tmdb_id": 5, "igdb_id": 5, "mbid": "b8a7c51f-362c-4dcb-a259-bc6e0095f0a6"}.get(
        key_field, "/works/OL5W"
    )
    store.upsert_many(collection, [Record({key_field: key, "name": "x"}, "test")])
    store.upsert_many(collection, [Record({key_field: key, "name": "y"}, "test")])
    assert store.count(collection) == 1
    stored = store.get(collection, key)
    assert stored is not None
    assert stored["name"] == "y"


def test_unknown_collection_is_a_clear_error(store: Store) -> None:
    with pytest.raises(UnknownCollectionError, match="unknown collection 'films'"):
        store.upsert_many("films", [movie(1)])


def test_sync_state_round_trips_and_replaces(store: Store) -> None:
    assert store.get_state("tmdb_movies/changes") is None
    store.set_state("tmdb_movies/changes", {"last_sync": "2026-11-01", "pages": [1, 2]})
    store.set_state("tmdb_movies/changes", {"last_sync": "2026-11-02"})
    assert store.get_state("tmdb_movies/changes") == {"last_sync": "2026-11-02"}


def test_last_updated_and_iteration(store: Store) -> None:
    assert store.last_updated("movies") is None
    store.upsert_many("movies", [movie(i) for i in (3, 1, 2)])
    assert store.last_updated("movies") is not None
    assert sorted(doc["tmdb_id"] for doc in store.iter_documents("movies")) == [1, 2, 3]


def test_unique_key_holds_under_concurrent_batches(store_settings: dict[str, Any]) -> None:
    """Four writers with their own connections upsert overlapping keys at the same time."""
    writers = [open_store_for(store_settings) for _ in range(4)]
    barrier = threading.Barrier(len(writers))
    errors: list[BaseException] = []

    def write(writer: Store, offset: int) -> None:
        try:
            barrier.wait()
            for start in range(0, 200, 50):
                batch = [movie(i, writer=offset) for i in range(start, start + 50)]
                writer.upsert_many("movies", batch)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=write, args=(writer, n)) for n, writer in enumerate(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        reader = writers[0]
        assert reader.count("movies") == 200
        keys = [doc["tmdb_id"] for doc in reader.iter_documents("movies")]
        assert sorted(keys) == list(range(200))
    finally:
        for writer in writers:
            writer.close()


def test_unreachable_mongo_is_a_clear_error_without_the_password() -> None:
    store = MongoStore("mongodb://user:hunter2@127.0.0.1:9/?serverSelectionTimeoutMS=300", "x")
    with pytest.raises(StoreError) as raised:
        store.open()
    assert "hunter2" not in str(raised.value)
    assert "user:***@127.0.0.1:9" in str(raised.value)


def test_mark_deleted_flags_and_a_comeback_clears_it(store: Store) -> None:
    store.upsert_many("movies", [movie(i) for i in range(1, 4)])
    assert store.mark_deleted("movies", [2, 3, 404]) == 2
    assert store.mark_deleted("movies", [2]) == 0  # already flagged
    flagged = store.get("movies", 2)
    assert flagged is not None
    assert flagged["_meta"]["deleted_at"]
    assert flagged["title"] == "Movie 2"
    unflagged = store.get("movies", 1)
    assert unflagged is not None
    assert "deleted_at" not in unflagged["_meta"]
    # The source brings record 2 back unchanged: it is written again, without the flag.
    result = store.upsert_many("movies", [movie(2), movie(1)])
    assert (result.updated, result.unchanged) == (1, 1)
    back = store.get("movies", 2)
    assert back is not None
    assert "deleted_at" not in back["_meta"]
    assert back["_meta"]["first_seen"] == flagged["_meta"]["first_seen"]
    assert store.upsert_many("movies", [movie(2)]).unchanged == 1


def test_lookups_of_many_keys_answer_for_each_key(store: Store) -> None:
    """More keys than a batch, in no order, stored or not, flagged deleted or not."""
    books = [
        Record(
            {"ol_key": f"/books/OL{n}M", "title": f"Book {n}"},
            "openlibrary",
            fetched_at=f"2026-01-01T00:00:{n % 60:02d}Z",
            revision=n % 7 or None,
        )
        for n in range(1200)
    ]
    assert store.upsert_many("books", books).inserted == 1200
    deleted = [f"/books/OL{n}M" for n in range(0, 1200, 100)]
    assert store.mark_deleted("books", deleted) == 12
    keys = [f"/books/OL{n}M" for n in range(1500)]
    random.Random(17).shuffle(keys)

    assert store.existing_keys("books", keys) == {book.content["ol_key"] for book in books}
    # Each key asked at its stored revision, and at another one.
    asked = {key: int(key[len("/books/OL") : -1]) % 7 for key in keys}
    assert store.unchanged_keys("books", asked) == {
        book.content["ol_key"]
        for book in books
        if book.content["ol_key"] not in deleted and book.revision is not None
    }
    assert store.unchanged_keys("books", dict.fromkeys(keys, 9)) == set()
    assert store.fetched_times("books", keys) == {
        book.content["ol_key"]: book.fetched_at for book in books
    }
    again = store.upsert_many("books", books)
    assert (again.inserted, again.updated, again.unchanged) == (0, 12, 1188)


def store_digest_artists(store: Store) -> list[int]:
    """1,300 digests of dump lines (63 bits); ``mbid-<n>`` stored at the n-th for n < 1200,
    but every tenth from the API (no revision) and every hundredth flagged deleted, and
    ``mbid-top`` at 2**63 - 1."""
    digests = [random.Random(n).getrandbits(63) for n in range(1300)]
    artists = [
        Record(
            {"mbid": f"mbid-{n}", "name": f"Artist {n}"},
            "musicbrainz",
            revision=None if n % 10 == 9 else digests[n],
        )
        for n in range(1200)
    ]
    artists.append(Record({"mbid": "mbid-top", "name": "Top"}, "musicbrainz", revision=2**63 - 1))
    assert store.upsert_many("artists", artists).inserted == 1201
    assert store.mark_deleted("artists", [f"mbid-{n}" for n in range(0, 1200, 100)]) == 12
    return digests


def test_unchanged_keys_compares_each_key_with_its_own_revision(store: Store) -> None:
    """Every key at a revision of its own (digests of dump lines, 63 bits): a key is
    unchanged at its own revision only, never at another key's."""
    digests = store_digest_artists(store)
    keys = [f"mbid-{n}" for n in range(1300)]
    random.Random(17).shuffle(keys)

    def number(key: str) -> int:
        return int(key.removeprefix("mbid-"))

    own = {key: digests[number(key)] for key in keys}
    assert store.unchanged_keys("artists", {**own, "mbid-top": 2**63 - 1}) == {
        f"mbid-{n}" for n in range(1200) if n % 10 != 9 and n % 100
    } | {"mbid-top"}
    # Each key at its neighbour's stored revision (one more, and one less): none unchanged.
    for step in (1, -1):
        neighbours = {key: digests[(number(key) + step) % 1300] for key in keys}
        assert store.unchanged_keys("artists", neighbours) == set()
    # Half at their own revision, half at another line's.
    mixed = {key: revision if number(key) % 2 else revision ^ 1 for key, revision in own.items()}
    assert store.unchanged_keys("artists", mixed) == {
        f"mbid-{n}" for n in range(1, 1200, 2) if n % 10 != 9
    }


def test_held_revisions_are_those_of_live_records(store: Store) -> None:
    """Digests of dump lines (63 bits, one a record), each asked with its line's key: a
    revision is held while a record not flagged deleted has it. SQLite answers without the
    keys."""
    digests = store_digest_artists(store)
    numbers = list(range(1300))
    random.Random(17).shuffle(numbers)
    asked_keys: list[list[str | None]] = []

    def held(revisions: list[int], keys: list[str | None]) -> set[int]:
        def given_keys() -> list[str | None]:
            asked_keys.append(keys)
            return keys

        return store.held_revisions("artists", revisions, given_keys)

    own = held(
        [digests[n] for n in numbers] + [2**63 - 1],
        [f"mbid-{n}" for n in numbers] + ["mbid-top"],
    )
    assert own == {digests[n] for n in range(1200) if n % 10 != 9 and n % 100} | {2**63 - 1}
    # A line asked twice, and one whose MBID could not be read (None: no record has it).
    assert held([digests[1], 7, digests[1]], ["mbid-1", None, "mbid-1"]) == {digests[1]}
    # A key's line changed: its new revision is not held.
    assert held([digests[1] ^ 1], ["mbid-1"]) == set()
    assert held([], []) == set()
    assert bool(asked_keys) == isinstance(store, MongoStore)
    # The index of a first import's collection, dropped while it writes: the same answers.
    store.defer_revision_index("artists")
    assert held([digests[3], digests[4] ^ 1], ["mbid-3", "mbid-4"]) == {digests[3]}
    store.build_revision_index("artists")
    assert held([digests[3], digests[4] ^ 1], ["mbid-3", "mbid-4"]) == {digests[3]}


def test_mongo_documents_have_their_key_as_id(store: Store) -> None:
    if not isinstance(store, MongoStore):
        pytest.skip("MongoDB's document ids")
    store.upsert_many("movies", [movie(550)])
    store.upsert_many("books", [book_with_pages(7)])
    store.upsert_many("books", [book_with_pages(8)])
    for collection, key in (("movies", 550), ("books", "/books/OL1M")):
        assert store.db[collection].find_one({"_id": key}) == {
            "_id": key,
            **(store.get(collection, key) or {}),
        }
    assert [document["ol_key"] for document in store.iter_documents("books")] == ["/books/OL1M"]


def test_mongo_collection_with_object_ids_reads_and_writes_as_one_keyed_by_id(
    store_settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A collection an earlier version filled (ObjectId ``_id``s, looked up by key field)
    ends with the very records a collection keyed by ``_id`` ends with, after the same
    writes."""
    if not store_settings.get("MONGO_URI"):
        pytest.skip("MongoDB's document ids")
    monkeypatch.setattr("contentcrawl.store.base.utc_now", lambda: "2026-03-01T00:00:00Z")
    keyed = MongoStore(store_settings["MONGO_URI"], f"{store_settings['MONGO_DATABASE']}_id")
    earlier = MongoStore(store_settings["MONGO_URI"], f"{store_settings['MONGO_DATABASE']}_oid")
    with keyed, earlier:
        # Revisions as digests of dump lines would be: one a record.
        first = [
            Record(book_with_pages(pages, f"OL{pages}M").content, "openlibrary", revision=pages)
            for pages in range(1, 6)
        ]
        keyed.upsert_many("books", first)
        # What an earlier version stored: the same documents, given ObjectIds by the driver.
        earlier.db["books"].insert_many(list(keyed.iter_documents("books")))
        assert not earlier.keyed_by_id("books")
        assert keyed.keyed_by_id("books")

        keys = [f"/books/OL{pages}M" for pages in range(0, 8)]
        answers = []
        for store in (keyed, earlier):
            changed = [book_with_pages(pages, f"OL{pages}M") for pages in (1, 2, 6)]
            changed[1] = book_with_pages(20, "OL2M")
            result = store.upsert_many("books", changed)
            assert (result.inserted, result.updated, result.unchanged) == (1, 1, 1)
            assert store.mark_deleted("books", ["/books/OL3M", "/books/OL404M"]) == 1
            answers.append(
                (
                    list(store.iter_documents("books")),
                    store.get("books", "/books/OL2M"),
                    store.unchanged_keys("books", dict.fromkeys(keys, 3)),
                    store.existing_keys("books", keys),
                    store.held_revisions("books", range(8), lambda: keys),
                    store.fetched_times("books", keys),
                    store.count("books"),
                    MongoReadQueries(store.db).get_many("books", keys, ["number_of_pages"]),
                )
            )
        assert answers[0] == answers[1]
        assert len(answers[0][0]) == 6
        # 2 was rewritten without a revision, 3 deleted.
        assert answers[0][4] == {1, 4, 5}
        live = answers[0][-1]
        assert sorted(live) == [f"/books/OL{pages}M" for pages in (1, 2, 4, 5, 6)]
        assert live["/books/OL2M"]["number_of_pages"] == 20
        assert all(isinstance(doc["_id"], ObjectId) for doc in earlier.db["books"].find())
        assert all(doc["_id"] == doc["ol_key"] for doc in keyed.db["books"].find())
