"""Talking to a scrapyd the tests started: its JSON API, waiting on it, pointing a deploy at it."""

from __future__ import annotations

import configparser
import json
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any


def get_json(url: str, data: dict[str, str] | None = None) -> Any:
    """scrapyd's JSON answer to a GET, or to a POST of ``data``."""
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    with urllib.request.urlopen(url, body, timeout=5) as response:  # noqa: S310 - 127.0.0.1
        return json.loads(response.read())


def wait_until(check: Any, timeout: float, what: str) -> Any:
    """``check()``'s first truthy result within ``timeout`` s (a refused connection counts
    as not yet)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def point_deploy_at(scrapy_cfg: Path, scrapyd_url: str) -> None:
    """Rewrite ``scrapy_cfg`` (a copy of the project's) so ``scrapyd-deploy`` targets
    ``scrapyd_url``."""
    config = configparser.ConfigParser()
    config.read(scrapy_cfg)
    config["deploy"]["url"] = scrapyd_url
    with scrapy_cfg.open("w", encoding="utf-8") as cfg:
        config.write(cfg)
