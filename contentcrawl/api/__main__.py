"""Serve the read API and browse page: ``python -m contentcrawl.api [--host H] [--port P]``."""

import argparse

import uvicorn

from contentcrawl.api.app import project_settings


def main() -> None:
    """Run uvicorn on ``API_HOST``:``API_PORT`` (or the given host and port)."""
    settings = project_settings()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default=settings.get("API_HOST") or "127.0.0.1")
    parser.add_argument("--port", type=int, default=settings.getint("API_PORT", 8000))
    args = parser.parse_args()
    uvicorn.run("contentcrawl.api.app:app", host=args.host, port=args.port)


if __name__ == "__main__":
    main()
