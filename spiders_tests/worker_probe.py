"""A dump line work that tells which frameworks its worker process has loaded. This module
imports none: a worker that unpickles the work imports only what the work needs."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any

from contentcrawl.dumps.workers import WorkedChunk

FRAMEWORKS = frozenset({"scrapy", "twisted"})


@dataclass(frozen=True)
class LoadedFrameworks:
    """Counts, as the chunk's skipped lines, each of ``FRAMEWORKS`` its process has loaded."""

    def __call__(self, lines: list[tuple[int, bytes]], context: Any) -> WorkedChunk:
        loaded = {name.split(".")[0] for name in sys.modules} & FRAMEWORKS
        return WorkedChunk(skipped=Counter(dict.fromkeys(loaded, 1)))
