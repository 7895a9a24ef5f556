"""Reading a MusicBrainz dump file: the ``mbdump/<entity>`` members of a tar archive, or a
JSON-lines file named after its entity, as ``(entity, line number, line)``."""

from __future__ import annotations

import lzma
import tarfile
import zlib
from collections.abc import Iterator
from typing import IO

from contentcrawl.dumps import DumpFile, DumpReadError

DATA_PREFIX = "mbdump/"
# Members outside mbdump/ up to this size are kept as metadata (TIMESTAMP and friends).
METADATA_MAX_BYTES = 4096
_ARCHIVE_SUFFIXES = (".tar", ".tar.xz", ".tar.gz", ".tar.bz2")
_COMPRESSION_SUFFIXES = (".xz", ".gz", ".bz2")
_JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")


def is_archive(name: str) -> bool:
    """Whether a dump file name is a tar archive (``artist.tar.xz``) rather than JSON lines."""
    return name.lower().endswith(_ARCHIVE_SUFFIXES)


def plain_entity(name: str) -> str:
    """The entity a JSON-lines file holds, by name (``artist.jsonl.gz`` → ``artist``)."""
    stem = name.lower()
    for suffixes in (_COMPRESSION_SUFFIXES, _JSON_SUFFIXES):
        for suffix in suffixes:
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
    return stem


class ArchiveLines:
    """``(entity, line number, line)`` of every ``mbdump/<entity>`` member of a tar stream.

    ``stream`` is the decompressed archive (``DumpFile.stream``); members are visited in
    archive order and never held whole: small members outside ``mbdump/`` land in
    ``metadata`` (name → text) as they pass. A truncated or corrupt archive raises
    ``DumpReadError`` naming the line after the last one read.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.metadata: dict[str, str] = {}
        self.members: list[str] = []
        self.line_number = 0

    def __iter__(self) -> Iterator[tuple[str, int, bytes]]:
        try:
            with tarfile.open(fileobj=self.stream, mode="r|") as archive:
                for member in archive:
                    yield from self._member(archive, member)
        except EOFError as error:
            raise DumpReadError(self.line_number + 1, "truncated", str(error)) from None
        except tarfile.ReadError as error:
            reason = "truncated" if "unexpected end" in str(error) else "corrupt"
            raise DumpReadError(self.line_number + 1, reason, str(error)) from None
        except (OSError, zlib.error, lzma.LZMAError, tarfile.TarError) as error:
            raise DumpReadError(self.line_number + 1, "corrupt", str(error)) from None

    def _member(
        self, archive: tarfile.TarFile, member: tarfile.TarInfo
    ) -> Iterator[tuple[str, int, bytes]]:
        if not member.isfile():
            return
        name = member.name.removeprefix("./")
        self.members.append(name)
        handle = archive.extractfile(member)
        if handle is None:
            return
        if name.startswith(DATA_PREFIX):
            entity = name[len(DATA_PREFIX) :]
            self.line_number = 0
            for line in handle:
                self.line_number += 1
                yield entity, self.line_number, line.rstrip(b"\r\n")
            # A member shorter than its header says: tarfile pads it silently.
            if handle.tell() < member.size:
                raise EOFError(f"{name} ended at byte {handle.tell()} of {member.size}")
        elif member.size <= METADATA_MAX_BYTES:
            self.metadata[name] = handle.read().decode("utf-8", "replace").strip()


def plain_lines(dump: DumpFile, entity: str) -> Iterator[tuple[str, int, bytes]]:
    """``(entity, line number, line)`` of a JSON-lines dump file."""
    for number, line in dump.lines():
        yield entity, number, line
