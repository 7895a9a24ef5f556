"""A local IGDB v4 API and Twitch token endpoint, with IGDB's limits and error bodies.

Routes on a ``FakeServer``: ``POST /oauth2/token`` (client-credentials grant), ``POST
/v4/games``, ``POST /v4/games/count`` and ``POST /v4/multiquery``. Queries are real
Apicalypse text, read and answered as IGDB does (``fakes/igdb_apicalypse.py``). Errors:
401 with IGDB's recorded object body (``data/igdb/error_401_auth_failure.json``), 400 as
IGDB's array of ``{title, status, cause}``, 429 above ``requests_per_second`` accepted
requests in any ``window`` or above ``max_open`` open requests per Client-ID. A token can
be made to die after ``token_uses`` API requests. ``games_served`` counts each game
answered by ``/v4/games``; ``hold(n, pattern)`` leaves the n-th API request whose path
matches unanswered until ``release()`` (a page in flight when a test kills the crawler
that sent it).

Records come from the recorded search answer ``data/igdb/games_search_sengoku3_expanded_
2021.json``, cloned under new ids. References the recording holds as bare ids (themes,
game modes, franchises, alternative names, external games) are expanded here from IGDB's
published enum names where they exist and from made-up names otherwise: they are fake data.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import secrets
import sys
import threading
import time
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from scrapy.utils.project import get_project_settings

from spiders_tests.fakes.igdb_apicalypse import (
    OPERATORS,
    QUERY_BLOCK,
    ApicalypseError,
    Query,
    error_400,
    igdb_json,
    parse_query,
    project,
)
from spiders_tests.fakes.server import FakeRequest, FakeResponse, FakeServer, RequestHold

DATA = Path(__file__).parent.parent / "data" / "igdb"
ERROR_401_BODY = (DATA / "error_401_auth_failure.json").read_bytes()
TEMPLATES_FILE = DATA / "games_search_sengoku3_expanded_2021.json"

OAUTH_MIDDLEWARE = "contentcrawl.middlewares.igdb_oauth.IgdbOAuthMiddleware"
DEFAULT_CLIENT_ID = "fakeclientid0123456789abcdefgh"
DEFAULT_CLIENT_SECRET = "fakesecret9876543210zyxwvutsrq"  # noqa: S105 - the fake's own

# IGDB's published names for the ids the recording uses (api-docs.igdb.com, game_modes/themes).
GAME_MODES = {1: "Single player", 2: "Multiplayer", 3: "Co-operative", 4: "Split screen"}
THEMES = {1: "Action", 17: "Fantasy", 18: "Science fiction", 22: "Historical", 23: "Stealth"}


# --- Records ------------------------------------------------------------------------------


def templates() -> list[dict[str, Any]]:
    """The recorded games, with the references the recording left as bare ids expanded."""
    games = json.loads(TEMPLATES_FILE.read_text(encoding="utf-8"))
    for game in games:
        _expand(game, "themes", lambda i: {"id": i, "name": THEMES.get(i, f"Theme {i}")})
        _expand(game, "game_modes", lambda i: {"id": i, "name": GAME_MODES.get(i, f"Mode {i}")})
        _expand(game, "franchises", lambda i: {"id": i, "name": f"Franchise {i}"})
        _expand(
            game,
            "alternative_names",
            lambda i, g=game: {"id": i, "game": g["id"], "name": f"{g['name']} ({i})"},
        )
        _expand(
            game,
            "external_games",
            lambda i, g=game: {
                "id": i,
                "game": g["id"],
                "category": 1,
                "external_game_source": {"id": 1, "name": "Steam"},
                "uid": str(i),
                "url": f"https://store.steampowered.com/app/{i}",
            },
        )
    return games


def _expand(game: dict[str, Any], name: str, make: Callable[[int], dict[str, Any]]) -> None:
    if name in game:
        game[name] = [make(entry) if isinstance(entry, int) else entry for entry in game[name]]


def sample_games(
    count: int, *, first_id: int = 1, max_gap: int = 3, seed: int = 0
) -> dict[int, dict[str, Any]]:
    """``count`` games cloned from the recording under ascending ids with random gaps."""
    rng = random.Random(seed)
    bases = templates()
    games: dict[int, dict[str, Any]] = {}
    game_id = first_id
    for index in range(count):
        base = bases[index % len(bases)]
        games[game_id] = {
            **base,
            "id": game_id,
            "name": f"{base['name']} #{game_id}",
            "slug": f"{base['slug']}-{game_id}",
            "url": f"https://www.igdb.com/games/{base['slug']}-{game_id}",
        }
        game_id += rng.randint(1, max_gap)
    return games


def own_covers(games: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """``games`` with a cover of their own each, as IGDB has (the recording's covers repeat,
    and an image pipeline downloads a repeated URL once)."""
    return {
        game_id: {**game, "cover": {"id": game_id, "image_id": f"cover{game_id}"}}
        for game_id, game in games.items()
    }


# --- The fake -------------------------------------------------------------------------------


@dataclass
class _Token:
    client_id: str
    uses: int = 0


class FakeIgdb:
    """IGDB + Twitch on ``server``; counters say what the crawler did."""

    def __init__(
        self,
        server: FakeServer,
        games: dict[int, dict[str, Any]] | None = None,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        requests_per_second: int | None = 4,
        window: float = 1.0,
        max_open: int | None = 8,
        token_uses: int | None = None,
        expires_in: int = 5_011_271,
        latency: float = 0.0,
        token_latency: float = 0.0,
    ) -> None:
        self.server = server
        self.client_id = client_id
        self.client_secret = client_secret
        self.requests_per_second = requests_per_second
        self.window = window
        self.max_open = max_open
        self.token_uses = token_uses
        self.expires_in = expires_in
        self.latency = latency
        self.token_latency = token_latency
        self.games: dict[int, dict[str, Any]] = {}
        self._ids: list[int] = []
        self.set_games(games or {})
        self._lock = threading.Lock()
        self._tokens: dict[str, _Token] = {}
        self._open: Counter[str] = Counter()
        self._accepted: dict[str, deque[float]] = defaultdict(deque)
        # What happened, for tests and the benchmark.
        self.token_requests = 0
        self.issued: list[str] = []
        self.expired: set[str] = set()  # tokens that died after token_uses requests
        self.statuses: Counter[int] = Counter()  # API answers by status
        self.unauthorized_tokens: Counter[str] = Counter()  # 401s by token sent
        self.max_open_seen = 0
        self.records_served = 0
        # Games answered by /v4/games queries, by id (the probe's multiquery not included).
        self.games_served: Counter[int] = Counter()
        # Kill tests hold one request back (``holds.hold(n)``) and kill its sender.
        self.holds = RequestHold(r"/v4/games")
        server.route("POST", r"/oauth2/token")(self._token_endpoint)
        server.route("POST", r"/v4/multiquery")(self._multiquery)
        server.route("POST", r"/v4/(?P<endpoint>games(?:/count)?)")(self._endpoint)

    @property
    def api_url(self) -> str:
        return f"{self.server.url}/v4"

    @property
    def token_url(self) -> str:
        return f"{self.server.url}/oauth2/token"

    def environment(self) -> dict[str, str]:
        """What points a ``scrapy`` child process at this fake: its environment variables."""
        return {
            "IGDB_API_URL": self.api_url,
            "TWITCH_TOKEN_URL": self.token_url,
            "IGDB_CLIENT_ID": self.client_id,
            "IGDB_CLIENT_SECRET": self.client_secret,
        }

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """Crawl settings pointing at this fake, with the OAuth middleware registered.

        The ``igdb`` and ``twitch`` slots are left as the project configures them unless
        ``overrides`` replace ``DOWNLOAD_SLOTS``.
        """
        middlewares = get_project_settings().getdict("DOWNLOADER_MIDDLEWARES")
        return {
            **self.environment(),
            "DOWNLOADER_MIDDLEWARES": {**middlewares, OAUTH_MIDDLEWARE: 560},
            **overrides,
        }

    @property
    def api_requests(self) -> int:
        return sum(self.statuses.values())

    def set_games(self, games: dict[int, dict[str, Any]]) -> None:
        """Replace the catalogue."""
        self.games = dict(games)
        self._ids = sorted(self.games)

    def touch(self, ids: Iterable[int], **changes: Any) -> None:
        """Edit games as an IGDB editor would: new values, ``updated_at`` now."""
        for game_id in ids:
            game = copy.copy(self.games[game_id])
            game.update(changes, updated_at=int(time.time()))
            self.games[game_id] = game

    def issue_token(self) -> str:
        """A valid token, as if obtained earlier (by another worker or run)."""
        token = secrets.token_hex(15)
        with self._lock:
            self._tokens[token] = _Token(self.client_id)
            self.issued.append(token)
        return token

    # -- Twitch ---------------------------------------------------------------------------
    def _token_endpoint(self, request: FakeRequest) -> FakeResponse:
        with self._lock:
            self.token_requests += 1
        if self.token_latency:
            time.sleep(self.token_latency)
        form = {name: values[0] for name, values in request.query.items()}
        if request.body:
            form.update(
                {name: values[0] for name, values in parse_qs(request.body.decode()).items()}
            )
        # Twitch's documented answers for the client-credentials grant.
        if form.get("grant_type") != "client_credentials":
            return FakeResponse.json({"status": 400, "message": "missing grant type"}, 400)
        if form.get("client_id") != self.client_id:
            return FakeResponse.json({"status": 400, "message": "invalid client"}, 400)
        if form.get("client_secret") != self.client_secret:
            return FakeResponse.json({"status": 403, "message": "invalid client secret"}, 403)
        token = self.issue_token()
        return FakeResponse.json(
            {"access_token": token, "expires_in": self.expires_in, "token_type": "bearer"}
        )

    # -- IGDB -----------------------------------------------------------------------------
    def _guarded(self, request: FakeRequest, answer: Callable[[], FakeResponse]) -> FakeResponse:
        client = request.header("client-id") or ""
        with self._lock:
            recent = self._accepted[client]
            while recent and recent[0] <= request.arrived - self.window:
                recent.popleft()
            too_many_open = self.max_open is not None and self._open[client] >= self.max_open
            too_fast = self.requests_per_second is not None and (
                len(recent) >= self.requests_per_second
            )
            if too_many_open or too_fast:
                self.statuses[429] += 1
                # No recorded IGDB 429 body exists (PROVENANCE.md); the status is what counts.
                return FakeResponse.json({"message": "Too Many Requests"}, 429)
            recent.append(request.arrived)
            self._open[client] += 1
            self.max_open_seen = max(self.max_open_seen, self._open[client])
        try:
            if self.latency:
                time.sleep(self.latency)
            response = self._authorized(request, client) or answer()
        finally:
            with self._lock:
                self._open[client] -= 1
        with self._lock:
            self.statuses[response.status] += 1
        return response

    def _authorized(self, request: FakeRequest, client: str) -> FakeResponse | None:
        """None when Client-ID and bearer token are good; IGDB's 401 otherwise."""
        authorization = request.header("authorization") or ""
        token = authorization.removeprefix("Bearer ")
        with self._lock:
            known = self._tokens.get(token) if authorization.startswith("Bearer ") else None
            if known is not None and self.token_uses is not None and known.uses >= self.token_uses:
                self.expired.add(token)
                known = None
            if known is None or known.client_id != client:
                self.unauthorized_tokens[token] += 1
                return FakeResponse(401, ERROR_401_BODY, {"Content-Type": "application/json"})
            known.uses += 1
        return None

    def _endpoint(self, request: FakeRequest, endpoint: str) -> FakeResponse:
        def answer() -> FakeResponse:
            try:
                result = self._run(endpoint, request.body.decode())
            except (ApicalypseError, ValueError) as error:
                return error_400(str(error))
            if endpoint == "games":
                with self._lock:
                    self.games_served.update(game["id"] for game in result["result"])
            return self._json(result)

        self.holds.held_back(request)
        return self._guarded(request, answer)

    def _multiquery(self, request: FakeRequest) -> FakeResponse:
        def answer() -> FakeResponse:
            text = request.body.decode()
            blocks = list(QUERY_BLOCK.finditer(text))
            if not blocks or "".join(b[0] for b in blocks).strip() != text.strip():
                return error_400('Expecting query blocks: query <endpoint> "name" { ... };')
            if len(blocks) > 10:
                return error_400("A multiquery holds at most 10 queries")
            results = []
            try:
                for block in blocks:
                    outcome = self._run(block[1], block[3])
                    key = "count" if block[1].endswith("/count") else "result"
                    results.append({"name": block[2], key: outcome[key]})
            except (ApicalypseError, ValueError) as error:
                return error_400(str(error))
            return self._json(results)

        self.holds.held_back(request)
        return self._guarded(request, answer)

    def _run(self, endpoint: str, text: str) -> Any:
        query = parse_query(text)
        resource, _, count = endpoint.partition("/")
        if resource != "games":
            raise ApicalypseError(f"Unknown endpoint {resource}")
        matches = self._matching(query)
        if count:
            return {"count": len(matches)}
        if query.sort is not None:
            name, descending = query.sort
            matches.sort(key=lambda game: game.get(name, 0), reverse=descending)
        page = matches[query.offset : query.offset + query.limit]
        with self._lock:
            self.records_served += len(page)
        return {"result": [project(game, query.fields) for game in page]}

    def _matching(self, query: Query) -> list[dict[str, Any]]:
        low, high = 0, len(self._ids)
        for name, operator, value in query.where:
            # Id bounds narrow the scan by bisection; the rest is filtered below.
            if name == "id" and operator in (">", ">="):
                bound = bisect_right if operator == ">" else bisect_left
                low = max(low, bound(self._ids, value))
            elif name == "id" and operator in ("<", "<="):
                bound = bisect_left if operator == "<" else bisect_right
                high = min(high, bound(self._ids, value))
        games = [self.games[game_id] for game_id in self._ids[low:high]]
        for name, operator, value in query.where:
            test = OPERATORS[operator]
            games = [game for game in games if name in game and test(game[name], value)]
        return games

    def _json(self, result: Any) -> FakeResponse:
        payload = result["result"] if isinstance(result, dict) and "result" in result else result
        return FakeResponse(200, igdb_json(payload), {"Content-Type": "application/json"})

    def report(self) -> dict[str, Any]:
        """What the fake saw, as JSON-able counters (arrival times are time.monotonic())."""
        with self._lock:
            return {
                "token_requests": self.token_requests,
                "statuses": {str(status): count for status, count in self.statuses.items()},
                "max_open": self.max_open_seen,
                "records_served": self.records_served,
                "api_arrivals": sorted(hit.arrived for hit in self.server.hits(r"/v4/.*")),
            }


def unlimited_fake(server: FakeServer, games: int = 0, **kwargs: Any) -> FakeIgdb:
    """A fake IGDB on ``server`` serving ``games`` sample games, with no rate or open limit."""
    return FakeIgdb(server, sample_games(games), requests_per_second=None, max_open=None, **kwargs)


def main() -> None:
    """Serve a fake IGDB until stdin closes: prints its settings, then its report, as JSON lines.

    A separate process keeps the fake's own work off the crawler's interpreter (benchmarks).
    """
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--games", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--requests-per-second", type=int, default=4)
    parser.add_argument("--max-open", type=int, default=8)
    parser.add_argument("--own-covers", action="store_true", help="a cover URL per game")
    args = parser.parse_args()
    server = FakeServer().start()
    games = sample_games(args.games)
    fake = FakeIgdb(
        server,
        own_covers(games) if args.own_covers else games,
        requests_per_second=args.requests_per_second or None,
        max_open=args.max_open or None,
        latency=args.latency,
    )
    settings = {
        name: value for name, value in fake.settings().items() if name != "DOWNLOADER_MIDDLEWARES"
    }
    print(json.dumps(settings), flush=True)
    sys.stdin.read()
    print(json.dumps(fake.report()), flush=True)
    server.stop()


if __name__ == "__main__":
    main()
