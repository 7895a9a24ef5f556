"""What the MusicBrainz crawl tests share: the fake at the tests' fast pace, and the
User-Agent a crawl sends it."""

from __future__ import annotations

from typing import Any

from contentcrawl import __version__
from spiders_tests.fakes.musicbrainz import CONTACT, FakeMusicBrainz
from spiders_tests.fakes.server import FakeServer

# Every test but the one of the real limit runs at MUSICBRAINZ_FAST_DELAY; the fake still
# refuses two requests closer than FAST_INTERVAL (a slot that lost its delay), with room for
# a busy machine's timer lateness.
FAST_INTERVAL = 0.01
USER_AGENT = f"contentcrawl/{__version__} ( {CONTACT} )"


def fast_fake(server: FakeServer, **kwargs: Any) -> FakeMusicBrainz:
    """The MusicBrainz fake on ``server``, refusing only requests closer than FAST_INTERVAL."""
    return FakeMusicBrainz(server, min_interval=FAST_INTERVAL, **kwargs)
