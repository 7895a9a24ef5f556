"""The sample MusicBrainz data: artists from the recorded bodies, and dumps made of them.

The artists are the three recorded lookups (Tombs, Perkele, Ed Sheeran) with the release
groups recorded with them, and the artists of the recorded Manowar and Solstice searches
(lookup bodies made from their search hits: score dropped, ``ended`` false, as a lookup
has them; no release groups); see ``data/musicbrainz/PROVENANCE.md``. The dumps are the
same entity JSON, one compact document a line, in archives laid out as MusicBrainz's
(``write_archive``, ``build_archive``). The fake ws/2 and dump host that serve them are
``fakes/musicbrainz.py``.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent.parent / "data" / "musicbrainz"
DUMP_TIMESTAMP = "2021-05-18 00:10:01.481391+00"
TOMBS = "8b2cccef-ad8b-4029-911e-14157e4cd5ae"
PERKELE = "9d62c5a5-a94f-4e22-b40f-e3f394191b3f"
ED_SHEERAN = "b8a7c51f-362c-4dcb-a259-bc6e0095f0a6"
MANOWAR = "00eeed6b-5897-4359-8347-b8cd28375331"
ERIC_ADAMS = "4c96a93c-85ab-4aaa-83f2-bd1ad759e63b"  # Manowar's singer, in its search
LOOKUP_FILES = {
    TOMBS: "artist_8b2cccef_inc_release-groups_tombs_2021.json",
    PERKELE: "artist_9d62c5a5_inc_release-groups_perkele_2021.json",
    ED_SHEERAN: "artist_b8a7c51f_inc_url-rels_releases_ratings_tags.json",
}
SEARCH_FILES = {
    "manowar": "artist_search_manowar_2021.json",
    "solstice": "artist_search_solstice_2021.json",
    "anynonexistentartist": "artist_search_empty_2021.json",
}
# Release groups recorded apart from their artist (lookups and searches of release groups).
RELEASE_GROUP_FILES = {
    ED_SHEERAN: ["release-group_lookup_inc_many.json"],
    None: ["release-group_search_many_2021.json", "release-group_search_one_result_2021.json"],
}


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def _lookup_from_hit(hit: dict[str, Any]) -> dict[str, Any]:
    """A lookup body from a search hit: no score, ``ended`` false, areas without life-span."""
    doc = {key: value for key, value in hit.items() if key != "score"}
    life = dict(doc.get("life-span") or {})
    life["ended"] = bool(life.get("ended")) or life.get("end") is not None
    doc["life-span"] = life
    for key in ("area", "begin-area"):
        if isinstance(doc.get(key), dict):
            doc[key] = {k: v for k, v in doc[key].items() if k != "life-span"}
    return doc


def _release_group(doc: dict[str, Any]) -> dict[str, Any]:
    """A release group as a browse or dump line has it (no releases, relations, score)."""
    return {k: v for k, v in doc.items() if k not in ("releases", "relations", "score", "count")}


def credit_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The artist credit naming one artist alone, as ws/2 writes it."""
    artist = {
        "id": doc["id"],
        "name": doc["name"],
        "sort-name": doc.get("sort-name"),
        "type": doc.get("type"),
        "type-id": doc.get("type-id"),
        "disambiguation": doc.get("disambiguation") or "",
    }
    return [{"name": doc["name"], "joinphrase": "", "artist": artist}]


@dataclass
class FakeArtist:
    doc: dict[str, Any]  # the lookup body, every include it has, no linked lists
    release_groups: list[dict[str, Any]] = field(default_factory=list)


def sample_artists() -> dict[str, FakeArtist]:
    """Every artist of the recorded bodies, by MBID (see the module docstring)."""
    artists: dict[str, FakeArtist] = {}
    for mbid, name in LOOKUP_FILES.items():
        body = load(name)
        groups = body.pop("release-groups", [])
        body.pop("releases", None)
        artists[mbid] = FakeArtist(body, [_release_group(group) for group in groups])
    for mbid, names in RELEASE_GROUP_FILES.items():
        if mbid is not None:
            artists[mbid].release_groups += [_release_group(load(name)) for name in names]
    for name in SEARCH_FILES.values():
        for hit in load(name)["artists"]:
            artists.setdefault(hit["id"], FakeArtist(_lookup_from_hit(hit)))
    return artists


def recorded_searches() -> dict[str, list[dict[str, Any]]]:
    """The recorded search hits by (lower-case) query."""
    return {query: load(name)["artists"] for query, name in SEARCH_FILES.items()}


def dump_docs(entity: str) -> list[dict[str, Any]]:
    """The sample dump's entity JSON: every recorded artist, or every recorded release group."""
    artists = sample_artists()
    if entity == "artist":
        return [artist.doc for artist in artists.values()]
    groups: dict[str, dict[str, Any]] = {}
    for artist in artists.values():
        for group in artist.release_groups:
            # Dump lines carry every include: the credit the recorded lookups left out too.
            credited = {"artist-credit": credit_of(artist.doc), **group}
            groups.setdefault(group["id"], credited)
    for name in RELEASE_GROUP_FILES[None]:
        for group in load(name)["release-groups"]:
            groups.setdefault(group["id"], _release_group(group))
    return list(groups.values())


def dump_lines(docs: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """Entity JSON as dump lines: compact, one per line."""
    for doc in docs:
        yield json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def generated_docs(entity: str, count: int) -> Iterator[dict[str, Any]]:
    """``count`` sample documents cycled, each under a fresh MBID, made on the fly."""
    samples = dump_docs(entity)
    for number in range(count):
        doc = dict(samples[number % len(samples)])
        doc["id"] = f"{number:08x}-0000-4000-8000-{number:012x}"
        yield doc


def _add_member(archive: tarfile.TarFile, name: str, data: bytes | Path) -> None:
    if isinstance(data, Path):
        info = archive.gettarinfo(str(data), arcname=name)
        info.mtime, info.uid, info.gid, info.uname, info.gname = 1_621_296_601, 0, 0, "", ""
        with data.open("rb") as handle:
            archive.addfile(info, handle)
        return
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 1_621_296_601, 0o644
    archive.addfile(info, io.BytesIO(data))


def write_archive(
    path: Path,
    entity: str,
    lines: Iterable[bytes],
    *,
    timestamp: str = DUMP_TIMESTAMP,
    preset: int | None = None,
) -> Path:
    """A dump archive as MusicBrainz lays it out: metadata files, then ``mbdump/<entity>``.

    The data member is written to a file next to ``path`` first (tar needs its size up
    front), so a large generated dump never sits in memory. ``path`` ending in ``.tar.xz``
    is xz-compressed (``preset`` as ``lzma``'s), ``.tar`` is not.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    data = path.with_name(path.name + ".data")
    with data.open("wb") as out:
        out.writelines(lines)
    compressed = path.name.endswith(".xz")
    options: dict[str, Any] = {"preset": preset} if compressed and preset is not None else {}
    try:
        with tarfile.open(path, "w:xz" if compressed else "w", **options) as archive:
            _add_member(archive, "COPYING", b"The data in this archive is CC0 (see README).\n")
            _add_member(archive, "JSON_DUMPS_SCHEMA_NUMBER", b"1\n")
            _add_member(archive, "README", b"MusicBrainz JSON dump (contentcrawl test sample)\n")
            _add_member(archive, "SCHEMA_SEQUENCE", b"26\n")
            _add_member(archive, "TIMESTAMP", timestamp.encode() + b"\n")
            _add_member(archive, f"mbdump/{entity}", data)
    finally:
        data.unlink()
    return path


def build_archive(entity: str, docs: Iterable[dict[str, Any]], tmp_dir: Path) -> bytes:
    """The bytes of a small ``<entity>.tar.xz`` dump of ``docs``."""
    path = write_archive(tmp_dir / f"{entity}.tar.xz", entity, dump_lines(docs))
    return path.read_bytes()
