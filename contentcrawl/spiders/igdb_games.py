"""IGDB games: every game (full) or those changed since the last clean run (incremental).

scrapy crawl igdb_games                     # incremental once a clean run is recorded
scrapy crawl igdb_games -a mode=full -a limit=1000
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contentcrawl.items import GameItem
from contentcrawl.sources.igdb.mappers import game_item
from contentcrawl.sources.igdb.queries import GAME_EXPANDED_FIELDS, GAME_FIELDS
from contentcrawl.sources.igdb.spider import IgdbSpider


class IgdbGamesSpider(IgdbSpider):
    name = "igdb_games"
    endpoint = "games"
    collection = GameItem.collection
    fields = GAME_FIELDS
    expanded_fields = GAME_EXPANDED_FIELDS

    def to_item(self, payload: Mapping[str, Any]) -> GameItem:
        return game_item(payload, self.image_base_url)
