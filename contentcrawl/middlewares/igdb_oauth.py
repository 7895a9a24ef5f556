"""IGDB authentication: a Twitch app access token (client-credentials grant) on every API call.

IGDB wants ``Client-ID: <IGDB_CLIENT_ID>`` and ``Authorization: Bearer <app token>``. The
token comes from ``POST TWITCH_TOKEN_URL`` (``client_id``, ``client_secret``,
``grant_type=client_credentials``), lives about 60 days, and an app may hold only 25 at
once, so one token is shared by every run and every worker, kept where
``IGDB_TOKEN_STORE`` says:

- ``store`` (the default): the store's state ``igdb/token``. A secret at rest, in plain
  text (and, for SQLite, in its WAL file too): whoever reads the store can call IGDB as
  the app until the token expires. The SQLite file is owner-only, as is the ``.env``
  whose client secret can mint a token anyway.
- ``redis``: a key in ``REDIS_URL`` that expires with the token, never in the store.
- ``memory``: this process only; each run asks Twitch for a token.

The token request is a real Scrapy download (``engine.download_async``) in the ``twitch``
slot, so it has the project's retries and timeouts; its body, not its URL, carries the
client secret, as Scrapy logs URLs. It has no callback, so out of retries it is not kept as
a dead letter: a replay would post the masked secret, and the next run asks for a token
anyway. Requests waiting for a token share one ``asyncio.Lock``: however many are in
flight, one token request is made. With ``REDIS_URL`` set, workers share a Redis lock as
well: one worker fetches and stores the token, the others wait for it and read it from the
store (workers starting together, or all refused at once on a 401).

An API request carries ``Client-ID`` and the token only while it is downloaded: a retried
or replayed request goes back to the scheduler, which with ``REDIS_URL`` set is a shared
Redis queue storing whole pickled requests, headers included.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlencode, urlsplit

from scrapy import Request, signals
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.http.request import NO_CALLBACK
from scrapy.utils.httpobj import urlparse_cached

from contentcrawl.extensions.crawl_store import crawl_store
from contentcrawl.redaction import redact_text, register_secret
from contentcrawl.store.base import utc_now

if TYPE_CHECKING:
    from typing import Self

    from redis.asyncio import Redis as AsyncRedis
    from scrapy.crawler import Crawler
    from scrapy.http import Response

logger = logging.getLogger(__name__)

STATE_NAME = "igdb/token"
TOKEN_STORES = ("store", "redis", "memory")
# The token's Redis key (IGDB_TOKEN_STORE=redis), per app: a digest of its client id.
REDIS_KEY = "contentcrawl:igdb:token:{app}"
TWITCH_SLOT = "twitch"
# The Redis lock around reading or fetching the token, shared by every worker and spider.
FETCH_LOCK_KEY = "contentcrawl:igdb:token_lock"
FETCH_LOCK_POLL = 0.1
# Release the lock only if this worker still holds it (compare and delete, atomically).
RELEASE_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""
# The token endpoint answers these for a wrong client id or secret (Twitch: 400 "invalid
# client", 403 "invalid client secret"); retrying cannot help.
BAD_CREDENTIAL_STATUSES = frozenset({400, 401, 403})
# Request meta: the generation of the token this middleware put on the request.
_SIGNED = "_igdb_oauth_generation"
# Request meta: the request is the one replay after a 401.
_REPLAYED = "_igdb_oauth_replayed"
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class AppToken:
    """An app access token and the Unix time it expires at (never printed)."""

    value: str = field(repr=False)
    expires_at: float

    def usable(self, now: float, margin: float) -> bool:
        """Whether the token still has more than ``margin`` seconds to live."""
        return self.expires_at - margin > now


class TokenUnavailable(IgnoreRequest):
    """No token can be had: bad credentials or a token endpoint that keeps failing."""


def _origin(scheme: str, hostname: str | None, port: int | None) -> tuple[str, str, int | None]:
    return scheme, (hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme)


class IgdbOAuthMiddleware:
    """Signs requests to ``IGDB_API_URL`` (scheme, host, port and path prefix), and no others.

    Reuses the token until ``IGDB_TOKEN_REFRESH_MARGIN`` seconds before it expires; on a 401
    it drops the token, gets a new one and replays the request once. Bad credentials close
    the spider (reason ``igdb_bad_credentials``, or ``igdb_credentials_missing`` when unset);
    a token endpoint that fails otherwise closes it with ``igdb_token_unavailable``, and a
    401 on the replay (IGDB refuses even a new token) with ``igdb_unauthorized``. Never
    replaces an ``Authorization`` header the caller set.
    """

    def __init__(self, crawler: Crawler) -> None:
        settings = crawler.settings
        api_url = settings.get("IGDB_API_URL")
        if not api_url:
            # Switched off is no news: Scrapy logs a NotConfigured reason as a WARNING.
            logger.debug("Disabled IgdbOAuthMiddleware: IGDB_API_URL is not set")
            raise NotConfigured
        api = urlsplit(api_url)
        self.api_origin = _origin(api.scheme, api.hostname, api.port)
        self.api_path = api.path.rstrip("/") + "/"
        self.token_url: str = settings.get("TWITCH_TOKEN_URL") or ""
        self.client_id: str = settings.get("IGDB_CLIENT_ID") or ""
        self.client_secret: str = settings.get("IGDB_CLIENT_SECRET") or ""
        self.refresh_margin = settings.getfloat("IGDB_TOKEN_REFRESH_MARGIN")
        self.crawler = crawler
        self.stats = crawler.stats
        self._token: AppToken | None = None
        # Bumped each time the token changes, so a 401 on a request signed with an older
        # token does not throw away the token that replaced it.
        self._generation = 0
        self._rejected: set[str] = set()
        self._lock = asyncio.Lock()
        self._failure: str | None = None
        self._closing: asyncio.Task[None] | None = None
        self._redis: AsyncRedis | None = None
        redis_url = settings.get("REDIS_URL")
        self.kept_in = where_kept(settings.get("IGDB_TOKEN_STORE"), redis_url)
        app = hashlib.sha256(self.client_id.encode()).hexdigest()[:16]
        self.redis_key = REDIS_KEY.format(app=app)
        if redis_url:
            from redis.asyncio import Redis

            self._redis = Redis.from_url(redis_url, decode_responses=True)
            self._release_lock = self._redis.register_script(RELEASE_LOCK)
        # Outlives a token request with its retries; a dead worker's lock expires by itself.
        self.lock_ms = int((settings.getfloat("DOWNLOAD_TIMEOUT") + 10.0) * 1000)
        crawler.signals.connect(self._spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    def is_api_request(self, request: Request) -> bool:
        """Whether ``request`` goes to the IGDB API (its origin and path prefix)."""
        parts = urlparse_cached(request)
        return _origin(parts.scheme, parts.hostname, parts.port) == self.api_origin and (
            parts.path.rstrip("/") + "/"
        ).startswith(self.api_path)

    async def process_request(self, request: Request) -> None:
        if not self.is_api_request(request):
            return
        if _SIGNED not in request.meta and b"Authorization" in request.headers:
            return
        token = await self._usable_token()
        request.headers["Client-ID"] = self.client_id
        request.headers["Authorization"] = f"Bearer {token.value}"
        request.meta[_SIGNED] = self._generation

    def process_response(self, request: Request, response: Response) -> Request | Response:
        if _SIGNED not in request.meta:
            return response
        _unsign(request)
        if response.status != 401:
            return response
        if request.meta[_SIGNED] == self._generation and self._token is not None:
            self._rejected.add(self._token.value)
            self._token = None
            self.stats.inc_value("igdb/token/rejected")
            logger.warning("IGDB refused the access token (401): getting a new one")
        if request.meta.get(_REPLAYED):
            # The replay carried a token obtained after the first 401: IGDB refuses this
            # app, and more tokens (25 at most per app) would not change that.
            self.stats.inc_value("igdb/requests/unauthorized")
            self._close(
                "igdb_unauthorized",
                "IGDB refused a freshly obtained token too (401): check that the Twitch app "
                "of IGDB_CLIENT_ID has access to IGDB",
            )
            return response
        self.stats.inc_value("igdb/requests/replayed")
        replay = request.replace(dont_filter=True)
        replay.meta[_REPLAYED] = True
        return replay

    def process_exception(self, request: Request, exception: Exception) -> None:
        if _SIGNED in request.meta:
            _unsign(request)

    # -- the token ------------------------------------------------------------------
    async def _usable_token(self) -> AppToken:
        if self._failure is not None:
            raise TokenUnavailable(self._failure)
        token = self._token
        if token is not None and token.usable(time.time(), self.refresh_margin):
            return token
        async with self._lock:
            if self._failure is not None:
                raise TokenUnavailable(self._failure)
            token = self._token
            if token is not None and token.usable(time.time(), self.refresh_margin):
                return token
            async with self._workers_lock():
                stored = await self._load()
                if stored is not None:
                    self.stats.inc_value("igdb/token/loaded")
                    logger.info(
                        "IGDB access token taken from the %s (%s)", self.kept_in, _until(stored)
                    )
                    return self._use(stored)
                fetched = await self._fetch()
                await self._save(fetched)
            self.stats.inc_value("igdb/token/fetched")
            logger.info("IGDB access token obtained from Twitch (%s)", _until(fetched))
            return self._use(fetched)

    @asynccontextmanager
    async def _workers_lock(self) -> AsyncIterator[None]:
        """Hold the workers' Redis lock (none without ``REDIS_URL``, or with a token kept in
        memory): the worker that waited finds the token the holder kept instead of asking
        Twitch for one more."""
        if self._redis is None or self.kept_in == "memory":
            yield
            return
        holder = uuid.uuid4().hex
        while not await self._redis.set(FETCH_LOCK_KEY, holder, nx=True, px=self.lock_ms):
            await asyncio.sleep(FETCH_LOCK_POLL)
        try:
            yield
        finally:
            await self._release_lock(keys=[FETCH_LOCK_KEY], args=[holder])

    def _use(self, token: AppToken) -> AppToken:
        register_secret(token.value)
        self._token = token
        self._generation += 1
        return token

    async def _fetch(self) -> AppToken:
        if not (self.client_id and self.client_secret and self.token_url):
            self._fail(
                "igdb_credentials_missing",
                "IGDB_CLIENT_ID and IGDB_CLIENT_SECRET must both be set to crawl IGDB "
                "(and TWITCH_TOKEN_URL must not be blank)",
            )
        form = {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "grant_type": "client_credentials",
        }
        request = Request(
            self.token_url,
            method="POST",
            body=urlencode(form),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
            meta={"download_slot": TWITCH_SLOT, "dont_redirect": True},
            dont_filter=True,
            callback=NO_CALLBACK,
        )
        try:
            response = await self.crawler.engine.download_async(request)
        except Exception as error:  # every download error (after retries) means "no token"
            self._fail(
                "igdb_token_unavailable",
                f"the Twitch token endpoint could not be reached ({type(error).__name__}: "
                f"{self._redact(str(error))})",
            )
        if response.status in BAD_CREDENTIAL_STATUSES:
            self._fail(
                "igdb_bad_credentials",
                f"Twitch refused the IGDB credentials (HTTP {response.status}: "
                f"{self._redact(_message(response))}); check IGDB_CLIENT_ID and IGDB_CLIENT_SECRET",
            )
        token = _parse_token(response) if response.status == 200 else None
        if token is None:
            self._fail(
                "igdb_token_unavailable",
                f"the Twitch token endpoint gave no token (HTTP {response.status}: "
                f"{self._redact(_message(response))})",
            )
        return token

    def _fail(self, reason: str, message: str) -> NoReturn:
        """Remember why no token can be had, close the spider, drop the waiting request."""
        self.stats.inc_value("igdb/token/failed")
        self._close(reason, message)
        raise TokenUnavailable(message)

    def _close(self, reason: str, message: str) -> None:
        """Close the spider once; requests still waiting for a token are dropped."""
        self._failure = self._failure or message
        if self._closing is not None:
            return
        logger.error("Closing the spider: %s", message)
        engine = self.crawler.engine
        if engine is not None and engine.spider is not None:
            # Not awaited: closing waits for every request in progress, this one included.
            self._closing = asyncio.ensure_future(engine.close_spider_async(reason=reason))

    def _redact(self, text: str) -> str:
        return redact_text(text, (self.client_secret, *self._rejected))

    # -- where the token is kept (IGDB_TOKEN_STORE) -----------------------------------
    async def _load(self) -> AppToken | None:
        """The kept token if this app's and still usable, else None."""
        if self.kept_in == "memory":
            return None
        if self.kept_in == "redis":
            assert self._redis is not None
            text = await self._redis.get(self.redis_key)
            state = json.loads(text) if text else None
        else:
            state = await crawl_store(self.crawler).run(lambda store: store.get_state(STATE_NAME))
        return self._usable(state)

    async def _save(self, token: AppToken) -> None:
        state = {
            "client_id": self.client_id,
            "access_token": token.value,
            "token_type": "bearer",
            "expires_at": token.expires_at,
            "obtained_at": utc_now(),
        }
        if self.kept_in == "redis":
            assert self._redis is not None
            lifetime_ms = int((token.expires_at - time.time()) * 1000)
            if lifetime_ms > 0:
                await self._redis.set(self.redis_key, json.dumps(state), px=lifetime_ms)
        elif self.kept_in == "store":
            await crawl_store(self.crawler).run(lambda store: store.set_state(STATE_NAME, state))

    def _usable(self, state: dict[str, Any] | None) -> AppToken | None:
        if not state or state.get("client_id") != self.client_id:
            return None
        value, expires_at = state.get("access_token"), state.get("expires_at")
        if not isinstance(value, str) or not isinstance(expires_at, int | float):
            return None
        token = AppToken(value, float(expires_at))
        if value in self._rejected or not token.usable(time.time(), self.refresh_margin):
            return None
        return token

    async def _spider_closed(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


def where_kept(configured: str | None, redis_url: str | None) -> str:
    """Where the token is kept (``IGDB_TOKEN_STORE``); a clear error for a value that cannot be."""
    store = (configured or "").strip().lower()
    if store not in TOKEN_STORES:
        raise ValueError(
            f"IGDB_TOKEN_STORE must be one of {', '.join(TOKEN_STORES)}, not {store!r}"
        )
    if store == "redis" and not redis_url:
        raise ValueError("IGDB_TOKEN_STORE=redis keeps the token in Redis: set REDIS_URL")
    return store


def _unsign(request: Request) -> None:
    """Take the credentials off a downloaded request; ``meta`` still says to sign it again."""
    request.headers.pop("Client-ID", None)
    request.headers.pop("Authorization", None)


def _json(response: Response) -> Any:
    try:
        return json.loads(response.body)
    except ValueError:
        return None


def _parse_token(response: Response) -> AppToken | None:
    payload = _json(response)
    if not isinstance(payload, dict):
        return None
    value, expires_in = payload.get("access_token"), payload.get("expires_in")
    if not isinstance(value, str) or not value or not isinstance(expires_in, int | float):
        return None
    return AppToken(value, time.time() + float(expires_in))


def _message(response: Response) -> str:
    """Twitch's error text: ``{"status": 403, "message": "invalid client secret"}``."""
    payload = _json(response)
    if isinstance(payload, dict) and isinstance(payload.get("message"), str):
        return payload["message"]
    if not response.body:
        return "(empty body)"
    return response.body[:200].decode("utf-8", "replace")


def _until(token: AppToken) -> str:
    expires = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(token.expires_at))
    return f"valid until {expires}"
