"""Cursors advance only when a crawl finishes cleanly, and live in the store."""

from __future__ import annotations

from typing import Any

from scrapy.utils.defer import deferred_f_from_coro_f

from contentcrawl.extensions.sync_state import SyncState
from contentcrawl.items import MovieItem
from contentcrawl.sources.base import ContentSpider
from contentcrawl.verdict import decided_verdict
from spiders_tests.conftest import open_store_for
from spiders_tests.crawling import crawl
from spiders_tests.fakes.server import FakeResponse, FakeServer

CURSOR = "test_movies/changes"


class CursorSpider(ContentSpider):
    """Reads the cursor, fetches the pages after it, stages each page as the new cursor."""

    name = "test_cursor"
    slot = "test"

    def __init__(self, base_url: str, fail: str = "", pages: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url
        self.fail = fail
        self.pages = pages

    async def start(self):  # type: ignore[override]
        sync = self.crawler.get_extension(SyncState)
        saved = await sync.load(CURSOR) or {"page": 0}
        self.seen_cursor = saved["page"]
        for page in range(saved["page"] + 1, saved["page"] + 1 + self.pages):
            yield self.request(f"{self.base_url}/page/{page}", callback=self.parse_page)

    def parse_page(self, response: Any) -> Any:
        if self.fail == "callback":
            raise ValueError("mapper bug")
        page = response.json()["page"]
        self.crawler.get_extension(SyncState).stage(CURSOR, {"page": page})
        yield MovieItem(tmdb_id=page, title=f"Page {page}")


def page_server(server: FakeServer) -> FakeServer:
    @server.route("GET", r"/page/(?P<number>\d+)")
    def page(request: Any, number: str) -> FakeResponse:
        return FakeResponse.json({"page": int(number)})

    return server


@deferred_f_from_coro_f
async def test_cursor_advances_after_a_clean_run_only(
    fake_server: FakeServer, store_settings: dict[str, Any]
) -> None:
    page_server(fake_server)
    first = await crawl(CursorSpider, store_settings, base_url=fake_server.url)
    assert first.spider.seen_cursor == 0
    assert first.stats.get_value("sync_state/saved") == 1

    failing = await crawl(CursorSpider, store_settings, base_url=fake_server.url, fail="callback")
    assert failing.spider.seen_cursor == 1
    assert failing.stats.get_value("sync_state/saved") is None

    again = await crawl(CursorSpider, store_settings, base_url=fake_server.url)
    assert again.spider.seen_cursor == 1  # the failed run did not move it
    assert [r.path for r in fake_server.hits()] == ["/page/1", "/page/2", "/page/2"]

    store = open_store_for(store_settings)
    try:
        assert store.get_state(CURSOR) == {"page": 2}
    finally:
        store.close()


@deferred_f_from_coro_f
async def test_gave_up_requests_keep_the_cursor(
    fake_server: FakeServer, store_settings: dict[str, Any]
) -> None:
    @fake_server.route("GET", r"/page/(?P<number>\d+)")
    def second_page_overloaded(request: Any, number: str) -> FakeResponse:
        if number == "2":
            return FakeResponse.json({"status_message": "busy"}, 503)
        return FakeResponse.json({"page": int(number)})

    settings = {**store_settings, "RETRY_TIMES": 1, "RETRY_BACKOFF_BASE": 0.01}
    crawler = await crawl(CursorSpider, settings, base_url=fake_server.url, pages=2)
    assert crawler.stats.get_value("store/movies/inserted") == 1  # page 1 made it
    assert crawler.stats.get_value("sync_state/not_saved") == 1
    assert decided_verdict(crawler).failed == {
        "retry_count": "1 requests given up after their retries",
        "error_count": "1 errors logged",
    }
    store = open_store_for(store_settings)
    try:
        assert store.get_state(CURSOR) is None
    finally:
        store.close()
