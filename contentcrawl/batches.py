"""What flows through the pipelines besides a lone record item.

Dump imports yield ``ItemBatch``es: one Scrapy item carrying many records, because Scrapy's
own cost per item (signals, deferreds, a log record) is several times that of reading and
storing a dump line. The pipelines validate, fetch images for and store each record of a
batch as they would a lone item; ``item_scraped_count`` counts the records. A
``PreparedBatch`` carries records the dump workers already validated and made store
records. A spider tells the store that a record is gone at its source with a
``DeletionMark``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from contentcrawl.items import ContentItem

if TYPE_CHECKING:
    from contentcrawl.store.base import Record


@dataclass(repr=False)
class ItemBatch:
    """Records read together from a dump, carried through the pipelines as one item."""

    items: list[ContentItem]

    def __len__(self) -> int:
        return len(self.items)

    def joined(self, later: ItemBatch) -> ItemBatch | None:
        """One batch of this one's records then ``later``'s; None when they cannot be one
        (a ``PreparedBatch`` joins only another of its item class)."""
        if type(later) is not ItemBatch:
            return None
        return ItemBatch(self.items + later.items)

    def __repr__(self) -> str:
        # Scrapy logs an item whole (scraped, dropped, failed): a summary, not 1,000 records.
        if not self.items:
            return "ItemBatch(no records)"
        first, last = self.items[0], self.items[-1]
        kinds = "/".join(sorted({record.collection for record in self.items}))
        return (
            f"ItemBatch({len(self.items)} {kinds} records, "
            f"{getattr(first, first.key_field, None)!r} … {getattr(last, last.key_field, None)!r})"
        )


@dataclass(frozen=True)
class DeletionMark:
    """A record its source no longer has (a 404 for its id), for the store to flag.

    Not a record: validation and images let it pass, the store pipeline sets the stored
    record's ``_meta.deleted_at`` (``Store.mark_deleted``, the record is kept) and counts
    it in ``<source>/<collection>/marked_deleted``; it counts in no item total.
    """

    source: str
    collection: str
    key: Any


def record_count(item: object) -> int:
    """How many records an item stands for: a batch's, none for a deletion mark, else one."""
    if isinstance(item, ItemBatch):
        return len(item)
    return 0 if isinstance(item, DeletionMark) else 1


class PreparedBatch(ItemBatch):
    """A batch whose records dump workers already validated and made store records.

    The workers ran the validation pipeline's checks and built each store record (canonical
    JSON and hash) in their own processes, so the validation pipeline passes the batch on
    and the store pipeline writes ``records`` as they are. ``items`` (for feed exports) are
    made again from the records' JSON only when something asks for them.
    """

    def __init__(self, item_class: type[ContentItem], records: list[Record]) -> None:
        self.item_class = item_class
        self.records = records
        self._items: list[ContentItem] | None = None

    @property
    def items(self) -> list[ContentItem]:  # type: ignore[override]
        if self._items is None:
            self._items = [
                self.item_class(
                    **record.content, revision=record.revision, fetched_at=record.fetched_at
                )
                for record in self.records
            ]
        return self._items

    def __len__(self) -> int:
        return len(self.records)

    def joined(self, later: ItemBatch) -> ItemBatch | None:
        if not isinstance(later, PreparedBatch) or later.item_class is not self.item_class:
            return None
        return PreparedBatch(self.item_class, self.records + later.records)

    def __repr__(self) -> str:
        if not self.records:
            return "PreparedBatch(no records)"
        key_field = self.item_class.key_field
        return (
            f"PreparedBatch({len(self.records)} {self.item_class.collection} records, "
            f"{self.records[0].key(key_field)!r} … {self.records[-1].key(key_field)!r})"
        )


def records_of(item: object) -> list[ContentItem]:
    """The records an item carries: a batch's, a lone record itself, else none."""
    if isinstance(item, ItemBatch):
        return item.items
    if isinstance(item, ContentItem):
        return [item]
    return []
