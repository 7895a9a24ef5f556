"""MusicBrainz artists and their albums (release groups) → ``artists`` and ``albums``.

scrapy crawl musicbrainz_artists -a query='Tombs'         # search, look up, browse albums
scrapy crawl musicbrainz_artists -a mbids=8b2cccef-ad8b-4029-911e-14157e4cd5ae,…
scrapy crawl musicbrainz_artists                          # the searches in MUSICBRAINZ_QUERIES
scrapy crawl musicbrainz_artists -a mode=dump             # latest artist + release-group dumps
scrapy crawl musicbrainz_artists -a mode=dump -a dump=artist.tar.xz -a limit=1000

One spider for both ways in: the API crawl reaches albums only through their artists, and
the dump import writes the same two collections with the same record shape, so a dump
import followed by API crawls (or the other way round) rewrites only what changed.
"""

from __future__ import annotations

from contentcrawl.sources.musicbrainz.spider import MusicBrainzSpider


class MusicBrainzArtistsSpider(MusicBrainzSpider):
    name = "musicbrainz_artists"
