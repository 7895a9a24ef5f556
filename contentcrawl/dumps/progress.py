"""Progress of a long dump read or download: one log line every interval, with rate and ETA."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

# The package's logger: the log lines keep the name they had before the package split.
logger = logging.getLogger(__package__)


def format_bytes(count: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """``3725`` -> ``"1:02:05"``."""
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """A log line every ``interval`` seconds: records/s, bytes done / total, percent, ETA.

    ``update(done_bytes, records)`` is cheap enough to call per batch; it logs only when
    the interval has passed. The ETA extrapolates the byte rate since the start.
    """

    def __init__(
        self,
        label: str,
        total_bytes: int | None,
        interval: float,
        *,
        log: logging.Logger | logging.LoggerAdapter[Any] = logger,
        clock: Callable[[], float] = time.monotonic,
        start_bytes: int = 0,
    ) -> None:
        self.label = label
        self.total_bytes = total_bytes
        self.interval = interval
        self.log = log
        self.clock = clock
        self.started = clock()
        self.start_bytes = start_bytes
        self._next = self.started + interval

    def update(self, done_bytes: int, records: int | None = None) -> None:
        """Log the progress line when the interval has passed since the last one."""
        now = self.clock()
        if now < self._next:
            return
        self._next = now + self.interval
        self.log.info("%s", self.describe(done_bytes, records, now))

    def describe(
        self, done_bytes: int, records: int | None = None, now: float | None = None
    ) -> str:
        """The progress line for ``done_bytes`` read and ``records`` produced so far."""
        elapsed = max((self.clock() if now is None else now) - self.started, 1e-9)
        parts = [self.label + ":"]
        if records is not None:
            parts.append(f"{records:,} records ({records / elapsed:,.0f}/s),")
        byte_rate = (done_bytes - self.start_bytes) / elapsed
        if self.total_bytes:
            percent = 100.0 * done_bytes / self.total_bytes
            parts.append(
                f"{format_bytes(done_bytes)} / {format_bytes(self.total_bytes)} ({percent:.1f}%),"
            )
        else:
            parts.append(f"{format_bytes(done_bytes)},")
        parts.append(f"{format_bytes(byte_rate)}/s,")
        if self.total_bytes and byte_rate > 0:
            eta = max(self.total_bytes - done_bytes, 0) / byte_rate
            parts.append(f"ETA {format_duration(eta)}")
        else:
            parts.append("ETA unknown")
        return " ".join(parts)
