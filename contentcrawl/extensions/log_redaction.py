"""Keeps credentials out of every log line of a crawl, whichever component writes it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scrapy import signals

from contentcrawl.redaction import install_log_redaction, register_secret, url_password_forms

if TYPE_CHECKING:
    from typing import Self

    from scrapy import Spider
    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings

# Settings whose whole value is a secret. The IGDB client id is less secret than the
# client secret, but with a leaked token it is all one needs to call IGDB as the app.
SECRET_SETTINGS = (
    "TMDB_API_KEY",
    "TMDB_READ_ACCESS_TOKEN",
    "IGDB_CLIENT_ID",
    "IGDB_CLIENT_SECRET",
    "SCRAPYD_PASSWORD",
)
# Settings that are URLs which may carry a password.
SECRET_URL_SETTINGS = ("MONGO_URI", "REDIS_URL", "SCRAPYD_URL")


def register_configured_secrets(settings: BaseSettings) -> None:
    """Register the values of the secret settings and the passwords of the secret URLs."""
    for name in SECRET_SETTINGS:
        register_secret(settings.get(name))
    for name in SECRET_URL_SETTINGS:
        for form in url_password_forms(settings.get(name) or ""):
            register_secret(form)


class LogRedaction:
    """Registers the configured secrets and installs the redacting log record factory.

    Patterns (``api_key=…``, ``Bearer …``, ``scheme://user:password@``, JSON credential
    fields) are masked for any value; the literal values of the secret settings, and the
    passwords of URLs among the settings and the spider's arguments (``-a dump=URL``), are
    masked wherever they appear. Components that obtain secrets at run time (OAuth tokens)
    call ``register_secret``.
    """

    def __init__(self, crawler: Crawler) -> None:
        register_configured_secrets(crawler.settings)
        install_log_redaction()
        crawler.signals.connect(self.spider_opened, signal=signals.spider_opened)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    def spider_opened(self, spider: Spider) -> None:
        """Register the passwords of the URLs the spider holds, before it uses them."""
        # Its attributes hold the -a arguments (Scrapy sets them, or the spider keeps them
        # under its own name, like a dump's location); a parser that fails on such a URL
        # may quote the password in its error.
        for value in vars(spider).values():
            if isinstance(value, str):
                for form in url_password_forms(value):
                    register_secret(form)
