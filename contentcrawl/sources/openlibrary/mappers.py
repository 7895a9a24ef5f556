"""Open Library payloads to items: pure helpers, the edition/work/author mappers, dump lines."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from contentcrawl.dates import normalise_date
from contentcrawl.dumps.read import parsed_json
from contentcrawl.items import AuthorItem, BookItem, Json, WorkItem


def text_value(value: Any) -> str | None:
    """A text field that is a string or ``{"type": "/type/text", "value": ...}`` (both occur)."""
    if isinstance(value, dict):
        value = value.get("value")
    return value if isinstance(value, str) else None


def str_list(value: Any) -> list[str]:
    """The strings of a list field (anything else in it is ignored)."""
    if not isinstance(value, list):
        return []
    return [entry for entry in value if isinstance(entry, str)]


def unique(values: Iterable[str]) -> list[str]:
    """``values`` without repeats, first occurrence kept (editions list an author twice)."""
    return list(dict.fromkeys(values))


def ref_keys(value: Any) -> list[str]:
    """Keys of a reference list ``[{"key": "/authors/OL1A"}, ...]``, repeats removed."""
    if not isinstance(value, list):
        return []
    keys = (entry.get("key") for entry in value if isinstance(entry, dict))
    return unique(key for key in keys if isinstance(key, str) and key)


def work_author_keys(value: Any) -> list[str]:
    """Author keys of a work: ``[{"author": {"key": ...} | "/authors/...", "type": ...}]``."""
    if not isinstance(value, list):
        return []
    keys: list[str] = []
    for entry in value:
        author = entry.get("author") if isinstance(entry, dict) else None
        if isinstance(author, dict):
            author = author.get("key")
        if isinstance(author, str) and author:
            keys.append(author)
    return unique(keys)


def positive_ids(value: Any) -> list[int]:
    """Cover/photo ids, without the ``-1`` placeholders the dumps carry."""
    if not isinstance(value, list):
        return []
    return [
        entry
        for entry in value
        if isinstance(entry, int) and not isinstance(entry, bool) and entry > 0
    ]


def image_url(base: str, image_id: int) -> str:
    """Large image URL on the covers server: ``{base}/id/{id}-L.jpg``."""
    return f"{base.rstrip('/')}/id/{image_id}-L.jpg"


def clean_isbn(value: str) -> str:
    """An ISBN without hyphens or spaces, check digit ``x`` upper-cased."""
    return value.replace("-", "").replace(" ", "").upper()


def as_int(value: Any) -> int | None:
    """An integer field, or None when it is missing or not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    # isdecimal, not isdigit: int() rejects digits such as "²" that isdigit accepts.
    if isinstance(value, str) and value.strip().isdecimal():
        return int(value)
    return None


def full_title(doc: Json) -> str | None:
    """The title with its ``title_prefix`` ("The ", "La ", "L'") put back in front."""
    title = text_value(doc.get("title"))
    prefix = text_value(doc.get("title_prefix"))
    if not prefix or not title:
        return title
    if prefix[-1].isspace() or prefix.endswith("'"):
        return prefix + title
    return f"{prefix} {title}"


def best_date(raw: str | None) -> str | None:
    """ISO form of a free-text date; the raw text when unreadable (validation counts it)."""
    try:
        return normalise_date(raw)
    except ValueError:
        return raw


def edition_identifiers(doc: Json) -> Json:
    """``identifiers`` plus the ids editions keep at top level (OCLC, LCCN, Internet Archive)."""
    identifiers = doc.get("identifiers")
    merged: Json = dict(identifiers) if isinstance(identifiers, dict) else {}
    oclc = str_list(doc.get("oclc_numbers"))
    # Older editions spell it "oclc_number" (seen in the editions dump); both are kept.
    legacy_oclc = doc.get("oclc_number")
    if legacy_oclc:
        oclc = unique([*oclc, *str_list(legacy_oclc)])
    if oclc:
        merged.setdefault("oclc", oclc)
    lccn = str_list(doc.get("lccn"))
    if lccn:
        merged.setdefault("lccn", lccn)
    ocaid = doc.get("ocaid")
    if isinstance(ocaid, str) and ocaid:
        merged.setdefault("ocaid", [ocaid])
    return merged


def links_of(value: Any) -> list[Json]:
    """``[{"title", "url"}]`` of a links field (the ``type`` reference is dropped)."""
    if not isinstance(value, list):
        return []
    return [
        {"title": entry.get("title"), "url": entry["url"]}
        for entry in value
        if isinstance(entry, dict) and isinstance(entry.get("url"), str)
    ]


def edition_links(doc: Json) -> list[Json]:
    """An edition's links: ``links`` plus the older ``uris`` (titled by the parallel
    ``uri_descriptions``) and ``url`` lists, each URL once."""
    links = links_of(doc.get("links"))
    uris = str_list(doc.get("uris"))
    descriptions = doc.get("uri_descriptions")
    titles = descriptions if isinstance(descriptions, list) else []
    for index, uri in enumerate(uris):
        title = titles[index] if index < len(titles) else None
        links.append({"title": title if isinstance(title, str) else None, "url": uri})
    links.extend({"title": None, "url": url} for url in str_list(doc.get("url")))
    by_url: dict[str, Json] = {}
    for link in links:
        by_url.setdefault(link["url"], link)
    return list(by_url.values())


def contributors_of(doc: Json) -> list[Json]:
    """``[{"role", "name"}]`` from ``contributors`` and the older free-text ``contributions``
    ("Translated by X"), in that order."""
    found: list[Json] = []
    entries = doc.get("contributors")
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            role = entry.get("role")
            found.append({"role": role if isinstance(role, str) else None, "name": entry["name"]})
    found.extend({"role": None, "name": name} for name in str_list(doc.get("contributions")))
    return found


def toc_entries(value: Any) -> list[Json]:
    """A table of contents as ``[{"level", "label", "title", "pagenum"}]``: entries are
    objects, or plain strings in older records."""
    if not isinstance(value, list):
        return []
    entries: list[Json] = []
    for entry in value:
        if isinstance(entry, str):
            entries.append({"level": 0, "label": None, "title": entry, "pagenum": None})
        elif isinstance(entry, dict):
            entries.append(
                {
                    "level": as_int(entry.get("level")) or 0,
                    "label": text_value(entry.get("label")),
                    "title": text_value(entry.get("title")),
                    "pagenum": text_value(entry.get("pagenum")),
                }
            )
    return entries


def object_of(value: Any) -> Json:
    """A copy of an object field; {} when it is absent or not an object."""
    return dict(value) if isinstance(value, dict) else {}


def key_names(value: Any) -> list[str]:
    """Last parts of a reference list's keys (``[{"key": "/languages/eng"}]`` → ``eng``)."""
    return [key.rsplit("/", 1)[-1] for key in ref_keys(value)]


def one_text(value: Any) -> str | None:
    """A text field some records hold as a one-string list (``translation_of``)."""
    if isinstance(value, list):
        texts = str_list(value)
        return "; ".join(texts) if texts else None
    return text_value(value)


def book_from_edition(doc: Json, *, covers_url: str, revision: int | None = None) -> BookItem:
    """A ``BookItem`` from an edition record (dump JSON column or ``/books/<id>.json``)."""
    cover_ids = positive_ids(doc.get("covers"))
    cover_urls = [image_url(covers_url, cover_id) for cover_id in cover_ids]
    raw_date = text_value(doc.get("publish_date"))
    works = ref_keys(doc.get("works"))
    return BookItem(
        ol_key=doc["key"],
        revision=revision if revision is not None else as_int(doc.get("revision")),
        title=full_title(doc),
        subtitle=text_value(doc.get("subtitle")),
        author_keys=ref_keys(doc.get("authors")),
        work_key=works[0] if works else None,
        publish_date_raw=raw_date,
        publish_date=best_date(raw_date),
        copyright_date=text_value(doc.get("copyright_date")),
        edition_name=text_value(doc.get("edition_name")),
        by_statement=text_value(doc.get("by_statement")),
        description=text_value(doc.get("description")),
        notes=text_value(doc.get("notes")),
        first_sentence=text_value(doc.get("first_sentence")),
        physical_format=text_value(doc.get("physical_format")),
        physical_dimensions=text_value(doc.get("physical_dimensions")),
        weight=text_value(doc.get("weight")),
        pagination=text_value(doc.get("pagination")),
        publishers=str_list(doc.get("publishers")),
        publish_places=str_list(doc.get("publish_places")),
        publish_country=text_value(doc.get("publish_country")),
        series=str_list(doc.get("series")),
        contributors=contributors_of(doc),
        other_titles=str_list(doc.get("other_titles")),
        # "work_title" is the older, single-valued spelling (seen in the editions dump).
        work_titles=unique([*str_list(doc.get("work_titles")), *str_list(doc.get("work_title"))]),
        translation_of=one_text(doc.get("translation_of")),
        translated_from=key_names(doc.get("translated_from")),
        table_of_contents=toc_entries(doc.get("table_of_contents")),
        isbn_10=unique(clean_isbn(isbn) for isbn in str_list(doc.get("isbn_10"))),
        isbn_13=unique(clean_isbn(isbn) for isbn in str_list(doc.get("isbn_13"))),
        number_of_pages=as_int(doc.get("number_of_pages")),
        languages=key_names(doc.get("languages")),
        subjects=str_list(doc.get("subjects")),
        # Editions spell these both ways ("subject_place" and "subject_places").
        subject_places=unique(
            [*str_list(doc.get("subject_places")), *str_list(doc.get("subject_place"))]
        ),
        subject_people=str_list(doc.get("subject_people")),
        subject_times=unique(
            [*str_list(doc.get("subject_times")), *str_list(doc.get("subject_time"))]
        ),
        genres=str_list(doc.get("genres")),
        lc_classifications=str_list(doc.get("lc_classifications")),
        dewey_decimal_class=str_list(doc.get("dewey_decimal_class")),
        classifications=object_of(doc.get("classifications")),
        identifiers=edition_identifiers(doc),
        links=edition_links(doc),
        cover_ids=cover_ids,
        cover_urls=cover_urls,
        image_urls=list(cover_urls),
    )


def work_from_doc(doc: Json, *, covers_url: str, revision: int | None = None) -> WorkItem:
    """A ``WorkItem`` from a work record (dump JSON column or ``/works/<id>.json``)."""
    cover_ids = positive_ids(doc.get("covers"))
    cover_urls = [image_url(covers_url, cover_id) for cover_id in cover_ids]
    return WorkItem(
        ol_key=doc["key"],
        revision=revision if revision is not None else as_int(doc.get("revision")),
        title=full_title(doc),
        subtitle=text_value(doc.get("subtitle")),
        author_keys=work_author_keys(doc.get("authors")),
        description=text_value(doc.get("description")),
        first_sentence=text_value(doc.get("first_sentence")),
        first_publish_date=text_value(doc.get("first_publish_date")),
        lc_classifications=str_list(doc.get("lc_classifications")),
        dewey_number=str_list(doc.get("dewey_number")),
        subjects=str_list(doc.get("subjects")),
        subject_places=str_list(doc.get("subject_places")),
        subject_people=str_list(doc.get("subject_people")),
        subject_times=str_list(doc.get("subject_times")),
        links=links_of(doc.get("links")),
        cover_ids=cover_ids,
        cover_urls=cover_urls,
        image_urls=list(cover_urls),
    )


def author_from_doc(doc: Json, *, photos_url: str, revision: int | None = None) -> AuthorItem:
    """An ``AuthorItem`` from an author record (dump JSON column or ``/authors/<id>.json``)."""
    photo_ids = positive_ids(doc.get("photos"))
    photo_urls = [image_url(photos_url, photo_id) for photo_id in photo_ids]
    return AuthorItem(
        ol_key=doc["key"],
        revision=revision if revision is not None else as_int(doc.get("revision")),
        name=text_value(doc.get("name")),
        personal_name=text_value(doc.get("personal_name")),
        fuller_name=text_value(doc.get("fuller_name")),
        title=text_value(doc.get("title")),
        alternate_names=str_list(doc.get("alternate_names")),
        # Validation normalises each date and keeps the text in its "_raw" twin.
        birth_date=text_value(doc.get("birth_date")),
        death_date=text_value(doc.get("death_date")),
        date=text_value(doc.get("date")),
        bio=text_value(doc.get("bio")),
        wikipedia=text_value(doc.get("wikipedia")),
        links=links_of(doc.get("links")),
        remote_ids=object_of(doc.get("remote_ids")),
        photo_ids=photo_ids,
        photo_urls=photo_urls,
        image_urls=list(photo_urls),
    )


# --- dump lines ---------------------------------------------------------------------------


class BadLineError(ValueError):
    """A dump line that cannot become a record; ``reason`` names its stat."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class DumpLine:
    """One parsed dump line."""

    type: str
    key: str
    revision: int
    last_modified: str
    doc: Json


def parse_line(line: bytes, wanted_type: str | None = None) -> DumpLine | str:
    """The parsed line, or its type (a str) when it is not ``wanted_type``; ``BadLineError``.

    The type is checked before the JSON is parsed, so skipping other kinds costs little.
    The key column wins over a missing ``key`` in the JSON.
    """
    columns = line.split(b"\t", 4)
    if len(columns) != 5:
        raise BadLineError("columns", f"{len(columns)} tab-separated columns, expected 5")
    type_, key = columns[0].decode("utf-8", "replace"), columns[1].decode("utf-8", "replace")
    if wanted_type is not None and type_ != wanted_type:
        return type_
    if not key.startswith("/"):
        raise BadLineError("key", f"no record key in the key column ({key!r})")
    try:
        revision = int(columns[2])
    except ValueError:
        raise BadLineError("revision", f"revision {columns[2][:40]!r} is not a number") from None
    try:
        doc = parsed_json(columns[4])
    except (ValueError, RecursionError) as error:
        # RecursionError: nesting deeper than the json module can follow.
        raise BadLineError("json", str(error)) from None
    if not isinstance(doc, dict):
        raise BadLineError("json", f"JSON column is a {type(doc).__name__}, not an object")
    doc.setdefault("key", key)
    return DumpLine(type_, key, revision, columns[3].decode("utf-8", "replace"), doc)
