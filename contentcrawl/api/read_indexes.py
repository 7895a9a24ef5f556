"""Read models and the indexes the read API needs, created by ``ensure_read_indexes(store)``.

A ``ReadModel`` says, per collection, which fields are searched by words, which filters
and sorts the API offers and which field orders search results. ``ensure_read_indexes``
turns it into indexes on whichever store is configured:

- SQLite: partial expression indexes on ``json_extract(doc, '$.<field>')`` for filters and
  sorts; an FTS5 table ``<collection>__search`` (rowid = the record's rowid) for word
  search; a ``<collection>__terms(name, term, key)`` table for list fields (genres,
  author keys, ISBNs). Triggers keep both tables in step with every write of the crawlers,
  and leave out records flagged deleted. Each collection's definition is saved in
  ``read_indexes``; a changed definition is dropped and rebuilt.
- MongoDB: one index per filter, sort and searched field.

To make a field filterable or sortable: add it to the collection's model; the next start
of the API builds its index.
"""

# ruff: noqa: S608 - every name and path in this SQL comes from READ_MODELS, never from input.
from __future__ import annotations

import logging
import re
import sqlite3
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pymongo import ASCENDING, DESCENDING

from contentcrawl.store.base import COLLECTION_KEYS, Store

if TYPE_CHECKING:
    from pymongo.database import Database

logger = logging.getLogger(__name__)

FilterOp = Literal["eq", "year", "member"]
# A path is a field name, "field[]" (a list of strings) or "field[].sub" (a list of objects).
_PATH = re.compile(r"^[a-z_0-9]+(\[\](\.[a-z_0-9]+)?)?$")


@dataclass(frozen=True)
class Filter:
    """A filter the API offers: ``eq`` (scalar equals), ``year`` (date in a year), ``member``.

    ``member`` matches a record whose list field (any of ``paths``) holds the value. A
    ``facet`` (genres, languages) has few values, each shared by many records: queries
    check it record by record instead of starting from its (long) list of records.
    """

    name: str
    op: FilterOp
    paths: tuple[str, ...]
    facet: bool = False

    def __post_init__(self) -> None:
        if self.op != "member" and (len(self.paths) != 1 or "[]" in self.paths[0]):
            raise ValueError(f"{self.op} filter {self.name!r} takes one scalar path")
        for path in self.paths:
            if not _PATH.match(path):
                raise ValueError(f"bad path {path!r}")


@dataclass(frozen=True)
class Sort:
    """An order the API offers: a scalar field, ties broken by the key in the same direction."""

    name: str
    path: str
    descending: bool = True


@dataclass(frozen=True)
class ReadModel:
    """What the API reads of one collection and so which indexes it needs."""

    collection: str
    search: tuple[str, ...]
    rank: Sort
    filters: tuple[Filter, ...] = ()
    sorts: tuple[Sort, ...] = field(default=())

    @property
    def key_field(self) -> str:
        return COLLECTION_KEYS[self.collection]

    def filter(self, name: str) -> Filter:
        """The filter called ``name``; ``KeyError`` when the collection has none."""
        for candidate in self.filters:
            if candidate.name == name:
                return candidate
        raise KeyError(name)

    def sort(self, name: str) -> Sort:
        """The sort called ``name``; ``KeyError`` when the collection has none."""
        for candidate in (*self.sorts, self.rank):
            if candidate.name == name:
                return candidate
        raise KeyError(name)


def _genre(path: str = "genres[].name") -> Filter:
    return Filter("genre", "member", (path,), facet=True)


READ_MODELS: dict[str, ReadModel] = {
    model.collection: model
    for model in (
        ReadModel(
            "movies",
            search=("title", "original_title"),
            rank=Sort("popularity", "popularity"),
            filters=(
                Filter("year", "year", ("release_date",)),
                _genre(),
                Filter("language", "eq", ("original_language",)),
                Filter("status", "eq", ("status",)),
            ),
            sorts=(Sort("rating", "vote_average"), Sort("release_date", "release_date")),
        ),
        ReadModel(
            "series",
            search=("name", "original_name"),
            rank=Sort("popularity", "popularity"),
            filters=(
                Filter("year", "year", ("first_air_date",)),
                _genre(),
                Filter("language", "eq", ("original_language",)),
                Filter("status", "eq", ("status",)),
            ),
            sorts=(Sort("rating", "vote_average"), Sort("release_date", "first_air_date")),
        ),
        ReadModel(
            "people",
            search=("name", "also_known_as[]"),
            rank=Sort("popularity", "popularity"),
        ),
        ReadModel(
            "games",
            search=("name", "alternative_names[]"),
            # IGDB has no popularity figure; the number of ratings stands in for it.
            rank=Sort("popularity", "total_rating_count"),
            filters=(
                Filter("year", "year", ("first_release_date",)),
                _genre("genres[]"),
                Filter("platform", "member", ("platforms[]",), facet=True),
            ),
            sorts=(Sort("rating", "total_rating"), Sort("release_date", "first_release_date")),
        ),
        ReadModel(
            "artists",
            search=("name", "sort_name", "aliases[].name"),
            rank=Sort("name", "name", descending=False),
            filters=(
                _genre(),
                Filter("country", "eq", ("country",)),
                Filter("type", "eq", ("type",)),
            ),
        ),
        ReadModel(
            "albums",
            search=("title",),
            rank=Sort("release_date", "first_release_date"),
            filters=(
                Filter("artist", "member", ("artist_mbids[]",)),
                Filter("type", "eq", ("primary_type",)),
            ),
            sorts=(Sort("title", "title", descending=False),),
        ),
        ReadModel(
            "books",
            search=("title", "subtitle", "author_names[]"),
            rank=Sort("release_date", "publish_date"),
            filters=(
                Filter("year", "year", ("publish_date",)),
                Filter("language", "member", ("languages[]",), facet=True),
                Filter("author", "member", ("author_keys[]",)),
                Filter("isbn", "member", ("isbn_10[]", "isbn_13[]")),
                Filter("work", "eq", ("work_key",)),
            ),
            sorts=(Sort("title", "title", descending=False),),
        ),
        ReadModel(
            "works",
            search=("title", "subtitle"),
            rank=Sort("release_date", "first_publish_date"),
            filters=(Filter("author", "member", ("author_keys[]",)),),
            sorts=(Sort("title", "title", descending=False),),
        ),
        ReadModel(
            "authors",
            search=("name", "personal_name", "alternate_names[]"),
            rank=Sort("name", "name", descending=False),
        ),
    )
}


def ensure_read_indexes(store: Store) -> None:
    """Create (or rebuild when their definition changed) the read indexes of every model."""
    from contentcrawl.store.mongo import MongoStore
    from contentcrawl.store.sqlite import SqliteStore

    if isinstance(store, SqliteStore):
        ensure_sqlite_read_indexes(store.connection)
    elif isinstance(store, MongoStore):
        ensure_mongo_read_indexes(store.db)
    else:
        raise TypeError(f"no read indexes for {type(store).__name__}")


# -- SQLite ----------------------------------------------------------------------------------


def json_path(path: str) -> str:
    """The SQLite JSON path literal of a scalar field: ``'$.release_date'``."""
    return f"'$.{path}'"


def sql_field(path: str, doc: str = "doc") -> str:
    """The SQL expression of a scalar field, as written in the expression indexes."""
    return f"json_extract({doc}, {json_path(path)})"


def sql_list_element(path: str, doc: str) -> tuple[str, str]:
    """``(json_each source, element expression)`` of a list path, the element read via ``j``."""
    name, _, sub = path.partition("[]")
    element = f"json_extract(j.value, {json_path(sub[1:])})" if sub else "j.value"
    return f"json_each({doc}, {json_path(name)}) AS j", element


def search_table(collection: str) -> str:
    """The FTS5 table of a collection's searched fields."""
    return f"{collection}__search"


def terms_table(collection: str) -> str:
    """The table of a collection's list-field values: ``(name, term, key)``."""
    return f"{collection}__terms"


def _search_value(path: str, doc: str) -> str:
    if "[]" not in path:
        return sql_field(path, doc)
    source, element = sql_list_element(path, doc)
    return f"(SELECT group_concat({element}, ' ') FROM {source})"


def _terms_selects(model: ReadModel, record: str, source: str) -> list[str]:
    """``SELECT key, name, term`` of every member filter; ``record`` is ``new`` or ``d``."""
    selects = []
    for item in model.filters:
        if item.op != "member":
            continue
        for path in item.paths:
            each, element = sql_list_element(path, f"{record}.doc")
            selects.append(
                f"SELECT {record}.key, '{item.name}', {element} FROM {source}{each} "
                f"WHERE {element} IS NOT NULL AND {record}.deleted_at IS NULL"
            )
    return selects


def sqlite_definition(model: ReadModel) -> list[str]:
    """Every statement that creates a collection's read indexes and fills them."""
    name = model.collection
    search = search_table(name)
    terms = terms_table(name)
    key_value = sql_field(model.key_field)
    columns = [f"c{i}" for i in range(len(model.search))]
    fts_columns = ", ".join([*columns, "rank_value UNINDEXED", "key_value UNINDEXED"])
    statements = [
        f'CREATE VIRTUAL TABLE "{search}" USING fts5({fts_columns}, '
        "tokenize='unicode61 remove_diacritics 2')",
        f'CREATE TABLE "{terms}" (name TEXT NOT NULL, term NOT NULL, key TEXT NOT NULL, '
        "PRIMARY KEY (name, term, key)) WITHOUT ROWID",
        f'CREATE INDEX "{terms}_key" ON "{terms}"(key)',
    ]
    indexed_paths: dict[str, None] = {}
    for item in model.filters:
        if item.op != "member":
            indexed_paths[item.paths[0]] = None
    for order in (model.rank, *model.sorts):
        indexed_paths[order.path] = None
    for path in indexed_paths:
        statements.append(
            f'CREATE INDEX "{name}__{path}" ON "{name}"({sql_field(path)}, {key_value}) '
            "WHERE deleted_at IS NULL"
        )

    def search_row(record: str) -> str:
        doc = f"{record}.doc"
        values = [_search_value(path, doc) for path in model.search]
        rank = sql_field(model.rank.path, doc)
        return ", ".join([f"{record}.rowid", *values, rank, sql_field(model.key_field, doc)])

    fts_insert = f'INSERT INTO "{search}"(rowid, {", ".join(columns)}, rank_value, key_value)'
    insert_new_terms = "".join(
        f'INSERT OR IGNORE INTO "{terms}"(key, name, term) {select};'
        for select in _terms_selects(model, "new", "")
    )
    forget_old = (
        f'DELETE FROM "{search}" WHERE rowid = old.rowid;DELETE FROM "{terms}" WHERE key = old.key;'
    )
    statements += [
        f'CREATE TRIGGER "{name}__read_insert" AFTER INSERT ON "{name}" '
        f"WHEN new.deleted_at IS NULL BEGIN "
        f"{fts_insert} VALUES ({search_row('new')});{insert_new_terms} END",
        f'CREATE TRIGGER "{name}__read_update" AFTER UPDATE OF doc, deleted_at ON "{name}" '
        f"BEGIN {forget_old}{fts_insert} SELECT {search_row('new')} "
        f"WHERE new.deleted_at IS NULL;{insert_new_terms} END",
        f'CREATE TRIGGER "{name}__read_delete" AFTER DELETE ON "{name}" BEGIN {forget_old} END',
        f'{fts_insert} SELECT {search_row("d")} FROM "{name}" AS d WHERE d.deleted_at IS NULL',
        *(
            f'INSERT OR IGNORE INTO "{terms}"(key, name, term) {select}'
            for select in _terms_selects(model, "d", f'"{name}" AS d, ')
        ),
    ]
    return statements


def ensure_sqlite_read_indexes(connection: sqlite3.Connection) -> None:
    """Build the read indexes of each model whose saved definition differs from the code's."""
    connection.execute(
        "CREATE TABLE IF NOT EXISTS read_indexes (collection TEXT PRIMARY KEY, "
        "definition TEXT NOT NULL)"
    )
    saved = dict(connection.execute("SELECT collection, definition FROM read_indexes"))
    for model in READ_MODELS.values():
        statements = sqlite_definition(model)
        definition = ";\n".join(statements)
        if saved.get(model.collection) == definition:
            continue
        logger.info("Building the read indexes of %s", model.collection)
        connection.execute("BEGIN IMMEDIATE")
        try:
            _drop_sqlite_read_indexes(connection, model.collection)
            for statement in statements:
                connection.execute(statement)
            connection.execute(
                "INSERT INTO read_indexes (collection, definition) VALUES (?, ?) "
                "ON CONFLICT(collection) DO UPDATE SET definition = excluded.definition",
                (model.collection, definition),
            )
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")


def _drop_sqlite_read_indexes(connection: sqlite3.Connection, collection: str) -> None:
    prefix = f"{collection}__"
    rows = connection.execute(
        "SELECT type, name FROM sqlite_master WHERE type IN ('trigger', 'index') "
        "AND sql IS NOT NULL AND substr(name, 1, ?) = ?",
        (len(prefix), prefix),
    ).fetchall()
    for kind, name in rows:
        connection.execute(f'DROP {kind.upper()} IF EXISTS "{name}"')
    # Dropping the FTS5 table drops its shadow tables (<name>_data, ...) too.
    for table in (search_table(collection), terms_table(collection)):
        connection.execute(f'DROP TABLE IF EXISTS "{table}"')


# -- MongoDB ---------------------------------------------------------------------------------


def mongo_path(path: str) -> str:
    """The dotted MongoDB path of a model path: ``genres[].name`` -> ``genres.name``."""
    return path.replace("[]", "")


def ensure_mongo_read_indexes(db: Database) -> None:
    """Create one index per searched field, filter and sort of each model (idempotent)."""
    for model in READ_MODELS.values():
        collection = db[model.collection]
        key = model.key_field
        for path in model.search:
            collection.create_index([(mongo_path(path), ASCENDING)])
        for item in model.filters:
            for path in item.paths:
                collection.create_index([(mongo_path(path), ASCENDING), (key, ASCENDING)])
        for order in (model.rank, *model.sorts):
            direction = DESCENDING if order.descending else ASCENDING
            collection.create_index([(mongo_path(order.path), direction), (key, direction)])
