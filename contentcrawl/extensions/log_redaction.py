"""Keeps credentials out of every log line of a crawl, whichever component writes it."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from contentcrawl.redaction import install_log_redaction, register_secret

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler

# Settings whose whole value is a secret.
SECRET_SETTINGS = (
    "TMDB_API_KEY",
    "TMDB_READ_ACCESS_TOKEN",
    "IGDB_CLIENT_SECRET",
    "SCRAPYD_PASSWORD",
)
# Settings that are URLs which may carry a password.
SECRET_URL_SETTINGS = ("MONGO_URI", "REDIS_URL")


class LogRedaction:
    """Registers the configured secrets and installs the redacting log record factory.

    Patterns (``api_key=…``, ``Bearer …``, ``scheme://user:password@``) are masked for any
    value; the literal values of the secret settings are masked wherever they appear.
    Components that obtain secrets at run time (OAuth tokens) call ``register_secret``.
    """

    def __init__(self, crawler: Crawler) -> None:
        settings = crawler.settings
        for name in SECRET_SETTINGS:
            register_secret(settings.get(name))
        for name in SECRET_URL_SETTINGS:
            password = urlsplit(settings.get(name) or "").password
            if password:
                register_secret(password)
                register_secret(unquote(password))
        install_log_redaction()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)
