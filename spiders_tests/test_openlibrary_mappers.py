"""Open Library line parsing and payload→item mappers, on recorded real dump lines."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from contentcrawl.items import AuthorItem, BookItem, WorkItem
from contentcrawl.sources.openlibrary import (
    BadLineError,
    DumpLine,
    author_from_doc,
    book_from_edition,
    clean_isbn,
    parse_line,
    text_value,
    work_from_doc,
)
from spiders_tests.fakes.openlibrary import DATA, TYPES, build_sample, sample_dump, sample_lines
from spiders_tests.pipeline_crawls import validated

COVERS = "https://covers.example/b"
PHOTOS = "https://covers.example/a"


def line_of(file_name: str, key: str) -> bytes:
    for line in (DATA / file_name).read_bytes().splitlines():
        if line.split(b"\t")[1] == key.encode():
            return line
    raise LookupError(key)


def record(file_name: str, key: str) -> DumpLine:
    parsed = parse_line(line_of(file_name, key))
    assert isinstance(parsed, DumpLine)
    return parsed


def book(key: str, file_name: str = "ol_dump_editions_head100.txt") -> BookItem:
    parsed = record(file_name, key)
    return book_from_edition(parsed.doc, covers_url=COVERS, revision=parsed.revision)


# --- lines --------------------------------------------------------------------------------


def test_parse_line_reads_the_five_columns() -> None:
    parsed = record("ol_dump_editions_head100.txt", "/books/OL10000135M")
    assert parsed.type == "/type/edition"
    assert parsed.key == "/books/OL10000135M"
    assert parsed.revision == 4
    assert parsed.last_modified == "2010-04-24T17:54:01.503315"
    assert parsed.doc["title"] == "Parliamentary Debates, House of Lords, Bound Volumes, 1992-93"


def test_parse_line_returns_the_type_of_other_kinds_without_parsing_json() -> None:
    assert parse_line(
        b"/type/redirect\t/books/OL1M\t2\t2010-01-01\t{not json", "/type/edition"
    ) == ("/type/redirect")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"/type/edition\t/books/OL1M\t4\t{}", "columns"),
        (b"", "columns"),
        (b'/type/edition\t/books/OL1M\t4\t2010-01-01\t{"title": ', "json"),
        (b"/type/edition\t/books/OL1M\t4\t2010-01-01\t[1, 2]", "json"),
        (b"/type/edition\t\t4\t2010-01-01\t{}", "key"),
        (b"/type/edition\t/books/OL1M\tfour\t2010-01-01\t{}", "revision"),
    ],
)
def test_parse_line_names_what_is_wrong(line: bytes, reason: str) -> None:
    with pytest.raises(BadLineError) as raised:
        parse_line(line, "/type/edition")
    assert raised.value.reason == reason


def test_key_column_fills_a_missing_json_key() -> None:
    parsed = parse_line(b'/type/edition\t/books/OL1M\t4\t2010-01-01\t{"title": "T"}')
    assert isinstance(parsed, DumpLine)
    assert parsed.doc["key"] == "/books/OL1M"


@pytest.mark.parametrize(
    ("kind", "mapper"),
    [
        ("editions", lambda doc: book_from_edition(doc, covers_url=COVERS)),
        ("works", lambda doc: work_from_doc(doc, covers_url=COVERS)),
        ("authors", lambda doc: author_from_doc(doc, photos_url=PHOTOS)),
    ],
)
def test_every_real_sample_line_maps(kind: str, mapper: Callable[[Any], Any]) -> None:
    lines = sample_lines(kind)
    items = []
    for line in lines:
        parsed = parse_line(line.rstrip(b"\n"), TYPES[kind])
        assert isinstance(parsed, DumpLine)
        items.append(mapper(parsed.doc))
    assert len({item.ol_key for item in items}) == len(lines)
    for item, line in zip(items, lines, strict=True):
        assert item.revision == int(line.split(b"\t")[2])
        assert item.ol_key.startswith(("/books/OL", "/works/OL", "/authors/OL"))


# --- books --------------------------------------------------------------------------------


def test_book_fields_from_a_real_edition() -> None:
    item = book("/books/OL10000135M")
    assert item.ol_key == "/books/OL10000135M"
    assert item.revision == 4
    assert item.title == "Parliamentary Debates, House of Lords, Bound Volumes, 1992-93"
    assert item.subtitle == "9th November - 3rd December, 1992"
    assert item.author_keys == ["/authors/OL2645777A"]
    assert item.author_names == []
    assert item.work_key == "/works/OL7925046W"
    assert item.publish_date_raw == "December 1993"
    assert item.publish_date == "1993-12"
    assert item.publishers == ["Bernan Press"]
    assert item.isbn_10 == ["0107805405"]
    assert item.isbn_13 == ["9780107805401"]
    assert item.number_of_pages == 64
    assert item.languages == ["eng"]
    assert item.subjects == ["Government - Comparative", "Politics / Current Events"]
    assert item.identifiers == {"goodreads": ["6850240"]}
    assert item.cover_ids == []


def test_book_cover_urls_also_feed_the_images_pipeline() -> None:
    item = book("/books/OL1002068M")
    assert item.cover_ids == [3857961, 3857831, 1206573]
    assert item.cover_urls == [
        f"{COVERS}/id/3857961-L.jpg",
        f"{COVERS}/id/3857831-L.jpg",
        f"{COVERS}/id/1206573-L.jpg",
    ]
    assert item.image_urls == item.cover_urls


def test_cover_placeholder_minus_one_is_dropped() -> None:
    item = book("/books/OL15248986M", "ol_dump_editions_grep_dostoyevsky.txt")
    assert item.cover_ids == []
    assert item.image_urls == []


def test_title_prefix_is_put_back() -> None:
    assert book("/books/OL3187531M", "ol_dump_editions_grep_dostoyevsky.txt").title == "The idiot"
    parsed = record("ol_dump_editions_grep_dostoyevsky.txt", "/books/OL5559233M")
    assert parsed.doc["title_prefix"] == "La "
    item = book_from_edition(parsed.doc, covers_url=COVERS)
    assert item.title == "La " + parsed.doc["title"]
    assert item.title.startswith("La roulette et le souterrain")


def test_dump_unicode_escapes_are_decoded() -> None:
    raw = line_of("ol_dump_editions_grep_dostoyevsky.txt", "/books/OL16388474M")
    assert b"Dosto\\u00efevski" in raw
    assert (
        book("/books/OL16388474M", "ol_dump_editions_grep_dostoyevsky.txt").title == "Dostoïevski"
    )


def test_author_listed_many_times_appears_once() -> None:
    parsed = record("ol_dump_editions_head100.txt", "/books/OL10004188M")
    assert len(parsed.doc["authors"]) == 256
    item = book_from_edition(parsed.doc, covers_url=COVERS)
    assert item.author_keys == ["/authors/OL1550675A", "/authors/OL2656742A"]


def test_edition_without_works_or_authors() -> None:
    parsed = record("ol_dump_editions_head100.txt", "/books/OL1000884M")
    doc = {name: value for name, value in parsed.doc.items() if name not in {"works", "authors"}}
    item = book_from_edition(doc, covers_url=COVERS)
    assert item.work_key is None
    assert item.author_keys == []


def test_top_level_ids_join_the_identifiers() -> None:
    item = book("/books/OL24937987M", "ol_dump_editions_grep_dostoyevsky.txt")
    assert item.identifiers["ocaid"] == ["idiotdostf00dost"]
    with_lccn = book("/books/OL1000071M")
    assert with_lccn.identifiers == {"goodreads": ["3140331"], "lccn": ["96038951"]}


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("1997", "1997"),
        ("March 1999", "1999-03"),
        ("Nov 25, 2010", "2010-11-25"),
        ("December 31, 1993", "1993-12-31"),
        ("c1990", "1990"),
        # Unreadable: kept as is here; the validation pipeline counts it and sets it to null.
        ("[n.d.]", "[n.d.]"),
    ],
)
def test_publish_date_raw_and_normalised(raw: str, normalised: str) -> None:
    item = book_from_edition({"key": "/books/OL1M", "publish_date": raw}, covers_url=COVERS)
    assert item.publish_date_raw == raw
    assert item.publish_date == normalised


def test_isbn_cleaning_keeps_the_x_check_digit() -> None:
    assert clean_isbn("0-19-852663-6") == "0198526636"
    assert clean_isbn("156663587x") == "156663587X"
    item = book("/books/OL3305307M", "ol_dump_editions_grep_dostoyevsky.txt")
    assert item.isbn_10 == ["156663587X", "1566635888"]


def test_edition_from_the_api_maps_like_a_dump_line() -> None:
    doc = json.loads((DATA / "api_isbn_0879973420.json").read_text())
    item = book_from_edition(doc, covers_url=COVERS)
    assert item.ol_key == "/books/OL8131917M"
    assert item.author_keys == ["/authors/OL25176A"]
    assert item.work_key == "/works/OL155455W"
    assert item.revision == 14
    assert item.publish_date_raw == "November 15, 1977"
    assert item.publish_date == "1977-11-15"


# --- works --------------------------------------------------------------------------------


def test_work_description_as_text_object() -> None:
    parsed = record("ol_dump_works_head100.txt", "/works/OL1000572W")
    assert isinstance(parsed.doc["description"], dict)
    item = work_from_doc(parsed.doc, covers_url=COVERS, revision=parsed.revision)
    assert isinstance(item, WorkItem)
    assert item.description is not None
    assert item.description.startswith("Donna's parents are offered the trip of a lifet")
    assert item.cover_urls == [f"{COVERS}/id/3372835-L.jpg"]


def test_work_author_role_as_string_or_reference() -> None:
    as_string = next(
        json.loads(line.split(b"\t")[4])
        for line in sample_lines("works")
        if b'"type": "/type/author_role"' in line
    )
    as_reference = next(
        json.loads(line.split(b"\t")[4])
        for line in sample_lines("works")
        if b'"type": {"key": "/type/author_role"}' in line
    )
    for doc in (as_string, as_reference):
        item = work_from_doc(doc, covers_url=COVERS)
        assert item.author_keys == [doc["authors"][0]["author"]["key"]]


def test_work_from_the_api() -> None:
    doc = json.loads((DATA / "api_works_OL155455W.json").read_text())
    item = work_from_doc(doc, covers_url=COVERS)
    assert item.title == "Dorsai!"
    assert item.author_keys == ["/authors/OL25176A"]
    assert item.first_publish_date == "February 1983"
    assert item.cover_ids == [4629374, 603094, 8324095, 6875464]
    assert "Science Fiction" in item.subjects


# --- authors ------------------------------------------------------------------------------


def author(key: str) -> AuthorItem:
    parsed = record("ol_dump_authors_grep_orwell.txt", key)
    return author_from_doc(parsed.doc, photos_url=PHOTOS, revision=parsed.revision)


def test_author_with_bio_as_string() -> None:
    item = author("/authors/OL118077A")
    assert item.name == "George Orwell"
    assert isinstance(item.bio, str)
    assert item.birth_date == "25 June 1903"
    assert item.death_date == "21 January 1950"
    assert item.wikipedia == "http://en.wikipedia.org/wiki/George_Orwell"
    assert item.remote_ids == {"viaf": "95155403", "wikidata": "Q3335"}
    assert item.photo_ids == [9160343, 6388323]
    assert item.photo_urls == [f"{PHOTOS}/id/9160343-L.jpg", f"{PHOTOS}/id/6388323-L.jpg"]
    assert item.image_urls == item.photo_urls


def test_author_with_bio_as_text_object_and_links() -> None:
    item = author("/authors/OL6511583A")
    assert isinstance(item.bio, str)
    assert item.links == [
        {"title": "patrickraddenkeefe.com", "url": "https://www.patrickraddenkeefe.com/"}
    ]


def test_author_photo_placeholder_dropped() -> None:
    assert author("/authors/OL204256A").photo_ids == [7129262]


def test_author_from_the_api() -> None:
    doc = json.loads((DATA / "api_authors_OL25176A.json").read_text())
    item = author_from_doc(doc, photos_url=PHOTOS)
    assert item.name == "Gordon R. Dickson"
    assert item.birth_date == "1 November 1923"
    assert "Gordon Rupert Dickson" in item.alternate_names


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("plain", "plain"),
        ({"type": "/type/text", "value": "wrapped"}, "wrapped"),
        (None, None),
        (42, None),
        ({"type": "/type/text"}, None),
    ],
)
def test_text_value(value: object, text: str | None) -> None:
    assert text_value(value) == text


@pytest.mark.parametrize("kind", ["editions", "works", "authors"])
def test_shipped_sample_dump_is_built_from_the_recorded_lines(kind: str) -> None:
    assert sample_dump(kind).read_bytes() == build_sample(kind)


# --- fields users query: editions, works, dates -------------------------------------------


def test_edition_keeps_its_catalogue_fields() -> None:
    item = book("/books/OL2258479M", "ol_dump_editions_grep_dostoyevsky.txt")
    assert item.edition_name == "Wyd. 1."
    # The dump writes the accent as a combining mark (z + U+0301): kept as written.
    assert item.by_statement == "Anna Raz\u0301ny."
    assert item.publish_places == ["Krako\u0301w"]
    # notes as {"type": "/type/text", "value": ...}
    assert item.notes == "Includes bibliographical references (p. [137]-154)."

    paperback = book("/books/OL3421079M", "ol_dump_editions_grep_dostoyevsky.txt")
    assert paperback.physical_format == "Paperback"
    # notes as a plain string
    assert paperback.notes == "Originally published: New York : Macmillan, 1912."


def test_edition_and_work_keep_the_first_sentence_text() -> None:
    edition = json.loads((DATA / "api_isbn_0879973420.json").read_text())
    work = json.loads((DATA / "api_works_OL155455W.json").read_text())

    assert book_from_edition(edition, covers_url=COVERS).first_sentence == "The boy was odd."
    assert work_from_doc(work, covers_url=COVERS).first_sentence == "The boy was odd."


def test_edition_description_as_text_object() -> None:
    item = book("/books/OL1002024M")
    assert isinstance(item.description, str)
    assert item.description


@pytest.mark.parametrize(
    ("raw", "normalised", "precision", "approximate"),
    [
        ("ca. 1480", "1480", "year", True),
        ("c. 1850", "1850", "year", True),
        ("circa 1900", "1900", "year", True),
        ("fl. 1314", "1314", "year", True),
        ("1682?", "1682", "year", True),
        ("Spring 1985", "1985", "year", False),
        ("25 June 1903", "1903-06-25", "day", False),
    ],
)
def test_author_dates_keep_raw_text_precision_and_approximation(
    raw: str, normalised: str, precision: str, approximate: bool
) -> None:
    doc = dict(record("ol_dump_authors_grep_orwell.txt", "/authors/OL118077A").doc)
    doc["birth_date"] = raw

    item, stats = validated(author_from_doc(doc, photos_url=PHOTOS))

    assert (item.birth_date, item.birth_date_raw) == (normalised, raw)
    assert (item.birth_date_precision, item.birth_date_approximate) == (precision, approximate)
    assert stats.get_value("dates/authors/unreadable") is None


def test_unreadable_author_date_keeps_its_text_and_is_counted() -> None:
    parsed = record("ol_dump_authors_head20.txt", "/authors/OL1004101A")

    item, stats = validated(author_from_doc(parsed.doc, photos_url=PHOTOS))

    assert (item.birth_date, item.birth_date_raw) == (None, "4th cent.")
    assert item.birth_date_precision is None
    assert (item.date, item.date_raw) == (None, "4th cent")
    assert stats.get_value("dates/authors/unreadable") == 2


def test_approximate_publish_date_is_marked() -> None:
    doc = dict(record("ol_dump_editions_head100.txt", "/books/OL10000135M").doc)
    doc["publish_date"] = "[1985?]"

    item, _ = validated(book_from_edition(doc, covers_url=COVERS))

    assert (item.publish_date, item.publish_date_raw) == ("1985", "[1985?]")
    assert (item.publish_date_precision, item.publish_date_approximate) == ("year", True)
