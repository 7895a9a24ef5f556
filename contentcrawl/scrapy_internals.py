"""The few private Scrapy attributes the project still touches, each behind one function.

Scrapy 2.19 leaves no public way to do these; each function names the upstream report whose
fix would let it go. Nothing else in the project touches a private Scrapy attribute.
"""

from __future__ import annotations

from scrapy.core.engine import ExecutionEngine


def set_engine_heartbeat_interval(seconds: float) -> None:
    """Make every engine started from now on look for idleness every ``seconds``.

    When the last item leaves the pipelines with no download in flight, nothing wakes the
    engine until this heartbeat (5 s, a class attribute with no setting) finds the spider
    idle, so every crawl ends that much later. The wait was traced to this hard-coded
    heartbeat in scrapy-plugins/scrapy-zyte-api#235; no Scrapy setting exists for it yet.
    """
    ExecutionEngine._SLOT_HEARTBEAT_INTERVAL = seconds
