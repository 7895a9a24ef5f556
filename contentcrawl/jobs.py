"""The scheduled jobs: which spider runs with which arguments, daily, weekly or monthly.

``scrapy schedule <schedule>`` sends a schedule's jobs to scrapyd; ``scrapy syncall
[<schedule>]`` runs them in this process. Jobs of one source run one after another (they
share the source's rate limit); different sources run side by side.

Arguments and settings here are never secrets: credentials reach jobs through the
environment (or ``.env``) of the host that runs them.

To add a job: append a ``Job`` to ``JOBS`` with a unique ``name``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SCHEDULES = ("daily", "weekly", "monthly")
TMDB_KINDS = ("movies", "series", "people", "collections", "companies", "networks", "keywords")


@dataclass(frozen=True)
class Job:
    """One scheduled crawl: ``scrapy crawl <spider> -a <args> -s <settings>``, on ``schedule``."""

    name: str
    spider: str
    schedule: str
    args: dict[str, str] = field(default_factory=dict)
    # Non-secret settings for this job only (scrapyd's ``setting=NAME=VALUE``).
    settings: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"{self.name}: schedule must be one of {SCHEDULES}")

    @property
    def source(self) -> str:
        """The source the job's spider crawls (``tmdb`` for ``tmdb_movies``)."""
        return self.spider.split("_", 1)[0]


def _tmdb(kind: str, schedule: str, mode: str, **settings: str) -> Job:
    return Job(f"tmdb_{kind}-{mode}", f"tmdb_{kind}", schedule, {"mode": mode}, settings)


JOBS: tuple[Job, ...] = (
    # Daily: what changed at TMDB (14-day windows since the last clean run), then the
    # collections, companies and networks the new records point at.
    _tmdb("movies", "daily", "changes"),
    _tmdb("series", "daily", "changes"),
    _tmdb("people", "daily", "changes"),
    _tmdb("collections", "daily", "missing"),
    _tmdb("companies", "daily", "missing"),
    _tmdb("networks", "daily", "missing"),
    Job("igdb_games-incremental", "igdb_games", "daily", {"mode": "incremental"}),
    # Daily too: the requests any run gave up on (dead letters), asked for again. A spider
    # with none pending makes no request.
    *(_tmdb(kind, "daily", "failed") for kind in TMDB_KINDS),
    Job("igdb_games-failed", "igdb_games", "daily", {"mode": "failed"}),
    Job("musicbrainz_artists-failed", "musicbrainz_artists", "daily", {"mode": "failed"}),
    # Weekly: every id of TMDB's daily exports (records changes missed, marks nothing
    # deleted), and a full IGDB pass. An export job must bring records.
    _tmdb("movies", "weekly", "export", SPIDERMON_MIN_ITEMS="1"),
    _tmdb("series", "weekly", "export", SPIDERMON_MIN_ITEMS="1"),
    _tmdb("people", "weekly", "export", SPIDERMON_MIN_ITEMS="1"),
    _tmdb("collections", "weekly", "export"),
    _tmdb("companies", "weekly", "export"),
    _tmdb("networks", "weekly", "export"),
    _tmdb("keywords", "weekly", "export", SPIDERMON_MIN_ITEMS="1"),
    Job("igdb_games-full", "igdb_games", "weekly", {"mode": "full"}, {"SPIDERMON_MIN_ITEMS": "1"}),
    # MusicBrainz publishes its JSON dumps twice a week; at 1 request/s the API is for
    # top-ups of chosen artists (MUSICBRAINZ_QUERIES), the dumps for coverage.
    Job("musicbrainz_artists-dump", "musicbrainz_artists", "weekly", {"mode": "dump"}),
    # Monthly: Open Library's dumps. Authors first: editions look author names up.
    Job("openlibrary_authors-dump", "openlibrary_authors", "monthly"),
    Job("openlibrary_works-dump", "openlibrary_works", "monthly"),
    Job("openlibrary_books-dump", "openlibrary_books", "monthly"),
)


def jobs_for(schedule: str, jobs: tuple[Job, ...] = JOBS) -> list[Job]:
    """The jobs of one schedule, in their listed order."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}: use one of {', '.join(SCHEDULES)}")
    return [job for job in jobs if job.schedule == schedule]


def jobs_named(names: list[str], jobs: tuple[Job, ...] = JOBS) -> list[Job]:
    """The jobs of these names, in the order given; raises ``KeyError`` for an unknown name."""
    by_name = {job.name: job for job in jobs}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise KeyError(f"unknown jobs: {', '.join(unknown)}")
    return [by_name[name] for name in names]


def by_source(jobs: list[Job]) -> dict[str, list[Job]]:
    """Jobs grouped by source, each group in its listed order."""
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.source, []).append(job)
    return groups
