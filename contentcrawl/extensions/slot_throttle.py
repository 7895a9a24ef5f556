"""AutoThrottle with per-slot limits: never below a slot's learnt rate, per-slot concurrency."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scrapy.extensions.throttle import AutoThrottle

from contentcrawl.pacing import configured_slot

if TYPE_CHECKING:
    from scrapy import Request, Spider
    from scrapy.crawler import Crawler
    from scrapy.http import Response


class SlotAutoThrottle(AutoThrottle):
    """Stock AutoThrottle, with each ``DOWNLOAD_SLOTS`` entry setting its own bounds.

    A slot's floor is the delay of its learnt rate (``contentcrawl.pacing``: its configured
    ``delay``, the published limit, until a 429/503 lowers the rate) instead of
    ``DOWNLOAD_DELAY``, and its optional ``target_concurrency`` replaces
    ``AUTOTHROTTLE_TARGET_CONCURRENCY``. A ``<slot>@<host>`` slot takes ``<slot>``'s
    entry. Slots absent from ``DOWNLOAD_SLOTS`` behave as under stock AutoThrottle.
    """

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        settings = crawler.settings
        self.default_target_concurrency = self.target_concurrency
        self.slot_delays: dict[str, float] = {}
        self.slot_target_concurrency: dict[str, float] = {}
        for key, conf in settings.getdict("DOWNLOAD_SLOTS").items():
            if "delay" in conf:
                self.slot_delays[key] = float(conf["delay"])
            if "target_concurrency" in conf:
                target = float(conf["target_concurrency"])
                if target <= 0:
                    raise ValueError(
                        f"DOWNLOAD_SLOTS[{key!r}]['target_concurrency'] must be above 0, "
                        f"not {target!r}"
                    )
                self.slot_target_concurrency[key] = target

    def _spider_opened(self, spider: Spider) -> None:
        super()._spider_opened(spider)
        self.default_mindelay = self.mindelay
        self.default_maxdelay = self.maxdelay

    def _response_downloaded(self, response: Response, request: Request, spider: Spider) -> None:
        # Stock _adjust_delay reads its bounds from these attributes and is not told the
        # slot's key: set them for this response's slot before it runs (signals are
        # handled one at a time on the reactor thread).
        key = request.meta.get("download_slot")
        configured = configured_slot(key) if key else key
        floor = self.slot_delays.get(configured, self.default_mindelay)
        rates = getattr(self.crawler.engine.downloader, "rates", None)
        self.mindelay = floor if rates is None or key is None else rates.delay(key, floor)
        self.maxdelay = max(self.default_maxdelay, self.mindelay)
        self.target_concurrency = self.slot_target_concurrency.get(
            configured, self.default_target_concurrency
        )
        super()._response_downloaded(response, request, spider)
