"""Open Library: monthly dumps of editions, works and authors, streamed into items.

A dump line is ``type \\t key \\t revision \\t last_modified \\t JSON``. The base spider
downloads (or opens) the dump, reads it in chunks, has worker processes map each line with
a pure mapper below and yields each chunk from ``start()`` as one ``ItemBatch``; no request
goes through Scrapy's downloader, whose buffered bodies cannot hold a 9 GB file. Keys stay
in Open Library's own form (``/books/OL1M``, ``/works/OL1W``, ``/authors/OL1A``) so they
join across kinds.

To add a dump kind: subclass ``OpenLibraryDumpSpider``, set ``dump_kind`` and
``record_type``, implement ``line_mapper`` (a pure mapper: the lines are worked in
``DUMP_WORKERS`` processes); override ``prepare``/``chunk_context``/``line_enricher`` to
look things up in the store per chunk (as the books spider does for author names, with
``uses_store``). A re-import skips the lines whose revision the store holds already, and
does not read a dump file a complete earlier import read (``-a force=1`` does both).
What was imported (dump, validators, counts) is staged with the ``SyncState`` extension as
``<spider name>/dump`` and saved when the run finishes cleanly.
"""

from contentcrawl.sources.openlibrary.mappers import (
    BadLineError,
    DumpLine,
    as_int,
    author_from_doc,
    best_date,
    book_from_edition,
    clean_isbn,
    contributors_of,
    edition_identifiers,
    edition_links,
    full_title,
    image_url,
    key_names,
    links_of,
    object_of,
    one_text,
    parse_line,
    positive_ids,
    ref_keys,
    str_list,
    text_value,
    toc_entries,
    unique,
    work_author_keys,
    work_from_doc,
)

__all__ = [
    "BadLineError",
    "DumpLine",
    "as_int",
    "author_from_doc",
    "best_date",
    "book_from_edition",
    "clean_isbn",
    "contributors_of",
    "edition_identifiers",
    "edition_links",
    "full_title",
    "image_url",
    "key_names",
    "links_of",
    "object_of",
    "one_text",
    "parse_line",
    "positive_ids",
    "ref_keys",
    "str_list",
    "text_value",
    "toc_entries",
    "unique",
    "work_author_keys",
    "work_from_doc",
]
