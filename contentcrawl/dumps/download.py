"""Streaming, resumable, conditional download of a dump file (blocking: run it in a thread).

A dump downloads to ``<directory>/<file name>``; while it is incomplete the bytes sit in
``<file name>.part`` and the server's validators (ETag, Last-Modified, size) in
``<file name>.download.json`` next to it, so an interrupted download resumes with ``Range``
+ ``If-Range`` and a finished one is fetched again only when the server's copy changed
(conditional GET, 304).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from contentcrawl.dumps.progress import Progress, format_bytes
from contentcrawl.redaction import basic_auth, redact_url, split_userinfo

# The package's logger: the log lines keep the name they had before the package split.
logger = logging.getLogger(__package__)

CHUNK_SIZE = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def is_url(location: str) -> bool:
    """True when ``location`` is an http(s) URL rather than a local path."""
    return urlsplit(location).scheme in {"http", "https"}


def local_path(location: str) -> Path:
    """The local file a path or ``file://`` URL names."""
    parts = urlsplit(location)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    return Path(location)


class DownloadError(Exception):
    """A dump could not be downloaded (HTTP error, or the connection kept failing)."""


class DownloadCancelledError(DownloadError):
    """The download was stopped because the crawl is shutting down."""


@dataclass
class Validators:
    """What the server said about its copy, kept next to the file (``.download.json``)."""

    url: str = ""
    etag: str | None = None
    last_modified: str | None = None
    size: int | None = None
    complete: bool = False

    @classmethod
    def load(cls, path: Path) -> Validators:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**{name: data.get(name) for name in cls.__dataclass_fields__})
        except (OSError, ValueError, TypeError):
            return cls()

    def save(self, path: Path) -> None:
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")
        os.replace(temporary, path)


@dataclass
class DownloadResult:
    """Where a downloaded dump is and how this run got it."""

    path: Path
    # "downloaded" (whole file this run), "resumed" (a partial file completed with Range),
    # "not_modified" (the local copy is current: the server answered 304) or "local" (a
    # path given, read in place).
    outcome: str
    bytes_received: int
    size: int
    etag: str | None
    last_modified: str | None


def dump_file_name(url: str) -> str:
    """The local file name for a dump URL: the last segment of its path."""
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    if not name or name in {".", ".."}:
        raise DownloadError(f"no file name in dump URL {redact_url(url)}")
    return name


def download_dump(
    url: str,
    directory: str | Path,
    *,
    user_agent: str,
    timeout: float = 60.0,
    retries: int = 3,
    progress_interval: float,
    cancel: threading.Event | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> DownloadResult:
    """Download ``url`` into ``directory``, resuming a partial file; blocking (run it in a thread).

    A complete earlier download is revalidated with ``If-None-Match`` / ``If-Modified-Since``
    and kept on 304. A partial one is resumed with ``Range`` + ``If-Range``: the server sends
    the rest (206) or, when its copy changed, the whole new file (200). A connection that
    drops mid-body is resumed up to ``retries`` times; HTTP errors fail at once. A
    ``user:password@`` in the URL is sent as basic auth, to that host only.
    """
    if not is_url(url):
        raise DownloadError(f"not an http(s) URL: {redact_url(url)}")
    # urllib would take the userinfo for part of the host name.
    url, user, password = split_userinfo(url)
    authorization = basic_auth(unquote(user), unquote(password)) if password is not None else None
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = dump_file_name(url)
    final = directory / name
    part = directory / f"{name}.part"
    sidecar = directory / f"{name}.download.json"
    shown = redact_url(url)
    received = 0
    resumed = False
    attempt = 0
    while True:
        validators = Validators.load(sidecar)
        headers = {"User-Agent": user_agent, "Accept-Encoding": "identity"}
        offset = part.stat().st_size if part.exists() else 0
        conditional = False
        if final.exists() and validators.complete:
            conditional = _add_conditions(headers, validators)
        elif offset and (validators.etag or validators.last_modified):
            headers["Range"] = f"bytes={offset}-"
            headers["If-Range"] = validators.etag or validators.last_modified or ""
        try:
            request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http(s) only
            if authorization is not None:
                # Unredirected: a redirect to another host must not carry the password.
                request.add_unredirected_header("Authorization", authorization)
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                status = response.status
                if status == 206:
                    start, total = _content_range(response.headers.get("Content-Range"))
                    if start != offset:
                        raise DownloadError(
                            f"{shown}: server resumed at byte {start}, expected {offset}"
                        )
                    resumed = True
                    mode = "ab"
                    logger.info("Resuming %s at %s", shown, format_bytes(offset))
                else:
                    offset = 0
                    total = _int_or_none(response.headers.get("Content-Length"))
                    mode = "wb"
                    logger.info(
                        "Downloading %s (%s) to %s",
                        shown,
                        format_bytes(total) if total is not None else "size unknown",
                        final,
                    )
                validators = Validators(
                    url=shown,
                    etag=response.headers.get("ETag"),
                    last_modified=response.headers.get("Last-Modified"),
                    size=total,
                )
                validators.save(sidecar)
                received += _copy_body(
                    response,
                    part,
                    mode,
                    offset,
                    total,
                    shown,
                    progress_interval,
                    cancel,
                    chunk_size,
                )
        except urllib.error.HTTPError as error:
            error.close()  # it holds the response, and so its socket, open until closed
            if error.code == 304 and conditional:
                logger.info("%s is unchanged (304): keeping %s", shown, final)
                return DownloadResult(
                    final,
                    "not_modified",
                    0,
                    final.stat().st_size,
                    validators.etag,
                    validators.last_modified,
                )
            if error.code == 416 and offset:
                # The partial file is not a prefix the server can continue: start over.
                part.unlink()
                continue
            raise DownloadError(f"{shown}: HTTP {error.code} {error.reason}") from None
        except (OSError, HTTPException, _ShortBodyError) as error:
            if isinstance(error, urllib.error.URLError) and not _is_connection_error(error):
                raise DownloadError(f"{shown}: {error.reason}") from None
            attempt += 1
            if attempt > retries:
                raise DownloadError(
                    f"{shown}: download failed {attempt} times, last: {error!r}; "
                    f"{format_bytes(part.stat().st_size if part.exists() else 0)} kept in "
                    f"{part} for the next run to resume"
                ) from None
            logger.warning(
                "Download of %s interrupted (%r), resuming (retry %d/%d)",
                shown,
                error,
                attempt,
                retries,
            )
            continue
        os.replace(part, final)
        validators.complete = True
        validators.save(sidecar)
        size = final.stat().st_size
        logger.info("Downloaded %s: %s", shown, format_bytes(size))
        return DownloadResult(
            final,
            "resumed" if resumed else "downloaded",
            received,
            size,
            validators.etag,
            validators.last_modified,
        )


class _ShortBodyError(Exception):
    """The connection closed before the announced length arrived (http.client is silent)."""


def _add_conditions(headers: dict[str, str], validators: Validators) -> bool:
    if validators.etag:
        headers["If-None-Match"] = validators.etag
    if validators.last_modified:
        headers["If-Modified-Since"] = validators.last_modified
    return bool(validators.etag or validators.last_modified)


def _copy_body(
    response: Any,
    part: Path,
    mode: str,
    offset: int,
    total: int | None,
    shown: str,
    progress_interval: float,
    cancel: threading.Event | None,
    chunk_size: int,
) -> int:
    """Stream the body into ``part``; the number of bytes written this call."""
    progress = Progress(f"download {shown}", total, progress_interval, start_bytes=offset)
    written = 0
    with part.open(mode) as out:
        while True:
            if cancel is not None and cancel.is_set():
                raise DownloadCancelledError(f"{shown}: cancelled, partial file kept in {part}")
            chunk = response.read(chunk_size)
            if not chunk:
                break
            out.write(chunk)
            written += len(chunk)
            progress.update(offset + written)
    if total is not None and offset + written < total:
        raise _ShortBodyError(f"got {offset + written} of {total} bytes")
    return written


def _content_range(value: str | None) -> tuple[int, int | None]:
    match = _CONTENT_RANGE.fullmatch((value or "").strip())
    if not match:
        raise DownloadError(f"206 with an unusable Content-Range: {value!r}")
    total = match[3]
    return int(match[1]), None if total == "*" else int(total)


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _is_connection_error(error: urllib.error.URLError) -> bool:
    """A URLError worth resuming after: the connection failed, not the URL."""
    return isinstance(error.reason, OSError)
