"""IGDB (api.igdb.com v4): Apicalypse queries, parallel id-range paging, payload→item mappers.

IGDB answers POSTed Apicalypse queries (``fields …; where …; sort …; limit …;``) with JSON
arrays. Authentication (Twitch app token, ``Client-ID``) is added by
``contentcrawl.middlewares.igdb_oauth.IgdbOAuthMiddleware``, not here.

A crawl starts with one multiquery that asks for the number of matching records and the
highest matching id, splits ``(0, highest id]`` into up to ``IGDB_PARALLEL_RANGES`` id ranges
and pages through each range on its own (``where id > last & id <= end; sort id asc; limit
500``). Several ranges keep several pages waiting in the ``igdb`` download slot, so the
crawl runs at the slot's rate (the account's limit) instead of one page per round trip.

Full mode reads every record; incremental mode reads those with ``updated_at`` newer than
the start of the last clean run (minus ``IGDB_SYNC_OVERLAP`` seconds for clock skew), saved
by the ``SyncState`` extension as ``<spider name>/sync``. ``mode=failed`` replays the pages
and records earlier runs gave up on (``contentcrawl.failures``).

With ``REDIS_URL`` set (``contentcrawl.extensions.distributed``) one worker sends the probe
and every worker pages ranges from the shared queue. The probe and each page are keys of the
run (``probe:games``, ``range:<after>-<end>``, with the run's conditions after ``;``), each
game its id: a page records the games and the next page it found, then settles its own key,
and the reconcile asks again for what a killed worker left (a game by ``where id = N``).

To add an IGDB kind: subclass ``IgdbSpider`` with ``name``, ``endpoint``, ``collection``,
``fields`` and ``to_item``.
"""

from contentcrawl.sources.igdb.mappers import (
    external_ids,
    game_item,
    iso_date,
    iso_datetime,
    unexpanded_fields,
    valid_id,
)
from contentcrawl.sources.igdb.queries import (
    GAME_EXPANDED_FIELDS,
    GAME_FIELDS,
    apicalypse,
    count_query,
    multiquery,
    plan_ranges,
)
from contentcrawl.sources.igdb.spider import IgdbSpider, error_message

__all__ = [
    "GAME_EXPANDED_FIELDS",
    "GAME_FIELDS",
    "IgdbSpider",
    "apicalypse",
    "count_query",
    "error_message",
    "external_ids",
    "game_item",
    "iso_date",
    "iso_datetime",
    "multiquery",
    "plan_ranges",
    "unexpanded_fields",
    "valid_id",
]
