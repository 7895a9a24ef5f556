"""The read query contract: one small interface, two implementations (SQLite, MongoDB).

The API asks for pages of records matching filters in an order, for word searches and
for many records by key; each backend answers with the indexes ``ensure_read_indexes``
built for it. Records come back as dicts holding only the ``fields`` asked for.

To add a backend: subclass ``ReadQueries``, implement the abstract methods, and return it
from ``contentcrawl.api.queries.queries_for``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from contentcrawl.api.read_indexes import Filter, ReadModel, Sort

Json = dict[str, Any]


@dataclass(frozen=True)
class Condition:
    """One filter applied with its value (a year as an int, anything else as given)."""

    filter: Filter
    value: Any


class ReadQueries(ABC):
    """Read-only queries over the records of one store; deleted records are never returned."""

    @abstractmethod
    def find(
        self,
        model: ReadModel,
        conditions: Sequence[Condition],
        sort: Sort,
        *,
        offset: int,
        limit: int,
        fields: Sequence[str],
    ) -> list[Json]:
        """Records matching every condition, in ``sort`` order (ties by key, same direction)."""

    @abstractmethod
    def search(
        self,
        model: ReadModel,
        words: Sequence[str],
        *,
        offset: int,
        limit: int,
        fields: Sequence[str],
    ) -> list[Json]:
        """Records whose searched fields hold a word starting with each of ``words``.

        Ordered by the model's ``rank`` sort. Words are lower-case letters and digits.
        """

    @abstractmethod
    def get_many(
        self, collection: str, keys: Sequence[Any], fields: Sequence[str]
    ) -> dict[Any, Json]:
        """The records among ``keys`` that the store has, by key."""

    @abstractmethod
    def facet(self, model: ReadModel, filter_: Filter) -> list[tuple[Any, int]]:
        """Each value of a ``member`` filter with its number of records, most common first."""
