"""Owner-only files for everything a crawl writes (contentcrawl/private_files.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from contentcrawl.private_files import UMASK, restrict

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler

# Folders only the project writes to: they and everything in them are made owner-only.
OWN_FOLDERS = ("STORE_FAILED_DIR", "DUMPS_DIR", "JOBDIR")


class PrivateFiles:
    """Sets the process umask to 077 and makes what earlier runs left owner-only.

    New files (the log file, dumps, images, JOBDIR's queue and state, saved batches, the
    SQLite store and its -wal and -shm) are created 0600 and folders 0700 from then on.
    Existing ones keep their mode under a umask, so at start this takes the group's and
    others' permissions off ``LOG_FILE``, the folders of ``OWN_FOLDERS`` and all they hold,
    and the ``IMAGES_STORE`` folder itself (an owner-only folder closes what is beneath
    it; walking millions of images at every start would not pay). The SQLite store does the
    same for its own files when it opens them.
    """

    def __init__(self, crawler: Crawler) -> None:
        settings = crawler.settings
        os.umask(UMASK)
        if settings.get("LOG_FILE"):
            restrict(settings["LOG_FILE"])
        for name in OWN_FOLDERS:
            if settings.get(name):
                restrict_tree(Path(settings[name]))
        images = settings.get("IMAGES_STORE") or ""
        if images and "://" not in images:
            restrict(images)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)


def restrict_tree(folder: Path) -> None:
    """Make ``folder`` and everything in it owner-only."""
    if not folder.is_dir():
        return
    restrict(folder)
    for parent, folders, files in os.walk(folder):
        for name in (*folders, *files):
            restrict(Path(parent) / name)
