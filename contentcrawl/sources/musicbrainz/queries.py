"""MusicBrainz ws/2 requests and answers: URLs, includes, User-Agent, run keys, JSON bodies."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from contentcrawl import __version__
from contentcrawl.items import Json

if TYPE_CHECKING:
    from scrapy.http import Response

# ws/2 caps ``limit`` at 100 for searches and browses (25 when it is not given).
MAX_PAGE_SIZE = 100
# What an artist lookup asks for; its release groups come from a browse instead.
ARTIST_INC: tuple[str, ...] = ("aliases", "tags", "genres", "ratings", "url-rels")
# What a release-group browse asks for: who is credited, and the folksonomy.
RELEASE_GROUP_INC: tuple[str, ...] = ("artist-credits", "tags", "genres", "ratings")


def user_agent(contact: str, version: str = __version__) -> str:
    """The User-Agent MusicBrainz asks for: ``contentcrawl/<version> ( <contact> )``."""
    return f"contentcrawl/{version} ( {contact} )"


def ws2_url(api_url: str, path: str, params: Mapping[str, Any], inc: Iterable[str] = ()) -> str:
    """``<api_url>/<path>?<params>&fmt=json[&inc=a+b]``: a ws/2 GET answered in JSON."""
    query = urlencode({**params, "fmt": "json"})
    if inc:
        # ws/2 joins includes with a literal "+" (it would read %2B as well).
        query += "&inc=" + "+".join(inc)
    return f"{api_url}/{path}?{query}"


def search_url(api_url: str, query: str, page_size: int, offset: int) -> str:
    """One page of an artist search (Lucene syntax), from result ``offset``."""
    return ws2_url(api_url, "artist", {"query": query, "limit": page_size, "offset": offset})


def lookup_url(api_url: str, mbid: str) -> str:
    """An artist lookup with ``ARTIST_INC``."""
    return ws2_url(api_url, f"artist/{mbid}", {}, ARTIST_INC)


def release_group_url(api_url: str, mbid: str) -> str:
    """A release-group lookup with ``RELEASE_GROUP_INC``."""
    return ws2_url(api_url, f"release-group/{mbid}", {}, RELEASE_GROUP_INC)


def browse_url(api_url: str, mbid: str, page_size: int, offset: int) -> str:
    """One page of an artist's release groups (a lookup would cap them at 25)."""
    return ws2_url(
        api_url,
        "release-group",
        {"artist": mbid, "limit": page_size, "offset": offset},
        RELEASE_GROUP_INC,
    )


def album_key(mbid: str) -> str:
    """A release group's key in a distributed run (an artist's is its bare MBID)."""
    return f"album:{mbid}"


def search_key(query: str, offset: int) -> str:
    """A search page's key in a distributed run (the query last: it may hold ``:``)."""
    return f"search:{offset}:{query}"


def browse_key(mbid: str, offset: int) -> str:
    """A release-group browse page's key in a distributed run."""
    return f"browse:{mbid}:{offset}"


def body_start(response: Response) -> str:
    """The first 200 characters of a body, for a log line (any content type)."""
    return response.body[:200].decode("utf-8", "replace") if response.body else "(empty body)"


def error_message(response: Response) -> str:
    """The ``error`` ws/2 puts in its JSON error bodies, else the start of the body."""
    body = json_object(response)
    if body is not None and isinstance(body.get("error"), str):
        return body["error"]
    return body_start(response)


def json_object(response: Response) -> Json | None:
    """The JSON object of an answer, or None when the body is not one."""
    try:
        body = json.loads(response.body)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
