"""MusicBrainz dump lines in the crawl and in the workers: chunks of one entity, line work.

The crawl's process reads chunks of lines (``EntityChunks.read``, in a thread): each holds
the lines of one entity, those of an entity without a mapper only counted. The workers run
``EntityLineWorker`` on them: parse, map, then validate and make store records.

A line carries no revision nor last-modified date (it is the entity JSON ws/2 answers a
lookup with, in no fixed key order), so its revision is a digest of its bytes
(``line_revision``), stored as the record's ``_meta.revision``. On a re-import the crawl
takes each line's digest and skips, before the workers, the lines whose digest a stored
record holds (``Store.held_revisions``): any changed byte makes a new one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import orjson
import xxhash

from contentcrawl.dumps import DumpFile, DumpReadError
from contentcrawl.dumps.read import parsed_json
from contentcrawl.dumps.workers import STOP_CHECK_LINES, WorkedChunk, finish_chunk, stopping
from contentcrawl.items import ContentItem, Json

Lines = list[tuple[int, bytes]]
Mapper = Callable[[Mapping[str, Any]], ContentItem]


class BadLineError(ValueError):
    """One dump line that cannot become a record; ``reason`` names its stat."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def parse_entity_line(line: bytes) -> Json:
    """The JSON object of one dump line; ``BadLineError`` when it is not one with an ``id``."""
    try:
        doc = parsed_json(line)
    except (ValueError, RecursionError) as error:
        # RecursionError: nesting deeper than the json module can follow.
        raise BadLineError("json", str(error)) from None
    if not isinstance(doc, dict):
        raise BadLineError("json", f"a JSON {type(doc).__name__}, not an object")
    if not isinstance(doc.get("id"), str):
        raise BadLineError("fields", f"no id: {line[:120]!r}")
    return doc


def line_revision(line: bytes) -> int:
    """A dump line's revision: a 63-bit digest of its bytes, newline excluded (a BSON int64
    and a SQLite INTEGER hold it).

    XXH3-64, not a cryptographic hash: the digest only tells a changed line from the one a
    record was made of, and the crawl takes one of every line it reads, holding the GIL
    (lines are shorter than the 2 KiB from which hashlib lets it go). XXH3 costs a line
    ~0.17 µs, BLAKE2b ~1.35 µs. Another digest would make every stored record's revision
    stale: each line would be worked again once.
    """
    return xxhash.xxh3_64_intdigest(line) >> 1


def line_revisions(lines: Lines) -> list[int]:
    """``line_revision`` of each line."""
    return [line_revision(line) for _, line in lines]


def line_keys(lines: Lines) -> list[str | None]:
    """The MBID of each line, its top-level ``id``; None for a line where it does not read
    well (the workers count such a line as bad).

    orjson reads a whole line as fast as a scan for its top-level ``"id"`` (which may come
    after the ids of nested entities) would.
    """
    keys: list[str | None] = []
    for _, line in lines:
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            keys.append(None)
            continue
        key = doc.get("id") if isinstance(doc, dict) else None
        keys.append(key if isinstance(key, str) else None)
    return keys


@dataclass
class EntityNote:
    """The reader's counts of one chunk, joined to the chunk's worked result."""

    # The entity of the chunk's lines ("" when the file broke before any line).
    entity: str
    # Lines read, those of entities without a mapper included.
    lines: int = 0
    # Lines skipped: the store holds their record at their revision.
    unchanged: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # entity → lines not imported
    position: int = 0
    end: bool = False
    # The stream break that ended the file (line, reason, detail), if any.
    stream_error: tuple[int, str, str] | None = None


class EntityChunks:
    """Chunks of ``(entity, line number, line)``: each holds lines of one entity only, so
    its records make one batch of one item class.

    ``read`` is blocking (run it in a thread); the line of a new entity that ended a chunk
    starts the next one.
    """

    def __init__(
        self,
        dump: DumpFile,
        lines: Iterator[tuple[str, int, bytes]],
        mapped: Collection[str],
    ) -> None:
        self.dump = dump
        self.lines = lines
        self.mapped = mapped
        self._next: tuple[str, int, bytes] | None = None

    def read(self, budget: int) -> tuple[Lines, EntityNote]:
        """Up to ``budget`` lines of one entity: those to work, and the note on all read."""
        work: Lines = []
        note = EntityNote(self._next[0] if self._next else "")
        try:
            for entity, number, line in self._pending():
                if note.lines and entity != note.entity:
                    self._next = (entity, number, line)
                    break
                note.entity = entity
                note.lines += 1
                if entity in self.mapped:
                    work.append((number, line))
                else:
                    note.skipped[entity] += 1
                if note.lines >= budget:
                    break
            else:
                note.end = True
        except DumpReadError as error:
            note.stream_error = (error.line_number, error.reason, error.detail)
            note.end = True
        note.position = self.dump.position
        return work, note

    def _pending(self) -> Iterator[tuple[str, int, bytes]]:
        # chain, not a generator: a chunk ending mid-file must leave ``lines`` open.
        held, self._next = self._next, None
        return chain([held], self.lines) if held is not None else self.lines


@dataclass(frozen=True)
class EntityLineWorker:
    """The work on one chunk of one entity's lines (its name the chunk's context), run in a
    worker process: parse, ``mappers[entity]``, the line's revision, and with ``prepare``
    validated store records. The mappers are module-level functions: pickled with each
    chunk by name."""

    mappers: Mapping[str, Mapper]
    prepare: bool

    def __call__(self, lines: Lines, context: str) -> WorkedChunk:
        chunk = WorkedChunk()
        items: list[ContentItem] = []
        mapper = self.mappers[context]
        for count, (line_number, line) in enumerate(lines):
            if count % STOP_CHECK_LINES == 0 and stopping():
                chunk.stopped = True
                return chunk
            if not line.strip():
                continue
            try:
                item = mapper(parse_entity_line(line))
            except BadLineError as bad:
                chunk.bad.append((line_number, bad.reason, bad.detail))
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                chunk.bad.append((line_number, "fields", repr(error)))
            else:
                item.revision = line_revision(line)
                items.append(item)
        return finish_chunk(chunk, items, self.prepare)
