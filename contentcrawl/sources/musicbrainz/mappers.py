"""MusicBrainz mappers: pure functions from ws/2 entity JSON to artist and album items."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeGuard

from contentcrawl.items import AlbumItem, ArtistItem, ContentItem, Json

# The same JSON arrives from lookups, browses and dump lines, with keys in a random order in
# every response; lists are sorted here so a record's content hash does not depend on it.

_MBID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def is_mbid(value: Any) -> TypeGuard[str]:
    """Whether ``value`` is an MBID (a lower-case UUID string)."""
    return isinstance(value, str) and _MBID.fullmatch(value) is not None


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return value.strip() or None


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[Mapping[str, Any]]:
    return [entry for entry in value if isinstance(entry, dict)] if isinstance(value, list) else []


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return sorted({entry.strip() for entry in value if isinstance(entry, str) and entry.strip()})


def whole_number(value: Any) -> int | None:
    """An integer as is (a count, a total); None for anything else, booleans included."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def area(value: Any) -> Json | None:
    """An area as ``{mbid, name, sort_name, iso_3166_1_codes}`` (None when absent)."""
    if not isinstance(value, dict) or not is_mbid(value.get("id")):
        return None
    return {
        "mbid": value["id"],
        "name": _text(value.get("name")),
        "sort_name": _text(value.get("sort-name")),
        "iso_3166_1_codes": _strings(value.get("iso-3166-1-codes")),
    }


def aliases(value: Any) -> list[Json]:
    """Aliases as ``{name, sort_name, locale, type, primary, begin_date, end_date}``."""
    found = [
        {
            "name": name,
            "sort_name": _text(alias.get("sort-name")),
            "locale": _text(alias.get("locale")),
            "type": _text(alias.get("type")),
            "primary": alias.get("primary") is True,
            # Lookups, browses and dumps say "begin"/"end", search results "begin-date".
            "begin_date": _text(alias.get("begin")) or _text(alias.get("begin-date")),
            "end_date": _text(alias.get("end")) or _text(alias.get("end-date")),
        }
        for alias in _dicts(value)
        if (name := _text(alias.get("name")))
    ]
    return sorted(found, key=lambda a: (a["name"], a["locale"] or "", a["type"] or "", str(a)))


def tags(value: Any) -> list[Json]:
    """Tags as ``{name, count}``, by name (a count of 0 is a real, down-voted tag)."""
    found = {
        name: {"name": name, "count": whole_number(tag.get("count"))}
        for tag in _dicts(value)
        if (name := _text(tag.get("name")))
    }
    return [found[name] for name in sorted(found)]


def genres(value: Any) -> list[Json]:
    """Genres as ``{mbid, name, count}``, by name."""
    found = {
        name: {"mbid": genre.get("id"), "name": name, "count": whole_number(genre.get("count"))}
        for genre in _dicts(value)
        if (name := _text(genre.get("name")))
    }
    return [found[name] for name in sorted(found)]


def rating(value: Any) -> Json | None:
    """``{value, votes_count}``, or None when nobody has rated."""
    if not isinstance(value, dict):
        return None
    score = value.get("value")
    votes = whole_number(value.get("votes-count")) or 0
    if not isinstance(score, int | float) or isinstance(score, bool) or not votes:
        return None
    try:
        score = float(score)
    except OverflowError:  # an integer beyond any float: not a score
        return None
    # NaN and Infinity parse too (Python's json accepts them); neither is a score.
    return {"value": score, "votes_count": votes} if math.isfinite(score) else None


def url_relations(value: Any) -> list[Json]:
    """The URL relations (official site, Wikidata, Discogs…) as ``{type, url, ended}``."""
    found = {
        (_text(relation.get("type")) or "", resource): {
            "type": _text(relation.get("type")),
            "url": resource,
            "ended": relation.get("ended") is True,
        }
        for relation in _dicts(value)
        if (resource := _text(_dict(relation.get("url")).get("resource")))
    }
    return [found[key] for key in sorted(found)]


def artist_credit(value: Any) -> list[Json]:
    """An artist credit, in order: ``{mbid, name (as credited), artist_name, joinphrase}``."""
    entries = []
    for entry in _dicts(value):
        artist = _dict(entry.get("artist"))
        mbid = artist.get("id")
        entries.append(
            {
                "mbid": mbid if is_mbid(mbid) else None,
                "name": _text(entry.get("name")) or _text(artist.get("name")),
                "artist_name": _text(artist.get("name")),
                # The joinphrase is spacing and punctuation (" & ", " feat. "): kept as is.
                "joinphrase": entry.get("joinphrase")
                if isinstance(entry.get("joinphrase"), str)
                else "",
            }
        )
    return entries


def artist_item(payload: Mapping[str, Any]) -> ArtistItem:
    """An ``ArtistItem`` from an artist lookup (``inc=ARTIST_INC``) or an artist dump line."""
    life = _dict(payload.get("life-span"))
    # One record can carry the area both as "begin-area" and the legacy "begin_area".
    begin_area = payload.get("begin-area", payload.get("begin_area"))
    end_area = payload.get("end-area", payload.get("end_area"))
    end_date = _text(life.get("end"))
    return ArtistItem(
        mbid=payload["id"],
        name=_text(payload.get("name")),
        sort_name=_text(payload.get("sort-name")),
        type=_text(payload.get("type")),
        gender=_text(payload.get("gender")),
        country=_text(payload.get("country")),
        area=area(payload.get("area")),
        begin_area=area(begin_area),
        end_area=area(end_area),
        begin_date=_text(life.get("begin")),
        end_date=end_date,
        # "ended" is null in search results and false in lookups: a boolean here.
        ended=life.get("ended") is True or end_date is not None,
        disambiguation=_text(payload.get("disambiguation")),
        aliases=aliases(payload.get("aliases")),
        tags=tags(payload.get("tags")),
        genres=genres(payload.get("genres")),
        rating=rating(payload.get("rating")),
        urls=url_relations(payload.get("relations")),
        isnis=_strings(payload.get("isnis")),
        ipis=_strings(payload.get("ipis")),
    )


def album_item(payload: Mapping[str, Any], artist_mbid: str | None = None) -> AlbumItem:
    """An ``AlbumItem`` from a release group (browse, lookup or dump line).

    ``artist_mbids`` are the credited artists; ``artist_mbid`` (the artist it was browsed
    for) stands in only when the payload carries no artist credit.
    """
    credit = artist_credit(payload.get("artist-credit"))
    mbids = list(dict.fromkeys(entry["mbid"] for entry in credit if entry["mbid"]))
    if not mbids and artist_mbid:
        mbids = [artist_mbid]
    return AlbumItem(
        mbid=payload["id"],
        title=_text(payload.get("title")),
        # ws/2 sends null for release groups with only secondary types, such as demos.
        primary_type=_text(payload.get("primary-type")),
        secondary_types=_strings(payload.get("secondary-types")),
        first_release_date=_text(payload.get("first-release-date")),
        disambiguation=_text(payload.get("disambiguation")),
        artist_credit=credit,
        artist_mbids=mbids,
        tags=tags(payload.get("tags")),
        genres=genres(payload.get("genres")),
        rating=rating(payload.get("rating")),
        urls=url_relations(payload.get("relations")),
    )


# Dump entity (``mbdump/<entity>``) → the mapper of its lines.
DUMP_MAPPERS: dict[str, Callable[[Mapping[str, Any]], ContentItem]] = {
    "artist": artist_item,
    "release-group": album_item,
}
# Dump entity → the item class its mapper makes (a chunk's records travel as one batch).
DUMP_ITEM_CLASSES: dict[str, type[ContentItem]] = {
    "artist": ArtistItem,
    "release-group": AlbumItem,
}
