"""Validation pipeline: ``contentcrawl.validation``'s checks on every record item, a
refused one dropped (``DropItem``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scrapy.exceptions import DropItem

from contentcrawl.batches import DeletionMark, ItemBatch, PreparedBatch
from contentcrawl.validation import InvalidRecordError, RecordValidator

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler


class ValidationDrop(DropItem):
    """The drop of an item validation refused, named as its ``InvalidRecordError`` class:
    Scrapy counts it under that name (``item_dropped_reasons_count/<name>``)."""


# One drop class a refusal (UnknownKind, InvalidKey…), so that Scrapy counts each reason
# apart, under the name a dump worker counts it.
DROPS: dict[type[InvalidRecordError], type[ValidationDrop]] = {
    refusal: type(refusal.__name__, (ValidationDrop,), {"__module__": __name__})
    for refusal in InvalidRecordError.__subclasses__()
}


class ValidationPipeline(RecordValidator):
    """``RecordValidator``'s checks as an item pipeline (see there). A record of an
    ``ItemBatch`` it refuses leaves the batch, counted as Scrapy counts a dropped item; a
    ``PreparedBatch`` was checked in the dump workers; a ``DeletionMark`` passes as it is."""

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler.stats)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    def process_item(self, item: Any) -> Any:
        if isinstance(item, DeletionMark):
            # No record to clean: the spider made it from an id its source answered 404 for.
            return item
        if isinstance(item, PreparedBatch):
            # Validated record by record in the dump workers (``accepted``), counted there.
            return item
        if isinstance(item, ItemBatch):
            item.items = [record for record in item.items if self.accepted(record)]
            return item
        try:
            self.validate(item)
        except InvalidRecordError as refusal:
            drop = DROPS[type(refusal)](str(refusal))
            drop.log_level = self.count_drop(refusal)
            raise drop from None
        return item
