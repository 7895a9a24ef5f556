"""The browse page: server-rendered search across kinds and record pages with their links."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from contentcrawl.api.kinds import KINDS, Kind
from contentcrawl.api.mirror import (
    BadParameterError,
    Mirror,
    RecordDeletedError,
    RecordNotFoundError,
)
from contentcrawl.api.queries import Json

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")

# Results per kind when searching every kind at once, and per page for one kind.
RESULTS_PER_KIND = 5
RESULTS_PER_PAGE = 20
# Entries shown per linked list on a record page (cast, works, ...).
LINKS_SHOWN = 40

Link = dict[str, Any]


def link(kind: str, key: Any, label: Any, note: Any = None, present: bool = True) -> Link:
    """An entry of a linked list: a link to ``/browse/<kind>/<id>`` when the mirror has it."""
    href = f"/browse/{kind}/{KINDS[kind].url_id(key)}" if present and key is not None else None
    return {"label": str(label or key), "href": href, "note": note or None}


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    """The home page: search box and the size of each collection."""
    mirror: Mirror = request.app.state.mirror
    return _render(request, "index.html", {"stats": mirror.stats()})


@router.get("/browse/search", response_class=HTMLResponse)
def search(request: Request, q: str = "", kind: str = "all", page: int = 1) -> HTMLResponse:
    """Results of a search in one kind (paged) or in every kind (the first few of each)."""
    mirror: Mirror = request.app.state.mirror
    if kind != "all" and kind not in KINDS:
        return _error(request, 422, f"unknown kind {kind!r}")
    chosen = list(KINDS.values()) if kind == "all" else [KINDS[kind]]
    size = RESULTS_PER_KIND if kind == "all" else RESULTS_PER_PAGE
    groups = []
    if q.strip():
        try:
            for one in chosen:
                result = mirror.search(one, q, 1 if kind == "all" else page, size)
                if result.items:
                    groups.append({"kind": one, "result": result})
        except BadParameterError as error:
            return _error(request, 422, error.message)
    context = {"q": q, "kind": kind, "page": page, "groups": groups, "title": title_of}
    context["note"] = note_of
    return _render(request, "search.html", context)


@router.get("/browse/{kind_name}/{record_id}", response_class=HTMLResponse)
def record_page(request: Request, kind_name: str, record_id: str) -> HTMLResponse:
    """A record: image, facts, text, and lists linking to the records it names."""
    mirror: Mirror = request.app.state.mirror
    kind = KINDS.get(kind_name)
    if kind is None:
        return _error(request, 404, f"no such kind {kind_name!r}")
    if re.match(kind.key_pattern, record_id) is None:
        return _error(request, 404, f"no {kind.singular} {record_id} in the mirror")
    try:
        record = mirror.with_links(kind, mirror.record(kind, record_id))
    except RecordNotFoundError as error:
        return _error(request, 404, str(error))
    except RecordDeletedError as error:
        return _error(request, 410, str(error))
    view = VIEWS[kind.name](mirror, record)
    return _render(request, "record.html", {"kind": kind, "record": record, **view})


def _render(request: Request, template: str, context: Json, status: int = 200) -> HTMLResponse:
    return templates.TemplateResponse(
        request, template, {"kinds": KINDS, **context}, status_code=status
    )


def _error(request: Request, status: int, message: str) -> HTMLResponse:
    return _render(request, "error.html", {"status": status, "message": message}, status)


def title_of(kind: Kind, record: Json) -> str:
    """A record's display title."""
    return str(record.get(kind.title) or record.get("id"))


# The date whose year follows a title in result lists.
DATES = {
    "movies": "release_date",
    "series": "first_air_date",
    "games": "first_release_date",
    "albums": "first_release_date",
    "books": "publish_date",
    "works": "first_publish_date",
    "authors": "birth_date",
}


def note_of(kind: Kind, record: Json) -> str:
    """What follows a title in a result list: year, authors, department or country."""
    parts = [_year(record.get(DATES.get(kind.name, "")))]
    parts += [
        _names(record.get("author_names")),
        record.get("known_for_department"),
        record.get("country"),
    ]
    return " · ".join(part for part in parts if part)


# -- record views: facts, text and linked lists per kind ------------------------------------


def _year(value: Any) -> str | None:
    return str(value)[:4] if value else None


def _names(values: Iterable[Any] | None, field: str = "name") -> str | None:
    names = [v.get(field) if isinstance(v, dict) else v for v in values or []]
    return ", ".join(str(name) for name in names if name) or None


def _facts(*pairs: tuple[str, Any]) -> list[tuple[str, str]]:
    return [(label, str(value)) for label, value in pairs if value not in (None, "", [])]


def _credit_links(kind: str, entries: list[Json], note_field: str, title_field: str) -> list[Link]:
    return [
        link(
            kind, entry.get("id"), entry.get(title_field), entry.get(note_field), entry["in_mirror"]
        )
        for entry in entries[:LINKS_SHOWN]
    ]


def _summaries(kind: str, records: list[Json], note: Callable[[Json], Any]) -> list[Link]:
    target = KINDS[kind]
    return [
        link(kind, record[target.key_field], title_of(target, record), note(record))
        for record in records[:LINKS_SHOWN]
    ]


def _screen_view(mirror: Mirror, record: Json, kind: Kind, date_field: str) -> Json:
    people = mirror.credits_of(kind, record)
    crew = [
        entry
        for entry in people["crew"]
        if entry.get("job")
        in ("Director", "Screenplay", "Writer", "Producer", "Original Music Composer")
    ]
    cast = people["cast"]
    for entry in cast:
        roles = entry.get("roles") or []
        entry.setdefault("character", _names(roles, "character"))
    return {
        "subtitle": _year(record.get(date_field)),
        "facts": _facts(
            ("Original title", record.get("original_title") or record.get("original_name")),
            ("Released" if kind.name == "movies" else "First aired", record.get(date_field)),
            ("Status", record.get("status")),
            ("Language", record.get("original_language")),
            ("Genres", _names(record.get("genres"))),
            ("Runtime", record.get("runtime") and f"{record['runtime']} min"),
            ("Seasons", record.get("number_of_seasons")),
            ("Networks", _names(record.get("networks"))),
            (
                "Rating",
                record.get("vote_average")
                and f"{record['vote_average']} ({record.get('vote_count')} votes)",
            ),
            ("IMDb", record.get("imdb_id") or (record.get("external_ids") or {}).get("imdb_id")),
        ),
        "text": record.get("overview"),
        "sections": [
            ("Cast", _credit_links("people", cast, "character", "name")),
            ("Crew", _credit_links("people", crew, "job", "name")),
        ],
    }


def _movie_view(mirror: Mirror, record: Json) -> Json:
    return _screen_view(mirror, record, KINDS["movies"], "release_date")


def _series_view(mirror: Mirror, record: Json) -> Json:
    view = _screen_view(mirror, record, KINDS["series"], "first_air_date")
    creators = mirror.queries.get_many(
        "people", [c.get("id") for c in record.get("created_by") or []], []
    )
    view["sections"].insert(
        0,
        (
            "Created by",
            [
                link("people", c.get("id"), c.get("name"), present=c.get("id") in creators)
                for c in record.get("created_by") or []
            ],
        ),
    )
    return view


def _person_view(mirror: Mirror, record: Json) -> Json:
    movies = record.get("movie_credits") or {}
    series = record.get("tv_credits") or {}
    return {
        "subtitle": record.get("known_for_department"),
        "facts": _facts(
            ("Born", record.get("birthday")),
            ("Died", record.get("deathday")),
            ("Place of birth", record.get("place_of_birth")),
            ("Also known as", ", ".join(record.get("also_known_as") or [])[:300]),
        ),
        "text": record.get("biography"),
        "sections": [
            ("Movies", _credit_links("movies", movies.get("cast", []), "character", "title")),
            ("Series", _credit_links("series", series.get("cast", []), "character", "name")),
            ("Crew", _credit_links("movies", movies.get("crew", []), "job", "title")),
        ],
    }


def _game_view(mirror: Mirror, record: Json) -> Json:
    return {
        "subtitle": _year(record.get("first_release_date")),
        "facts": _facts(
            ("Released", record.get("first_release_date")),
            ("Genres", _names(record.get("genres"))),
            ("Platforms", _names(record.get("platforms"))),
            ("Developers", _names(record.get("developers"))),
            ("Publishers", _names(record.get("publishers"))),
            ("Franchises", _names(record.get("franchises"))),
            ("Rating", record.get("total_rating") and f"{record['total_rating']:.0f}/100"),
        ),
        "text": record.get("summary"),
        "sections": [],
    }


def _artist_view(mirror: Mirror, record: Json) -> Json:
    return {
        "subtitle": record.get("disambiguation"),
        "facts": _facts(
            ("Type", record.get("type")),
            ("Country", record.get("country")),
            (
                "Active",
                " to ".join(filter(None, (record.get("begin_date"), record.get("end_date")))),
            ),
            ("Genres", _names(record.get("genres"))),
        ),
        "text": None,
        "sections": [
            (
                "Albums",
                _summaries(
                    "albums", record["albums"], lambda r: _year(r.get("first_release_date"))
                ),
            )
        ],
    }


def _album_view(mirror: Mirror, record: Json) -> Json:
    return {
        "subtitle": _year(record.get("first_release_date")),
        "facts": _facts(
            (
                "Type",
                " / ".join(
                    filter(None, [record.get("primary_type"), *record.get("secondary_types", [])])
                ),
            ),
            ("Released", record.get("first_release_date")),
            (
                "Credited as",
                "".join(
                    f"{c.get('name', '')}{c.get('joinphrase', '')}"
                    for c in record.get("artist_credit") or []
                    if isinstance(c, dict)
                ),
            ),
        ),
        "text": None,
        "sections": [
            ("Artists", _summaries("artists", record["artists"], lambda r: r.get("country")))
        ],
    }


def _book_view(mirror: Mirror, record: Json) -> Json:
    return {
        "subtitle": record.get("subtitle"),
        "facts": _facts(
            ("By", _names(record.get("author_names"))),
            ("Published", record.get("publish_date") or record.get("publish_date_raw")),
            ("Publishers", _names(record.get("publishers"))),
            ("Pages", record.get("number_of_pages")),
            ("ISBN-13", _names(record.get("isbn_13"))),
            ("ISBN-10", _names(record.get("isbn_10"))),
            ("Languages", _names(record.get("languages"))),
        ),
        "text": None,
        "sections": [
            ("Authors", _summaries("authors", record["authors"], lambda r: None)),
            (
                "Work",
                _summaries("works", record["work"], lambda r: _year(r.get("first_publish_date"))),
            ),
        ],
    }


def _work_view(mirror: Mirror, record: Json) -> Json:
    return {
        "subtitle": record.get("subtitle"),
        "facts": _facts(
            ("First published", record.get("first_publish_date")),
            ("Subjects", ", ".join((record.get("subjects") or [])[:12])),
        ),
        "text": record.get("description"),
        "sections": [
            ("Authors", _summaries("authors", record["authors"], lambda r: None)),
            ("Editions", _summaries("books", record["editions"], lambda r: r.get("publish_date"))),
        ],
    }


def _author_view(mirror: Mirror, record: Json) -> Json:
    return {
        "subtitle": record.get("personal_name"),
        "facts": _facts(("Born", record.get("birth_date")), ("Died", record.get("death_date"))),
        "text": record.get("bio"),
        "sections": [
            (
                "Works",
                _summaries("works", record["works"], lambda r: _year(r.get("first_publish_date"))),
            )
        ],
    }


VIEWS: dict[str, Callable[[Mirror, Json], Json]] = {
    "movies": _movie_view,
    "series": _series_view,
    "people": _person_view,
    "games": _game_view,
    "artists": _artist_view,
    "albums": _album_view,
    "books": _book_view,
    "works": _work_view,
    "authors": _author_view,
}
