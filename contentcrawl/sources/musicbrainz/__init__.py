"""MusicBrainz (ws/2): artists and their release groups, from the API or the JSON dumps.

API mode is slow by design: MusicBrainz allows one request per second per IP (on average)
and answers every request with 503 while a client is over it, so the ``musicbrainz``
download slot sends one request at a time, ``DOWNLOAD_SLOTS["musicbrainz"]["delay"]``
apart, and ``PoliteRetryMiddleware`` pauses the slot on a 503 (``Retry-After`` when sent).
MusicBrainz also asks for a User-Agent naming the application and a contact: every request
of these spiders carries ``contentcrawl/<version> ( <MUSICBRAINZ_CONTACT> )``.

An API crawl finds artists by search (``-a query=`` or ``MUSICBRAINZ_QUERIES``, paged by
``offset`` until the search's own ``count``) or takes their MBIDs (``-a mbids=``), looks
each one up once (``ARTIST_INC``) and browses all of its release groups, 100 a page: a
lookup would cap them at 25 (the URLs are built in ``queries``). Dump mode (``dump``) reads
the same entity JSON from the weekly dumps. Both go through the pure ``mappers``, so an
artist or album has one record shape (and one content hash) whichever way it came.

With ``REDIS_URL`` set (``contentcrawl.extensions.distributed``) one worker sends the
lookups of ``-a mbids`` and the first page of each search, and every worker takes requests
from the shared queue. Every request is a key of the run: an artist lookup its MBID, an
album lookup ``album:<mbid>``, a search page ``search:<offset>:<query>``, a browse page
``browse:<artist mbid>:<offset>``. A page records the keys it found (artists, albums, the
next page), then settles its own; the reconcile asks again, by lookup, for what a killed
worker left. In dump mode one worker imports the dumps and the others stand by: one that
takes over from a dead importer reads them again, and what was stored costs no write.

To add a MusicBrainz kind: write its mapper in ``mappers``, register it in ``DUMP_MAPPERS``
and give the API crawl a URL in ``queries``, a request and a ``parse_<thing>`` callback.
"""

from contentcrawl.sources.musicbrainz.mappers import album_item, artist_item, is_mbid, rating
from contentcrawl.sources.musicbrainz.queries import user_agent

__all__ = [
    "album_item",
    "artist_item",
    "is_mbid",
    "rating",
    "user_agent",
]
