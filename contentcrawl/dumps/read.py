"""Reading a local dump: decompressed streams, lines, their JSON, bad-line limit, fewer GC
passes."""

from __future__ import annotations

import bz2
import gc
import gzip
import json
import lzma
import os
import re
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson


class DumpReadError(Exception):
    """The compressed stream is truncated or corrupt: nothing after ``line_number`` is readable."""

    def __init__(self, line_number: int, reason: str, detail: str) -> None:
        super().__init__(f"line {line_number}: {reason}: {detail}")
        self.line_number = line_number
        self.reason = reason
        self.detail = detail


_DECOMPRESSORS: dict[str, Callable[..., IO[bytes]]] = {
    # typeshed does not count GzipFile as a typing.IO, though it is a binary file object.
    ".gz": gzip.open,  # type: ignore[dict-item]
    ".bz2": bz2.open,
    ".xz": lzma.open,
}


class DumpFile:
    """A local dump opened for streaming: decompressed by its suffix, position in bytes of the file.

    ``stream`` is the decompressed byte stream (hand it to ``tarfile.open(fileobj=..., mode="r|")``
    for a tar dump); ``lines()`` yields ``(line_number, line)`` for line-based dumps.
    ``position`` counts the file's own (compressed) bytes consumed, so ``position / size``
    is the true fraction done whatever the compression.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.raw: IO[bytes] = self.path.open("rb")
        self.size = os.fstat(self.raw.fileno()).st_size
        decompressor = _DECOMPRESSORS.get(self.path.suffix.lower())
        self.stream: IO[bytes] = decompressor(self.raw, mode="rb") if decompressor else self.raw
        self.line_number = 0

    @property
    def position(self) -> int:
        return self.raw.tell()

    def lines(self) -> Iterator[tuple[int, bytes]]:
        """``(line_number, line without newline)`` from 1; ``DumpReadError`` on a bad stream end."""
        try:
            for line in self.stream:
                self.line_number += 1
                yield self.line_number, line.rstrip(b"\r\n")
        except EOFError as error:
            raise DumpReadError(self.line_number + 1, "truncated", str(error)) from None
        except (OSError, zlib.error, lzma.LZMAError) as error:
            raise DumpReadError(self.line_number + 1, "corrupt", str(error)) from None

    def close(self) -> None:
        self.stream.close()
        self.raw.close()

    def __enter__(self) -> DumpFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass(frozen=True)
class BadLineLimit:
    """When a dump's bad lines make its import a failure rather than a few skips.

    A dump whose lines are all bad, or (from ``min_lines`` lines read) more than
    ``max_share`` of them, is not the file it claims to be (a garbage or mislabelled
    download): its few good lines are kept, but the import must not count as done.
    Below ``min_lines`` only a dump with no good line at all fails, so one bad line in
    a three-line file stays a skip.
    """

    max_share: float
    min_lines: int

    @classmethod
    def from_settings(cls, settings: Any) -> BadLineLimit:
        """``DUMP_MAX_BAD_LINE_SHARE`` and ``DUMP_BAD_LINE_MIN_LINES``."""
        return cls(
            settings.getfloat("DUMP_MAX_BAD_LINE_SHARE"),
            settings.getint("DUMP_BAD_LINE_MIN_LINES"),
        )

    def exceeded(self, lines: int, bad_lines: int) -> bool:
        """Whether ``bad_lines`` of ``lines`` read fail the import.

        A stream break is a bad line that was never a whole line, hence the ``max``.
        """
        read = max(lines, bad_lines)
        if not bad_lines:
            return False
        if bad_lines >= read:
            return True
        return read >= self.min_lines and bad_lines / read > self.max_share


# Young objects allocated between two cyclic-GC passes while a dump is read (default: 700).
IMPORT_GC_THRESHOLD = 50_000


@contextmanager
def fewer_gc_passes() -> Iterator[None]:
    """Run the cyclic garbage collector less often while a dump is imported.

    A batch of parsed records is tens of thousands of young dicts and lists: at the default
    threshold the collector walks them forty times a batch, and each full pass walks every
    object Scrapy and Twisted made at start-up too. Records hold no cycles (reference
    counting frees them), so passes are made rarer and the start-up objects frozen out of
    them: about a fifth of an import's time.
    """
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(IMPORT_GC_THRESHOLD, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def parsed_json(text: bytes) -> Any:
    """``json.loads(text)``, at orjson's speed (twice the standard library's on dump lines).

    orjson refuses some of what the standard library takes (``NaN``, lone surrogate
    escapes, nesting past 1,024) and reads an integer beyond 64 bits as a float: a line
    with any of those, or with a run of 19 digits (which may be such an integer), is read
    by ``json`` instead, so every line gives the very objects ``json.loads`` gives.
    """
    if _LONG_DIGITS.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


# 19 digits: the shortest integer orjson may not hold (below -2**63).
_LONG_DIGITS = re.compile(rb"\d{19}")
