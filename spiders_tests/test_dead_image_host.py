"""A dead image host holds no record: each is stored within IMAGES_TIMEOUT, the next crawl
fetches what was missed (contentcrawl/pipelines/images.py)."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from scrapy.utils.defer import deferred_f_from_coro_f

from contentcrawl.spiders.igdb_games import IgdbGamesSpider
from spiders_tests.conftest import read_store
from spiders_tests.crawling import crawl
from spiders_tests.fakes.igdb import FakeIgdb, own_covers, sample_games
from spiders_tests.fakes.server import FakeRequest, FakeResponse, FakeServer
from spiders_tests.settings_for import IGDB_FAST_SLOTS, igdb_settings

GAMES = 60
IMAGES_TIMEOUT = 1.0
# Seconds the whole first crawl may take with a dead image host: the API part, then one
# image deadline per round of CONCURRENT_ITEMS records, with room for a loaded machine.
CRAWL_BOUND = 12.0


def cover_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (30, 40), (20, 90, 160)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def image_host() -> Iterator[FakeServer]:
    """An image CDN serving a PNG for every ``/t_cover_big/<image_id>.jpg``."""
    server = FakeServer().start()
    cover = cover_bytes()

    @server.route("GET", r"/t_cover_big/\w+\.jpg")
    def image(request: FakeRequest) -> FakeResponse:
        return FakeResponse(200, cover, {"Content-Type": "image/png"})

    yield server
    server.stop()


def image_settings(
    igdb: FakeIgdb, image_host: FakeServer, store_settings: dict[str, Any], tmp_path: Path
) -> dict[str, Any]:
    """An IGDB crawl with images on, its covers on ``image_host``."""
    images_slot = {**IGDB_FAST_SLOTS["igdb_images"], "backoff_max": IMAGES_TIMEOUT}
    return igdb_settings(
        igdb,
        store_settings,
        DOWNLOAD_SLOTS={**IGDB_FAST_SLOTS, "igdb_images": images_slot},
        IGDB_PAGE_SIZE=20,
        IGDB_PARALLEL_RANGES=3,
        IGDB_IMAGE_URL=f"{image_host.url}/t_cover_big",
        IGDB_SYNC_OVERLAP=0,
        IMAGES_ENABLED=True,
        IMAGES_STORE=str(tmp_path / "images"),
        IMAGES_TIMEOUT=IMAGES_TIMEOUT,
        STORE_FAILED_DIR=str(tmp_path / "failed"),
    )


def stored_games(store_settings: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return read_store(
        store_settings, lambda store: {d["igdb_id"]: d for d in store.iter_documents("games")}
    )


@pytest.mark.timing
@pytest.mark.parametrize("dead", ["closed_port", "never_answers"])
@deferred_f_from_coro_f
async def test_a_dead_image_host_holds_no_record_and_the_next_crawl_fetches_the_images(
    dead: str,
    fake_server: FakeServer,
    image_host: FakeServer,
    store_settings: dict[str, Any],
    tmp_path: Path,
) -> None:
    games = own_covers(sample_games(GAMES))
    igdb = FakeIgdb(fake_server, games, requests_per_second=None, max_open=None)
    settings = image_settings(igdb, image_host, store_settings, tmp_path)
    port = image_host.port
    if dead == "closed_port":
        image_host.stop()
    else:
        image_host.stall()

    started = time.monotonic()
    first = await crawl(IgdbGamesSpider, settings, mode="full")
    elapsed = time.monotonic() - started

    stats = first.stats.get_stats()
    assert elapsed < CRAWL_BOUND, elapsed
    assert stats["finish_reason"] == "finished"
    assert stats["store/games/inserted"] == GAMES
    assert stats["images/games/missing"] == GAMES
    assert stats["images/games/failed"] == GAMES
    assert "images/games/downloaded" not in stats
    # The image host's slot is its own; its pauses stay within the image deadline and the
    # API slot was never paused.
    slot = f"igdb_images@127.0.0.1:{port}"
    assert not [key for key in stats if key.startswith("retry/igdb/")]
    assert "retry/igdb_images/backoff_seconds" not in stats
    assert stats.get(f"retry/{slot}/backoff_seconds", 0) <= IMAGES_TIMEOUT * 1.25 * 3
    assert "retry/count" not in stats  # an image is not retried within the crawl
    assert all(not game["images"] for game in stored_games(store_settings).values())
    served = sum(igdb.games_served.values())

    if dead == "closed_port":
        image_host.start(port)
    else:
        image_host.unstall()
    second = await crawl(IgdbGamesSpider, settings)

    stats = second.stats.get_stats()
    # An incremental crawl that finds no changed game still completes the stored records.
    assert sum(igdb.games_served.values()) == served
    assert stats["images/games/recovered"] == GAMES
    assert stats["images/games/downloaded"] == GAMES
    assert "images/games/missing" not in stats
    games = stored_games(store_settings)
    assert len(games) == GAMES
    for game in games.values():
        (image,) = game["images"]
        assert image["url"] == game["cover_url"]
        digest = hashlib.sha1(game["cover_url"].encode()).hexdigest()  # noqa: S324
        assert image["path"] == f"games/{game['igdb_id']}/{digest}.jpg"
        assert (tmp_path / "images" / image["path"]).is_file()
        assert game["_meta"]["fetched_at"]

    third = await crawl(IgdbGamesSpider, settings)
    assert "images/games/recovered" not in third.stats.get_stats()  # nothing left noted
