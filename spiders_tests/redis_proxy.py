"""A TCP proxy in front of a real redis-server that lets a test act on each command a
client sends before Redis gets it: hold it (a slow Redis), or play another worker's move at
that very moment."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from spiders_tests.redis_server import free_port

# Called with each chunk a client sends, before it is passed on to Redis.
BeforeCommand = Callable[[bytes], None]


def _pump(source: socket.socket, target: socket.socket, before: BeforeCommand | None) -> None:
    """Copy ``source`` to ``target`` until ``source`` ends, then end ``target``'s sending."""
    try:
        while chunk := source.recv(65536):
            if before is not None:
                before(chunk)
            target.sendall(chunk)
        target.shutdown(socket.SHUT_WR)
    except OSError:
        return  # a side that resets the connection ends it as one that closes it does


def _relay(client: socket.socket, server: socket.socket, before: BeforeCommand) -> None:
    """Carry one connection both ways until both directions have ended, then close it: each
    direction's thread closing both sockets would pull them from under the other's recv."""
    answers = threading.Thread(target=_pump, args=(server, client, None), daemon=True)
    answers.start()
    _pump(client, server, before)
    answers.join()
    client.close()
    server.close()


@contextmanager
def redis_proxy(redis_url: str, before: BeforeCommand) -> Iterator[str]:
    """The URL of a proxy to ``redis_url`` that calls ``before(chunk)`` with what a client
    sends, before passing it on (a command, or several pipelined, per chunk)."""
    upstream = urlsplit(redis_url)
    listener = socket.create_server(("127.0.0.1", free_port()))

    def accept() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection((upstream.hostname, upstream.port))
            threading.Thread(target=_relay, args=(client, server, before), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    host, port = listener.getsockname()
    try:
        yield f"redis://{host}:{port}/0"
    finally:
        listener.close()
