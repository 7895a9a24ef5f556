"""``scrapy shell``: Scrapy's own console, with the project's settings, writing no run record.

A session is no crawl: it would leave a run record of the spider it borrows (``default``
for most URLs) at ``running`` for ever, and ``scrapy status`` would show it. Everything
else (credentials for the source's own host, the store's settings) is the project's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scrapy.commands.shell import Command as ScrapyShellCommand
from scrapy.settings import SETTINGS_PRIORITIES

if TYPE_CHECKING:
    import argparse


class Command(ScrapyShellCommand):
    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        assert self.settings is not None
        # Above the project's own RUNS_ENABLED (a command default would be below it), unless
        # the session asks for run records with -s RUNS_ENABLED=true.
        if (self.settings.getpriority("RUNS_ENABLED") or 0) < SETTINGS_PRIORITIES["cmdline"]:
            self.settings.set("RUNS_ENABLED", False, priority="cmdline")
