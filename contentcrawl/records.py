"""An item as the store record it becomes: its content without the provenance fields, in
canonical JSON, with its hash.

It knows nothing of Scrapy: the dump workers make their records with it, and start without
importing Scrapy (see ``contentcrawl.dumps.workers``)."""

from __future__ import annotations

import json
import re
from typing import Any

from contentcrawl.items import ContentItem
from contentcrawl.store.base import Record, utc_now

# Provenance fields of ContentItem: they go to _meta, not into the record's content.
PROVENANCE_FIELDS = ("revision", "fetched_at")


class UnstorableRecordError(ValueError):
    """The item's content is not JSON-serialisable."""


def to_record(item: ContentItem) -> Record:
    """The store record for an item: content without provenance fields, hash computed."""
    # A shallow copy of the dataclass's fields: items hold plain JSON values and are not
    # changed after this last pipeline, so ItemAdapter.asdict()'s deep copy (tens of ms on a
    # large movie) is waste.
    content = dict(vars(item))
    revision = content.pop("revision", None)
    fetched_at = content.pop("fetched_at", None) or utc_now()
    try:
        try:
            return Record(content, item.source, fetched_at=fetched_at, revision=revision)
        except UnicodeEncodeError:
            # A lone surrogate (JSON's "\ud800" escapes decode to one) has no UTF-8 form,
            # so no store can take the text: replaced by U+FFFD, the record is kept.
            content = without_lone_surrogates(content)
            return Record(content, item.source, fetched_at=fetched_at, revision=revision)
    except (TypeError, ValueError) as error:
        key = content.get(item.key_field)
        raise UnstorableRecordError(f"{item.collection} {key!r} is not JSON: {error}") from None


def without_lone_surrogates(content: dict[str, Any]) -> dict[str, Any]:
    """``content`` with every lone surrogate in its text replaced by U+FFFD."""
    return json.loads(_LONE_SURROGATE.sub("\ufffd", json.dumps(content, ensure_ascii=False)))


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
