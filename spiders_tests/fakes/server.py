"""A real HTTP server on 127.0.0.1 that plays an API from handler functions.

Each fake API (``fakes/<source>.py``) registers routes on a ``FakeServer``; the server
records every request (method, path, query, headers, body, arrival time) and how many were
open at once, so tests can assert on what the crawler really sent and how fast.
"""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import json
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class FakeRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    arrived: float  # time.monotonic() when the request line was read

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeResponse:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # Send only this many body bytes, then drop the connection (a cut download).
    cut_after: int | None = None
    gzip: bool = False

    @classmethod
    def json(cls, payload: Any, status: int = 200, **headers: str) -> FakeResponse:
        body = json.dumps(payload).encode()
        return cls(status, body, {"Content-Type": "application/json; charset=utf-8", **headers})


Handler = Callable[..., FakeResponse]


def serve_bytes(
    request: FakeRequest,
    data: bytes,
    *,
    content_type: str = "application/octet-stream",
    last_modified: float = 1_700_000_000.0,
    cut_after: int | None = None,
) -> FakeResponse:
    """Serve a static file as a CDN would: ETag, Last-Modified, conditional GET and Range."""
    etag = '"' + hashlib.md5(data).hexdigest() + '"'  # noqa: S324 - an ETag, not security
    headers = {
        "Content-Type": content_type,
        "ETag": etag,
        "Last-Modified": email.utils.formatdate(last_modified, usegmt=True),
        "Accept-Ranges": "bytes",
    }
    if request.header("if-none-match") == etag:
        return FakeResponse(304, b"", headers)
    range_header = request.header("range")
    if range_header:
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header.strip())
        if_range = request.header("if-range")
        if match and (if_range is None or if_range == etag):
            start = int(match[1])
            end = int(match[2]) if match[2] else len(data) - 1
            if start >= len(data):
                return FakeResponse(416, b"", {"Content-Range": f"bytes */{len(data)}"})
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return FakeResponse(206, data[start : end + 1], headers, cut_after=cut_after)
    return FakeResponse(200, data, headers, cut_after=cut_after)


class RequestHold:
    """Leaves the ``number``-th request matching a path unanswered until ``release()``.

    A fake calls ``held_back(request)`` where its handler starts (after its own gate, so a
    refused request does not count); a test kills the crawler that sent the held request
    (``wait_held()``'s headers tell which) and sees what becomes of the work it held.
    """

    def __init__(self, default_pattern: str) -> None:
        self.default_pattern = default_pattern
        self.held: FakeRequest | None = None
        self._rule: tuple[int, re.Pattern[str]] | None = None
        self._seen = 0
        self._lock = threading.Lock()
        self._holding = threading.Event()
        self._released = threading.Event()

    def hold(self, number: int, path_pattern: str | None = None) -> None:
        """Hold the ``number``-th request whose path matches (the fake's API by default)."""
        self._rule = (number, re.compile(path_pattern or self.default_pattern))

    def wait_held(self, timeout: float) -> FakeRequest:
        """The held request once it has arrived."""
        if not self._holding.wait(timeout) or self.held is None:
            raise TimeoutError(f"the request to hold did not arrive within {timeout} s")
        return self.held

    def release(self) -> None:
        """Answer the held request (to a closed connection if its crawler was killed)."""
        self._released.set()

    def held_back(self, request: FakeRequest) -> None:
        """Block the handler's thread if ``request`` is the one to hold."""
        if self._rule is None:
            return
        number, pattern = self._rule
        if not pattern.fullmatch(request.path):
            return
        with self._lock:
            self._seen += 1
            hold = self._seen == number
        if hold:
            self.held = request
            self._holding.set()
            self._released.wait(timeout=120)


class _Server(ThreadingHTTPServer):
    # The default listen backlog of 5 makes a burst of new connections wait a second for
    # the kernel's SYN retry: latency the real APIs do not have.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up waiting (a stalled request's timeout) resets its connection:
        # what the fake plays, not an error of the fake's own to print.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class FakeServer:
    """Threaded HTTP server with regex routes; start() binds a free port on 127.0.0.1."""

    def __init__(self, *, latency: float = 0.0) -> None:
        self.latency = latency
        self.requests: list[FakeRequest] = []
        self.open_requests = 0
        self.max_open_requests = 0
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._failures: list[tuple[re.Pattern[str], deque[int]]] = []
        self._stalled: re.Pattern[str] | None = None
        self._unstalled = threading.Event()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- routes -------------------------------------------------------------------------
    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        """Register ``handler(request, **groups)`` for paths that fully match ``pattern``."""

        def register(handler: Handler) -> Handler:
            self._routes.append((method.upper(), re.compile(pattern), handler))
            return handler

        return register

    def fail(self, path_pattern: str, *statuses: int) -> None:
        """Answer the next requests to paths fully matching ``path_pattern`` with
        ``statuses`` (one each), before any route sees them: a server having a bad moment."""
        self._failures.append((re.compile(path_pattern), deque(statuses)))

    def stall(self, path_pattern: str = ".*") -> None:
        """Accept requests to paths fully matching ``path_pattern`` and never answer them
        (a host that hangs) until ``unstall()``; ``stop()`` drops them unanswered."""
        self._unstalled.clear()
        self._stalled = re.compile(path_pattern)

    def unstall(self) -> None:
        """Answer requests again, the stalled ones included."""
        self._stalled = None
        self._unstalled.set()

    def _stalls(self, request: FakeRequest) -> bool:
        """Hold ``request`` while the server stalls its path; True if it must go unanswered."""
        stalled = self._stalled
        if stalled is None or not stalled.fullmatch(request.path):
            return False
        self._unstalled.wait(timeout=120)
        return self._stalled is not None

    def _dispatch(self, request: FakeRequest) -> FakeResponse:
        with self._lock:
            for pattern, statuses in self._failures:
                if statuses and pattern.fullmatch(request.path):
                    status = statuses.popleft()
                    return FakeResponse.json({"error": f"injected {status}"}, status)
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(request.path)
            if match and method == request.method:
                return handler(request, **match.groupdict())
        return FakeResponse.json({"error": f"no route for {request.method} {request.path}"}, 404)

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_port

    def start(self, port: int = 0) -> FakeServer:
        """Serve on ``port`` of 127.0.0.1 (0: a free one; a port this server had before, to
        bring a host it stopped back)."""
        server = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                arrived = time.monotonic()
                with server._lock:
                    server.open_requests += 1
                    server.max_open_requests = max(server.max_open_requests, server.open_requests)
                try:
                    parts = urlsplit(self.path)
                    length = int(self.headers.get("Content-Length") or 0)
                    request = FakeRequest(
                        method=self.command,
                        path=parts.path,
                        query=parse_qs(parts.query, keep_blank_values=True),
                        headers={k.lower(): v for k, v in self.headers.items()},
                        body=self.rfile.read(length) if length else b"",
                        arrived=arrived,
                    )
                    with server._lock:
                        server.requests.append(request)
                    if server._stalls(request):
                        self.close_connection = True
                        return
                    if server.latency:
                        time.sleep(server.latency)
                    response = server._dispatch(request)
                    self._send(request, response)
                finally:
                    with server._lock:
                        server.open_requests -= 1

            def _send(self, request: FakeRequest, response: FakeResponse) -> None:
                body = response.body
                headers = dict(response.headers)
                if response.gzip and "gzip" in (request.header("accept-encoding") or ""):
                    body = gzip.compress(body)
                    headers["Content-Encoding"] = "gzip"
                self.send_response(response.status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                if response.cut_after is not None:
                    self.send_header("Connection", "close")
                self.end_headers()
                if self.command == "HEAD":
                    return
                if response.cut_after is not None:
                    self.wfile.write(body[: response.cut_after])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _handle  # noqa: N815 - http.server names

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._httpd = _Server(("127.0.0.1", port), RequestHandler)
        self._httpd.daemon_threads = True
        # shutdown() waits for the serving loop's next poll: 0.5 s by default, at every stop.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        # Stalled requests go unanswered: their threads end with the server.
        self._unstalled.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    # -- what the crawler did -----------------------------------------------------------
    def hits(self, path_pattern: str = ".*", method: str | None = None) -> list[FakeRequest]:
        """Recorded requests whose path fully matches ``path_pattern``."""
        pattern = re.compile(path_pattern)
        with self._lock:
            return [
                r
                for r in self.requests
                if pattern.fullmatch(r.path) and (method is None or r.method == method)
            ]

    def max_requests_in_window(self, window: float, path_pattern: str = ".*") -> int:
        """Most requests that arrived within any ``window`` seconds (a rate-limit check)."""
        times = sorted(r.arrived for r in self.hits(path_pattern))
        most, start = 0, 0
        for end, arrived in enumerate(times):
            while arrived - times[start] >= window:
                start += 1
            most = max(most, end - start + 1)
        return most
