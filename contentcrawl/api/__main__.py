"""Serve the read API and browse page: ``python -m contentcrawl.api [--host H] [--port P]``."""

import argparse
import sys

import uvicorn

from contentcrawl.api.app import project_settings
from contentcrawl.store import StoreError, build_store


def main() -> None:
    """Run uvicorn on ``API_HOST``:``API_PORT`` (or the given host and port).

    A store that cannot be opened is one line on stderr and exit status 1, before the
    server starts (inside uvicorn's startup it would be a traceback).
    """
    settings = project_settings()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default=settings.get("API_HOST") or "127.0.0.1")
    parser.add_argument("--port", type=int, default=settings.getint("API_PORT"))
    args = parser.parse_args()
    try:
        with build_store(settings):
            pass
    except StoreError as error:
        print(f"contentcrawl.api: cannot open the store: {error}", file=sys.stderr)
        sys.exit(1)
    uvicorn.run("contentcrawl.api.app:app", host=args.host, port=args.port)


if __name__ == "__main__":
    main()
