"""Set additions a spider's callbacks make at once, sent to Redis after them, in order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis


class PendingAdditions:
    """``add()`` keeps a set addition; a task sends all kept ones, in the order made.

    Callbacks are synchronous and may not wait for Redis; the order still matters (a page's
    finds are recorded before the page is settled), so one sender at a time sends them in
    pipelines. A batch that fails stays kept, for the next ``send()`` or ``flush()``.
    """

    def __init__(self, redis: Redis, on_error: Callable[[BaseException], None]) -> None:
        self.redis = redis
        self.on_error = on_error
        self._kept: list[tuple[str, list[str]]] = []
        self._sender: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def pending(self) -> bool:
        """Whether some addition is not in Redis yet."""
        return bool(self._kept)

    def add(self, key: str, members: Iterable[str]) -> None:
        """Keep ``members`` for the set ``key`` and have them sent."""
        members = list(members)
        if members:
            self._kept.append((key, members))
            self.send()

    def send(self) -> None:
        """Start sending what is kept, unless a sender is at it already."""
        if self._kept and (self._sender is None or self._sender.done()):
            self._sender = asyncio.ensure_future(self.flush())
            self._sender.add_done_callback(self._sent)

    async def flush(self) -> None:
        """Send every kept addition, oldest first."""
        async with self._lock:
            while self._kept:
                batch = list(self._kept)
                pipeline = self.redis.pipeline(transaction=False)
                for key, members in batch:
                    pipeline.sadd(key, *members)
                await pipeline.execute()
                del self._kept[: len(batch)]

    def _sent(self, sender: asyncio.Future[None]) -> None:
        if not sender.cancelled() and (error := sender.exception()) is not None:
            self.on_error(error)
