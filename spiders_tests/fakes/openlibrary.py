"""A fake Open Library dump host, and dump files built from the recorded real lines.

``openlibrary.org/data/ol_dump_<kind>_latest.txt.gz`` answers 302 to the dated file (on
archive.org); the fake does the same, and serves the dated file as a CDN does (ETag,
Last-Modified, conditional GET, Range), optionally cutting the next download short.

``python -m spiders_tests.fakes.openlibrary`` rebuilds the shipped sample dumps.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from spiders_tests.fakes.server import FakeRequest, FakeResponse, FakeServer, serve_bytes

DATA = Path(__file__).parent.parent / "data" / "openlibrary"
DUMP_DATE = "2026-10-31"
TYPES = {"editions": "/type/edition", "works": "/type/work", "authors": "/type/author"}
KEY_LETTER = {"editions": "M", "works": "W", "authors": "A"}
# The recorded real files each sample dump is made of, in order (see data/.../PROVENANCE.md).
SAMPLE_SOURCES = {
    "editions": [
        "ol_dump_editions_head100.txt",
        "ol_dump_editions_tail20.txt",
        "ol_dump_editions_grep_dostoyevsky.txt",
    ],
    "works": ["ol_dump_works_head100.txt", "ol_dump_works_tail30.txt"],
    "authors": [
        "ol_dump_authors_head20.txt",
        "ol_dump_authors_grep_orwell.txt",
        "ol_dump_authors_2022_head40.txt",
    ],
}


def sample_dump(kind: str) -> Path:
    """The shipped sample dump of a kind (every recorded real line of it, gzip)."""
    return DATA / f"ol_dump_{kind}_sample.txt.gz"


def build_sample(kind: str) -> bytes:
    """The sample dump's bytes: every recorded line of the kind, first of each key, gzip."""
    seen: set[bytes] = set()
    lines = []
    for name in SAMPLE_SOURCES[kind]:
        for line in (DATA / name).read_bytes().splitlines():
            key = line.split(b"\t", 2)[1]
            if key not in seen:
                seen.add(key)
                lines.append(line + b"\n")
    return gzip.compress(b"".join(lines), mtime=0)


def sample_lines(kind: str) -> list[bytes]:
    """The sample dump's lines, newline included."""
    with gzip.open(sample_dump(kind), "rb") as dump:
        return dump.readlines()


# Lines (one edition each) in the shipped editions sample dump.
SAMPLE_EDITIONS = len(sample_lines("editions"))


def dump_line(doc: dict[str, Any]) -> bytes:
    """A document as a dump line (type, key, revision, last_modified, JSON; \\uXXXX escapes)."""
    modified = doc.get("last_modified", {}).get("value", "")
    columns = [doc["type"]["key"], doc["key"], str(doc["revision"]), modified, json.dumps(doc)]
    return "\t".join(columns).encode() + b"\n"


def write_dump(path: Path, lines: Iterable[bytes], compresslevel: int = 1) -> Path:
    """Write ``lines`` to ``path``, gzip-compressed at ``compresslevel`` when it ends in .gz
    (1: the tests read dumps, they do not weigh them; level 6 takes twice as long)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with (
            path.open("wb") as raw,
            gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=compresslevel) as out,
        ):
            out.writelines(lines)
    else:
        with path.open("wb") as out:
            out.writelines(lines)
    return path


def generated_lines(kind: str, count: int) -> Iterator[bytes]:
    """``count`` real sample lines cycled, each given a fresh key (OL<n>M/W/A), on the fly."""
    samples = [line for line in sample_lines(kind) if line.count(b"\t") >= 4]
    letter = KEY_LETTER[kind]
    for number in range(count):
        line = samples[number % len(samples)]
        old_key = line.split(b"\t", 2)[1]
        new_key = old_key.rsplit(b"/", 1)[0] + b"/OL%d%s" % (900_000_000 + number, letter.encode())
        yield line.replace(old_key, new_key)


class FakeOpenLibraryDumps:
    """Dump files on a ``FakeServer``: ``files`` maps a dump kind to the bytes served."""

    def __init__(self, server: FakeServer, files: dict[str, bytes]) -> None:
        self.server = server
        self.files = dict(files)
        # Cut the next download of a file after this many body bytes (then serve normally).
        self.cut_next: dict[str, int] = {}
        server.route("GET", r"/data/ol_dump_(?P<kind>[a-z]+)_latest\.txt\.gz")(self._latest)
        server.route(
            "GET", rf"/archive/ol_dump_{DUMP_DATE}/ol_dump_(?P<kind>[a-z]+)_{DUMP_DATE}\.txt\.gz"
        )(self._dated)

    @property
    def settings(self) -> dict[str, str]:
        return {"OPENLIBRARY_DUMPS_URL": f"{self.server.url}/data"}

    def dated_path(self, kind: str) -> str:
        return f"/archive/ol_dump_{DUMP_DATE}/ol_dump_{kind}_{DUMP_DATE}.txt.gz"

    def _latest(self, request: FakeRequest, kind: str) -> FakeResponse:
        if kind not in self.files:
            return FakeResponse(404, b"Not Found", {"Content-Type": "text/plain"})
        return FakeResponse(302, b"", {"Location": f"{self.server.url}{self.dated_path(kind)}"})

    def _dated(self, request: FakeRequest, kind: str) -> FakeResponse:
        if kind not in self.files:
            return FakeResponse(404, b"Not Found", {"Content-Type": "text/plain"})
        return serve_bytes(
            request,
            self.files[kind],
            content_type="application/gzip",
            cut_after=self.cut_next.pop(kind, None),
        )


if __name__ == "__main__":
    for kind in SAMPLE_SOURCES:
        sample_dump(kind).write_bytes(build_sample(kind))
