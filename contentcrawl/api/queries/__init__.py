"""Read queries of the API over the configured store."""

from contentcrawl.api.queries.base import Condition, Json, ReadQueries, queries_for

__all__ = ["Condition", "Json", "ReadQueries", "queries_for"]
