"""Open Library dump lines in the crawl and in the workers: chunks read, revisions, line work.

The crawl's process reads chunks of lines (``read_chunk``, in a thread) and looks at the
key and revision columns only (``keyed_lines``), so that a re-import skips the lines whose
revision the store holds already without parsing them. The workers run ``LineWorker`` on
the rest: parse, map, enrich, then validate and make store records.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from contentcrawl.dumps.read import DumpFile, DumpReadError
from contentcrawl.dumps.workers import STOP_CHECK_LINES, WorkedChunk, finish_chunk, stopping
from contentcrawl.items import BookItem, ContentItem
from contentcrawl.sources.openlibrary.mappers import BadLineError, parse_line

Lines = list[tuple[int, bytes]]


@dataclass
class LineChunk:
    """Lines read together from the dump, with where the file stands after them."""

    lines: Lines = field(default_factory=list)
    # ``keyed_lines`` of them, when a record type was given.
    keyed: list[tuple[int, str, int]] = field(default_factory=list)
    position: int = 0
    end: bool = False
    # The stream break that ended the file, as a bad line (line, reason, detail), if any.
    stream_error: tuple[int, str, str] | None = None


def read_chunk(
    dump: DumpFile,
    lines: Iterator[tuple[int, bytes]],
    budget: int,
    record_type: bytes | None = None,
) -> LineChunk:
    """Up to ``budget`` lines of ``dump`` and, given ``record_type``, the key and revision
    of those of that type (blocking: run it in a thread)."""
    chunk = LineChunk()
    try:
        for numbered in lines:
            chunk.lines.append(numbered)
            if len(chunk.lines) >= budget:
                break
        else:
            chunk.end = True
    except DumpReadError as error:
        chunk.stream_error = (error.line_number, error.reason, error.detail)
        chunk.end = True
    chunk.position = dump.position
    if record_type is not None:
        chunk.keyed = keyed_lines(chunk.lines, record_type)
    return chunk


def keyed_lines(lines: Lines, record_type: bytes) -> list[tuple[int, str, int]]:
    """``(index, key, revision)`` of the lines of ``record_type`` whose columns read well;
    a line that does not is left to the workers, which count it as bad."""
    keyed = []
    for index, (_, line) in enumerate(lines):
        columns = line.split(b"\t", 3)
        if len(columns) < 4 or columns[0] != record_type:
            continue
        try:
            revision = int(columns[2])
        except ValueError:
            continue
        keyed.append((index, columns[1].decode("utf-8", "replace"), revision))
    return keyed


# An author key in a line's JSON, its slashes escaped or not (JSON allows both).
_AUTHOR_KEY = re.compile(rb"\\?/authors\\?/(OL\d+A)")


def author_keys_in(lines: Lines) -> set[str]:
    """Every author key the lines mention: a superset of their books' ``author_keys``
    (an author key of another form cannot be in the store, whose keys validation checks)."""
    return {
        f"/authors/{match.decode()}" for _, line in lines for match in _AUTHOR_KEY.findall(line)
    }


def add_author_names(items: list[ContentItem], names: dict[str, str | None]) -> None:
    """Fill each book's ``author_names`` (in ``author_keys`` order) from ``names``."""
    for item in items:
        if isinstance(item, BookItem) and item.author_keys:
            item.author_names = [name for key in item.author_keys if (name := names.get(key))]


@dataclass(frozen=True)
class LineWorker:
    """The work on one chunk of one dump kind's lines, run in a worker process.

    ``mapper(doc, revision=...)`` makes the item (a module-level function or a partial of
    one: it is pickled with each chunk); ``enrich(items, context)`` adds what the crawl
    looked up for the chunk. With ``prepare`` the items leave as validated store records.
    """

    record_type: str
    mapper: Callable[..., ContentItem]
    prepare: bool
    enrich: Callable[[list[ContentItem], Any], None] | None = None

    def __call__(self, lines: Lines, context: Any) -> WorkedChunk:
        chunk = WorkedChunk()
        items: list[ContentItem] = []
        for count, (line_number, line) in enumerate(lines):
            if count % STOP_CHECK_LINES == 0 and stopping():
                chunk.stopped = True
                return chunk
            try:
                record = parse_line(line, self.record_type)
                if isinstance(record, str):
                    chunk.skipped[record] += 1
                else:
                    items.append(self.mapper(record.doc, revision=record.revision))
            except BadLineError as bad:
                chunk.bad.append((line_number, bad.reason, bad.detail))
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                chunk.bad.append((line_number, "fields", repr(error)))
        if self.enrich is not None and context is not None:
            self.enrich(items, context)
        return finish_chunk(chunk, items, self.prepare)
