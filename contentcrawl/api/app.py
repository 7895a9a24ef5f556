"""The read API and browse page over the mirror: ``uvicorn contentcrawl.api.app:app``.

The store is the crawlers' own (``build_store`` on the project settings: SQLite by default,
MongoDB when ``MONGO_URI`` is set); the read indexes are built at startup. JSON routes
live at ``/<kind>...``, ``/genres`` and ``/stats`` (OpenAPI docs at ``/docs`` and ``/redoc``,
which work offline); the server-rendered browse page at ``/`` and ``/browse/...``;
downloaded images at ``/images``.
"""

# No ``from __future__ import annotations``: FastAPI reads the per-kind parameter models
# from the annotations of endpoints made in closures, so they must be real objects.

import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field, create_model
from scrapy.settings import BaseSettings
from scrapy.utils.project import get_project_settings
from starlette.concurrency import run_in_threadpool

from contentcrawl.api import pages
from contentcrawl.api.kinds import KINDS, Kind
from contentcrawl.api.mirror import (
    MAX_PAGE_SIZE,
    BadParameterError,
    Mirror,
    RecordDeletedError,
    RecordNotFoundError,
)
from contentcrawl.api.queries import Json
from contentcrawl.api.read_indexes import ensure_read_indexes
from contentcrawl.store import Store, build_store

logger = logging.getLogger(__name__)

# Kinds with a paged, filtered list at /<kind>; every kind has search and detail.
LISTED = ("movies", "series", "games", "artists", "books")
# Filters served by their own routes (/artists/{mbid}/albums, book search by ISBN, ...).
UNLISTED_FILTERS = {"isbn", "work", "artist", "author"}


def project_settings() -> BaseSettings:
    """The project's settings, found as ``scrapy`` finds them even outside the project dir."""
    os.environ.setdefault("SCRAPY_SETTINGS_MODULE", "contentcrawl.settings")
    return get_project_settings()


def create_app(store: Store | None = None, settings: BaseSettings | None = None) -> FastAPI:
    """The API over ``store`` (opened by the caller) or, when None, the settings' store."""
    settings = settings or project_settings()
    images_dir = Path(settings.get("IMAGES_STORE") or "data/images")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = store is None
        opened = build_store(settings) if store is None else store
        if owned:
            await run_in_threadpool(opened.open)
        try:
            await run_in_threadpool(ensure_read_indexes, opened)
            logger.info("Read API over %s", opened.description)
            app.state.mirror = Mirror(opened, images_dir)
            yield
        finally:
            if owned:
                await run_in_threadpool(opened.close)

    # FastAPI's /docs and /redoc load their scripts and styles from a CDN: blank pages
    # offline. FastAPIOffline serves the same pages with the files its package ships.
    app = FastAPIOffline(
        title="contentcrawl mirror",
        summary="Movies, series, people, games, music and books mirrored from their sources.",
        lifespan=lifespan,
    )
    app.mount("/images", StaticFiles(directory=images_dir, check_dir=False), name="images")
    _add_error_handlers(app)
    app.include_router(pages.router)
    for kind in KINDS.values():
        _add_kind_routes(app, kind)
    _add_overview_routes(app)
    return app


def mirror_of(request: Request) -> Mirror:
    """The mirror the app opened at startup."""
    return request.app.state.mirror


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BadParameterError)
    async def bad_parameter(request: Request, error: BadParameterError) -> JSONResponse:
        # The same shape as FastAPI's own validation errors.
        detail = [{"type": "value_error", "loc": ["query", error.name], "msg": error.message}]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(RecordNotFoundError)
    async def not_found(request: Request, error: RecordNotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=404)

    @app.exception_handler(RecordDeletedError)
    async def deleted(request: Request, error: RecordDeletedError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=410)


class PageOut(BaseModel):
    """One page of records (summary fields, ``id`` for URLs, display ``image``)."""

    items: list[dict[str, Any]]
    page: int
    page_size: int
    has_more: bool


class SearchQuery(BaseModel):
    """Word search: each word must start a word of the searched fields."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=200, description="Words to look for.")
    page: int = Field(1, ge=1)
    page_size: int = Field(20, ge=1, le=MAX_PAGE_SIZE)


def _list_query_model(kind: Kind) -> type[BaseModel]:
    """The query parameters of ``/<kind>``: paging, sort, and the kind's filters."""
    model = kind.model
    sorts = tuple(dict.fromkeys(s.name for s in (model.rank, *model.sorts)))
    fields: dict[str, Any] = {
        "page": (int, Field(1, ge=1)),
        "page_size": (int, Field(20, ge=1, le=MAX_PAGE_SIZE)),
        "sort": (Literal[sorts], Field(model.rank.name)),
    }
    for item in model.filters:
        if item.name in UNLISTED_FILTERS:
            continue
        if item.op == "year":
            fields[item.name] = (int | None, Field(None, ge=1000, le=2999))
        else:
            fields[item.name] = (str | None, Field(None, min_length=1, max_length=100))
    return create_model(
        f"{kind.name.title()}Query", __config__=ConfigDict(extra="forbid"), **fields
    )


def _id_path(kind: Kind) -> Any:
    """The path parameter of a record id of ``kind`` (``Annotated[str, _id_path(kind)]``)."""
    example = {"tmdb_id": "550", "igdb_id": "7346", "mbid": "b8a7c51f-..."}.get(
        kind.key_field, f"OL1{kind.key_suffix}"
    )
    return PathParam(pattern=kind.key_pattern, description=f"The {kind.singular}'s id ({example}).")


def _add_kind_routes(app: FastAPI, kind: Kind) -> None:
    tag = kind.name
    id_path = _id_path(kind)

    if kind.name in LISTED:
        query_model = _list_query_model(kind)
        filter_names = [
            item.name for item in kind.model.filters if item.name not in UNLISTED_FILTERS
        ]

        # FastAPI reads the kind's query model, made at run time, from the annotation; to
        # mypy a variable is no type (_list_page takes it as the BaseModel it is).
        def list_records(
            request: Request,
            params: Annotated[query_model, Query()],  # type: ignore[valid-type]
        ) -> Json:
            return _list_page(mirror_of(request), kind, filter_names, params)

        _page_route(
            app, f"/{kind.name}", list_records, tag, f"List {kind.name}, filtered and sorted."
        )

    def search_records(request: Request, params: Annotated[SearchQuery, Query()]) -> Json:
        page = mirror_of(request).search(kind, params.query, params.page, params.page_size)
        return page.as_json()

    searched = ", ".join(path.replace("[]", "").split(".")[0] for path in kind.model.search)
    if kind.name == "books":
        searched += "; or an ISBN-10/13"
    _page_route(
        app, f"/{kind.name}/search", search_records, tag, f"Search {kind.name} by {searched}."
    )

    if any(item.name == "genre" for item in kind.model.filters):

        def genres(request: Request) -> list[dict[str, Any]]:
            return mirror_of(request).genres(kind)

        _route(app, f"/{kind.name}/genres", genres, tag, f"Genres of {kind.name} with counts.")

    def detail(request: Request, record_id: Annotated[str, id_path]) -> dict[str, Any]:
        return mirror_of(request).detail(kind, record_id)

    _route(app, f"/{kind.name}/{{record_id}}", detail, tag, f"One {kind.singular}.")

    if kind.name in ("movies", "series", "games"):

        def record_credits(request: Request, record_id: Annotated[str, id_path]) -> dict[str, Any]:
            return mirror_of(request).credits(kind, record_id)

        what = "Companies" if kind.name == "games" else "Cast and crew"
        _route(
            app,
            f"/{kind.name}/{{record_id}}/credits",
            record_credits,
            tag,
            f"{what} of a {kind.singular}.",
        )

    if kind.name == "artists":
        albums = KINDS["albums"]

        def artist_albums(
            request: Request,
            record_id: Annotated[str, id_path],
            page: Annotated[int, Query(ge=1)] = 1,
            page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 20,
        ) -> Json:
            mirror = mirror_of(request)
            mirror.record(kind, record_id)
            result = mirror.list(
                albums, {"artist": record_id}, albums.model.rank.name, page, page_size
            )
            return result.as_json()

        _page_route(app, "/artists/{record_id}/albums", artist_albums, tag, "Albums of an artist.")


def _list_page(mirror: Mirror, kind: Kind, filter_names: list[str], params: BaseModel) -> Json:
    values = params.model_dump()
    filters = {name: values[name] for name in filter_names}
    page = mirror.list(kind, filters, values["sort"], values["page"], values["page_size"])
    return page.as_json()


def _route(app: FastAPI, path: str, endpoint: Callable[..., Any], tag: str, summary: str) -> None:
    app.add_api_route(path, endpoint, methods=["GET"], tags=[tag], summary=summary)


def _page_route(
    app: FastAPI, path: str, endpoint: Callable[..., Json], tag: str, summary: str
) -> None:
    """A route whose endpoint returns a page's JSON, which FastAPI checks and documents as
    ``PageOut``."""
    app.add_api_route(
        path, endpoint, methods=["GET"], tags=[tag], summary=summary, response_model=PageOut
    )


def _add_overview_routes(app: FastAPI) -> None:
    @app.get("/genres", tags=["overview"], summary="Genres of every kind that has them.")
    def all_genres(request: Request) -> dict[str, list[dict[str, Any]]]:
        mirror = mirror_of(request)
        return {
            kind.name: mirror.genres(kind)
            for kind in KINDS.values()
            if any(item.name == "genre" for item in kind.model.filters)
        }

    @app.get("/stats", tags=["overview"], summary="Records and last update per collection.")
    def stats(request: Request) -> dict[str, dict[str, Any]]:
        return mirror_of(request).stats()


app = create_app()
