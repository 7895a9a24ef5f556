"""The shipped authors and editions samples built from recorded API bodies: real data that
shows author names reaching books when authors are imported first."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from scrapy.utils.defer import deferred_f_from_coro_f

from contentcrawl.spiders.openlibrary_authors import OpenLibraryAuthorsSpider
from contentcrawl.spiders.openlibrary_books import OpenLibraryBooksSpider
from contentcrawl.store import Store
from spiders_tests.conftest import read_store
from spiders_tests.crawling import crawl
from spiders_tests.fakes.openlibrary import DATA

AUTHORS = DATA / "ol_dump_authors_bookmind.txt.gz"
EDITIONS = DATA / "ol_dump_editions_bookmind.txt.gz"


def test_sample_lines_carry_the_recorded_bodies_unchanged() -> None:
    for sample, pattern in ((AUTHORS, "api_authors_*.json"), (EDITIONS, "api_isbn_*.json")):
        bodies = [path.read_bytes() for path in sorted(DATA.glob(pattern))]
        lines = gzip.decompress(sample.read_bytes()).splitlines()
        assert [line.split(b"\t", 4)[4] for line in lines] == bodies
        for line in lines:
            type_, key, revision, modified, body = line.split(b"\t", 4)
            doc = json.loads(body)
            assert (type_.decode(), key.decode(), int(revision), modified.decode()) == (
                doc["type"]["key"],
                doc["key"],
                doc["revision"],
                doc["last_modified"]["value"],
            )


@deferred_f_from_coro_f
async def test_authors_then_books_fill_author_names(
    store_settings: dict[str, Any], store: Store, tmp_path: Path
) -> None:
    settings = {**store_settings, "DUMPS_DIR": str(tmp_path / "dumps")}

    authors = await crawl(OpenLibraryAuthorsSpider, settings, dump=str(AUTHORS))
    books = await crawl(OpenLibraryBooksSpider, settings, dump=str(EDITIONS))

    assert authors.stats.get_value("store/authors/inserted") == 4
    assert books.stats.get_value("store/books/inserted") == 6
    names = {
        key: store.get("books", key)["author_names"]
        for key in ("/books/OL7526806M", "/books/OL8131917M", "/books/OL28996092M")
    }
    assert names == {
        "/books/OL7526806M": ["Michael Moorcock"],
        "/books/OL8131917M": ["Gordon R. Dickson"],
        "/books/OL28996092M": ["Gemmell, David"],
    }


@deferred_f_from_coro_f
async def test_books_imported_before_their_authors_have_no_author_names(
    tmp_path: Path,
) -> None:
    settings = {"MONGO_URI": "", "SQLITE_PATH": str(tmp_path / "store.sqlite3")}
    settings["DUMPS_DIR"] = str(tmp_path / "dumps")

    await crawl(OpenLibraryBooksSpider, settings, dump=str(EDITIONS))

    book = read_store(settings, lambda store: store.get("books", "/books/OL8131917M"))
    assert book["author_keys"] == ["/authors/OL25176A"]
    assert not any(book.get("author_names") or [])
