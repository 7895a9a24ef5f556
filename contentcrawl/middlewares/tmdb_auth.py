"""TMDB authentication: a Bearer token header, or the v3 ``api_key`` query parameter.

The token (``TMDB_READ_ACCESS_TOKEN``) is preferred: it travels in a header Scrapy never
logs. The API key (``TMDB_API_KEY``) has to ride in the URL, and Scrapy writes request URLs
into its logs ("Crawled (200) <GET …>", "Retrying <GET …>"), into ``response.url`` and into
exception messages. So either credential is on the request only for the time it spends in
the download handler: the middleware sits closest to the downloader (priority above the
retry, redirect and cache middlewares), adds it as the last ``process_request`` and takes
it off again as the first ``process_response`` / ``process_exception``. A retried request
thus goes back to the scheduler without it, which matters with ``REDIS_URL`` set: the
shared Redis queue stores whole pickled requests, headers included. The download handler's
own rare warnings that quote a URL (data loss, size limits) are masked by the
``LogRedaction`` extension, which knows the key's value.

Once TMDB answers 401, no further API request goes out: each fails unsent with
``CredentialsRejected``. The spider closes on that first 401, but its callback runs a moment
after the response freed a downloader slot, and under load the engine fills the slot with
new requests in between; a rejected key must not be tried again by them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from scrapy import Request
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.utils.httpobj import urlparse_cached

from contentcrawl.redaction import redact_text
from contentcrawl.scrapy_internals import set_request_url

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from scrapy.settings import BaseSettings

logger = logging.getLogger(__name__)

API_KEY_PARAM = "api_key"
# Request meta key holding the URL without the key while the request is being downloaded.
_CLEAN_URL = "_tmdb_auth_clean_url"
# Request meta key set while the request carries the Authorization header added here.
_BEARER_ADDED = "_tmdb_auth_bearer_added"
_DEFAULT_PORTS = {"http": 80, "https": 443}


class CredentialsRejected(IgnoreRequest):
    """A TMDB API request not sent because TMDB already rejected the credentials (401)."""


def tmdb_credentials_configured(settings: BaseSettings) -> bool:
    """Whether a TMDB read access token or API key is set."""
    return bool(settings.get("TMDB_READ_ACCESS_TOKEN") or settings.get("TMDB_API_KEY"))


def _host_port(scheme: str, hostname: str | None, port: int | None) -> tuple[str, int | None]:
    return (hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme)


class TmdbAuthMiddleware:
    """Authenticates requests to the ``TMDB_API_URL`` host (and port), and no other host.

    Never replaces an ``Authorization`` header or an ``api_key`` parameter the caller set.
    Disabled (``NotConfigured``) when neither credential is set; the TMDB spiders then
    refuse to start with their own message.
    """

    def __init__(self, crawler: Crawler) -> None:
        settings = crawler.settings
        self.token: str = settings.get("TMDB_READ_ACCESS_TOKEN") or ""
        self.api_key: str = "" if self.token else settings.get("TMDB_API_KEY") or ""
        if not (self.token or self.api_key):
            # Switched off is no news: Scrapy logs a NotConfigured reason as a WARNING.
            logger.debug(
                "Disabled TmdbAuthMiddleware: "
                "neither TMDB_READ_ACCESS_TOKEN nor TMDB_API_KEY is set"
            )
            raise NotConfigured
        api = urlsplit(settings.get("TMDB_API_URL") or "https://api.themoviedb.org/3")
        self.scheme = api.scheme
        self.host_port = _host_port(api.scheme, api.hostname, api.port)
        self.rejected = False

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    def is_api_request(self, request: Request) -> bool:
        """Whether ``request`` goes to the TMDB API's scheme, host and port."""
        parts = urlparse_cached(request)
        return (
            parts.scheme == self.scheme
            and _host_port(parts.scheme, parts.hostname, parts.port) == self.host_port
        )

    def process_request(self, request: Request) -> None:
        if not self.is_api_request(request):
            return
        if self.rejected:
            raise CredentialsRejected("TMDB already rejected the credentials (HTTP 401)")
        if self.token:
            if b"Authorization" not in request.headers:
                request.headers["Authorization"] = f"Bearer {self.token}"
                request.meta[_BEARER_ADDED] = True
            return
        parts = urlsplit(request.url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        if any(name == API_KEY_PARAM for name, _ in query):
            return
        query.append((API_KEY_PARAM, self.api_key))
        request.meta[_CLEAN_URL] = request.url
        # In place, not request.replace(): a new request would go back through the
        # scheduler and every middleware, each free to log its URL.
        set_request_url(request, urlunsplit(parts._replace(query=urlencode(query))))

    def _restore(self, request: Request) -> str | None:
        """Take the credential off ``request``; the URL without the key if it had one."""
        if request.meta.pop(_BEARER_ADDED, False):
            del request.headers["Authorization"]
        clean_url = request.meta.pop(_CLEAN_URL, None)
        if clean_url is not None:
            set_request_url(request, clean_url)
        return clean_url

    def process_response(self, request: Request, response: Response) -> Response:
        clean_url = self._restore(request)
        if response.status == 401 and self.is_api_request(request):
            self.rejected = True
        if clean_url is None:
            return response
        response = response.replace(url=clean_url)
        location = response.headers.get("Location")
        if location is not None:
            # A redirect that echoes the query (http to https, a mirror moving) would carry
            # the key into the next request: to another host, the scheduler's queue, logs.
            response.headers["Location"] = self._without_key(location.decode("latin-1"))
        return response

    def _without_key(self, url: str) -> str:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        kept = [
            (name, value) for name, value in query if (name, value) != (API_KEY_PARAM, self.api_key)
        ]
        if len(kept) == len(query):
            return url
        return urlunsplit(parts._replace(query=urlencode(kept)))

    def process_exception(self, request: Request, exception: Exception) -> None:
        if self._restore(request) is None:
            return
        # Some download errors quote the URL ("Getting <url> took longer than …").
        exception.args = tuple(
            redact_text(arg, (self.api_key,)) if isinstance(arg, str) else arg
            for arg in exception.args
        )
