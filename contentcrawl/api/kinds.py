"""The kinds of record the API serves: URL segment, key format, summary fields, images."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from contentcrawl.api.read_indexes import READ_MODELS, ReadModel
from contentcrawl.store.base import COLLECTION_KEYS

MBID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


@dataclass(frozen=True)
class Kind:
    """One kind of record: ``name`` is both its URL segment and its store collection.

    ``key_prefix``/``key_suffix`` describe Open Library keys, served by their last part
    (``/works/OL45804W`` is ``/works/OL45804W`` in the store and ``OL45804W`` in URLs).
    ``images`` names the fields holding the remote image URL (a string or a list).
    """

    name: str
    singular: str
    title: str
    fields: tuple[str, ...]
    images: tuple[str, ...] = ()
    key_prefix: str = ""
    key_suffix: str = ""

    @property
    def model(self) -> ReadModel:
        return READ_MODELS[self.name]

    @property
    def key_field(self) -> str:
        return COLLECTION_KEYS[self.name]

    @property
    def int_keys(self) -> bool:
        return self.key_field in ("tmdb_id", "igdb_id")

    @property
    def key_pattern(self) -> str:
        """The regular expression a key in a URL must match."""
        if self.int_keys:
            return r"^[1-9][0-9]{0,17}$"
        if self.key_prefix:
            return rf"^OL[1-9][0-9]*{self.key_suffix}$"
        return MBID_PATTERN

    def store_key(self, url_id: str) -> Any:
        """The store key of an id taken from a URL (already checked against ``key_pattern``)."""
        if self.int_keys:
            return int(url_id)
        return f"{self.key_prefix}{url_id}"

    def url_id(self, key: Any) -> str:
        """The id of a store key as it appears in URLs."""
        text = str(key)
        return text.removeprefix(self.key_prefix) if self.key_prefix else text

    def summary_fields(self) -> tuple[str, ...]:
        """Fields of a list entry: key, title, the kind's own, image URLs and local images."""
        names = [self.key_field, self.title, *self.fields, *self.images]
        if self.images:
            names.append("images")
        return tuple(dict.fromkeys(names))


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            "movies",
            "movie",
            "title",
            (
                "original_title",
                "release_date",
                "original_language",
                "status",
                "popularity",
                "vote_average",
                "genres",
            ),
            images=("poster_url",),
        ),
        Kind(
            "series",
            "series",
            "name",
            (
                "original_name",
                "first_air_date",
                "original_language",
                "status",
                "popularity",
                "vote_average",
                "genres",
            ),
            images=("poster_url",),
        ),
        Kind(
            "people",
            "person",
            "name",
            ("known_for_department", "birthday", "popularity"),
            images=("profile_url",),
        ),
        Kind(
            "games",
            "game",
            "name",
            ("first_release_date", "genres", "platforms", "total_rating", "total_rating_count"),
            images=("cover_url",),
        ),
        Kind("artists", "artist", "name", ("sort_name", "type", "country", "disambiguation")),
        Kind(
            "albums",
            "album",
            "title",
            ("primary_type", "first_release_date", "artist_credit", "artist_mbids"),
        ),
        Kind(
            "books",
            "book",
            "title",
            ("subtitle", "author_names", "author_keys", "publish_date", "isbn_13", "work_key"),
            images=("cover_urls",),
            key_prefix="/books/",
            key_suffix="M",
        ),
        Kind(
            "works",
            "work",
            "title",
            ("subtitle", "author_keys", "first_publish_date"),
            images=("cover_urls",),
            key_prefix="/works/",
            key_suffix="W",
        ),
        Kind(
            "authors",
            "author",
            "name",
            ("birth_date", "death_date"),
            images=("photo_urls",),
            key_prefix="/authors/",
            key_suffix="A",
        ),
    )
}

# An ISBN-10 or ISBN-13 once hyphens and spaces are gone (the store keeps them that way).
ISBN = re.compile(r"^(?:\d{9}[\dX]|\d{13})$")


def isbn_of(query: str) -> str | None:
    """The ISBN a search query is, normalised as the store keeps ISBNs, or None."""
    candidate = query.replace("-", "").replace(" ", "").upper()
    return candidate if ISBN.match(candidate) else None


def search_words(query: str, limit: int = 10) -> list[str]:
    """The words of a search query, lower case, letters and digits only (at most ``limit``)."""
    return re.findall(r"[^\W_]+", query.lower())[:limit]
