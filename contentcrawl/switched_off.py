"""Scrapy components switched off by their setting are left out of the crawl, not imported.

Scrapy imports every component its ``*_BASE`` dicts name when it builds a crawler; only
then does a switched-off one decline (``NotConfigured``). Setting one to ``None`` in
``EXTENSIONS`` or ``DOWNLOADER_MIDDLEWARES`` does not help: Scrapy imports the keys of those
dicts too, to match them with the base ones. Three components this project keeps off cost
more to import than all the others together (measured on Scrapy 2.19, this machine): the
remote control imports aiohttp (~98 ms), the cookies middleware tldextract (~32 ms), the
telnet console Twisted's conch (~7 ms), out of ~0.85 s for a whole ``scrapy crawl`` that
stops at once. Every crawl pays them: each scrapyd job, each worker, each child process of
the test suite.

The ``SwitchedOffComponents`` add-on runs after ``-s`` options and spider settings are in,
so ``-s COOKIES_ENABLED=True`` (or any other of these switches) still brings its component
back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings

# switch setting -> (the *_BASE setting that lists the component, the component's path)
SWITCHED_COMPONENTS: dict[str, tuple[str, str]] = {
    "REMOTE_CONTROL_ENABLED": (
        "EXTENSIONS_BASE",
        "scrapy.extensions.remote_control.RemoteControl",
    ),
    "COOKIES_ENABLED": (
        "DOWNLOADER_MIDDLEWARES_BASE",
        "scrapy.downloadermiddlewares.cookies.CookiesMiddleware",
    ),
    "TELNETCONSOLE_ENABLED": ("EXTENSIONS_BASE", "scrapy.extensions.telnet.TelnetConsole"),
}


class SwitchedOffComponents:
    """Add-on: each component of ``SWITCHED_COMPONENTS`` whose switch is off leaves its
    ``*_BASE`` dict, so Scrapy never imports it."""

    def update_settings(self, settings: BaseSettings) -> None:
        for switch, (base, path) in SWITCHED_COMPONENTS.items():
            if settings.getbool(switch):
                continue
            components = settings.getdict(base)
            if components.pop(path, None) is not None:
                settings.set(base, components, priority="addon")
