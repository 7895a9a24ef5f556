"""Scrapy settings for contentcrawl: the only module that reads the environment.

Precedence, lowest first: the defaults below, a ``.env`` file (python-dotenv), real
environment variables, then ``scrapy crawl -s NAME=VALUE`` (Scrapy's command-line
priority). ``.env`` is looked up from the working directory upwards, or taken from
``CONTENTCRAWL_ENV_FILE`` when that names a file.

Each default lives here only: components read a setting without a default of their own
(``settings.getint("NAME")``), so this file is the one place to read or change it.
"""

import os

from dotenv import find_dotenv, load_dotenv

from contentcrawl import __version__
from contentcrawl.renamed_settings import OLD_NAMES, warn_renamed

# override=False: a real environment variable always beats the same name in .env.
load_dotenv(os.environ.get("CONTENTCRAWL_ENV_FILE") or find_dotenv(usecwd=True), override=False)


def _env(name: str, default: str = "") -> str:
    value = os.environ.get(name)
    old = OLD_NAMES.get(name)
    if value is None and old is not None and old in os.environ:
        warn_renamed(old, "the environment")
        value = os.environ[old]
    return (default if value is None else value).strip()


def _env_int(name: str, default: int) -> int:
    return int(_env(name) or default)


def _env_float(name: str, default: float) -> float:
    return float(_env(name) or default)


def _env_bool(name: str, default: bool) -> bool:
    value = _env(name).lower()
    if not value:
        return default
    return value in {"1", "true", "yes", "on"}


BOT_NAME = "contentcrawl"
SPIDER_MODULES = ["contentcrawl.spiders"]
NEWSPIDER_MODULE = "contentcrawl.spiders"
COMMANDS_MODULE = "contentcrawl.commands"

# --- Where records go --------------------------------------------------------
# MONGO_URI set -> MongoDB; unset -> the embedded SQLite file at SQLITE_PATH.
MONGO_URI = _env("MONGO_URI")
MONGO_DATABASE = _env("MONGO_DATABASE", "contentcrawl")
# Seconds to find and connect to a MongoDB server before the store counts as unavailable
# (pymongo's serverSelectionTimeoutMS and connectTimeoutMS, unless MONGO_URI sets them).
MONGO_CONNECT_TIMEOUT = _env_float("MONGO_CONNECT_TIMEOUT", 5.0)
SQLITE_PATH = _env("SQLITE_PATH", "data/contentcrawl.sqlite3")
# Seconds a SQLite write waits for another writer (a second crawl, the read API) to finish.
SQLITE_BUSY_TIMEOUT = _env_float("SQLITE_BUSY_TIMEOUT", 30.0)
STORE_BATCH_SIZE = _env_int("STORE_BATCH_SIZE", 500)
# A failed batch is retried this many times on transient errors before it fails.
STORE_WRITE_RETRIES = _env_int("STORE_WRITE_RETRIES", 3)
# Where a batch that still fails after those retries is saved (JSON lines), never lost; the
# next crawl stores it before its own records.
STORE_FAILED_DIR = _env("STORE_FAILED_DIR", "data/store_failed")

# --- Images (off by default: metadata first) ----------------------------------
IMAGES_ENABLED = _env_bool("IMAGES_ENABLED", False)
IMAGES_STORE = _env("IMAGES_STORE", "data/images")
IMAGES_EXPIRES = _env_int("IMAGES_EXPIRES", 365)
# Seconds a record waits for all its images (queue, connection and transfer together):
# then it is stored with those it got, and the next crawl fetches the rest. Also the
# longest pause of an image host's download slot.
IMAGES_TIMEOUT = _env_float("IMAGES_TIMEOUT", 5.0)

# --- Remote endpoints: every URL a spider requests starts with one of these ---
TMDB_API_URL = _env("TMDB_API_URL", "https://api.themoviedb.org/3")
TMDB_EXPORTS_URL = _env("TMDB_EXPORTS_URL", "https://files.tmdb.org/p/exports")
TMDB_IMAGE_URL = _env("TMDB_IMAGE_URL", "https://image.tmdb.org/t/p/original")
IGDB_API_URL = _env("IGDB_API_URL", "https://api.igdb.com/v4")
# Cover URL = <this>/<image_id>.jpg
IGDB_IMAGE_URL = _env("IGDB_IMAGE_URL", "https://images.igdb.com/igdb/image/upload/t_cover_big")
TWITCH_TOKEN_URL = _env("TWITCH_TOKEN_URL", "https://id.twitch.tv/oauth2/token")
MUSICBRAINZ_API_URL = _env("MUSICBRAINZ_API_URL", "https://musicbrainz.org/ws/2")
MUSICBRAINZ_DUMPS_URL = _env(
    "MUSICBRAINZ_DUMPS_URL", "https://data.metabrainz.org/pub/musicbrainz/data/json-dumps"
)
OPENLIBRARY_DUMPS_URL = _env("OPENLIBRARY_DUMPS_URL", "https://openlibrary.org/data")
OPENLIBRARY_COVERS_URL = _env("OPENLIBRARY_COVERS_URL", "https://covers.openlibrary.org/b")
OPENLIBRARY_PHOTOS_URL = _env("OPENLIBRARY_PHOTOS_URL", "https://covers.openlibrary.org/a")

# --- Dump files (TMDB exports, Open Library and MusicBrainz dumps) --------------
# Downloaded by a streaming, resumable download (not Scrapy's buffered bodies) into here.
DUMPS_DIR = _env("DUMPS_DIR", "data/dumps")
# Resumes of a dump download within one run after a dropped connection.
DUMP_DOWNLOAD_RETRIES = _env_int("DUMP_DOWNLOAD_RETRIES", 3)
# Record batches (items) a dump reader lets into the pipelines before it waits (bounded memory).
DUMP_MAX_PENDING_ITEMS = _env_int("DUMP_MAX_PENDING_ITEMS", 4)
# Processes that parse, map, validate and hash dump lines (0: in the crawl's own process);
# unset, one per core.
DUMP_WORKERS = int(_env("DUMP_WORKERS") or os.cpu_count() or 1)
# Lines per chunk handed to a worker, and per record batch sent through the pipelines.
DUMP_CHUNK_LINES = _env_int("DUMP_CHUNK_LINES", 1000)
# An import whose bad lines pass this share of the lines read fails (a garbage or
# mislabelled file); judged from DUMP_BAD_LINE_MIN_LINES lines, below that only when no
# line is good.
DUMP_MAX_BAD_LINE_SHARE = _env_float("DUMP_MAX_BAD_LINE_SHARE", 0.5)
DUMP_BAD_LINE_MIN_LINES = _env_int("DUMP_BAD_LINE_MIN_LINES", 10)
# Seconds between progress lines of dump downloads (TMDB exports too) and of the Open
# Library and MusicBrainz dump imports: not the Progress extension's PROGRESS_LOG_INTERVAL,
# nor TMDB_PROGRESS_INTERVAL (the TMDB spider's own line).
DUMP_PROGRESS_INTERVAL = _env_int("DUMP_PROGRESS_INTERVAL", 30)

# --- IGDB run options -------------------------------------------------------------------
IGDB_PAGE_SIZE = _env_int("IGDB_PAGE_SIZE", 500)  # games per query (IGDB's maximum)
# Id ranges paged at once, so the igdb slot stays saturated.
IGDB_PARALLEL_RANGES = _env_int("IGDB_PARALLEL_RANGES", 16)
# Seconds re-read before the last sync point in incremental mode (clock skew).
IGDB_SYNC_OVERLAP = _env_int("IGDB_SYNC_OVERLAP", 900)
# A new token is fetched this long before the stored one expires.
IGDB_TOKEN_REFRESH_MARGIN = _env_float("IGDB_TOKEN_REFRESH_MARGIN", 86400.0)
# Where the IGDB app token is kept between runs: `store` (sync_state, in plain text in an
# owner-only file, like the client secret in .env that can mint one), `redis` (REDIS_URL,
# expiring with the token) or `memory` (this process only: one token request per run).
IGDB_TOKEN_STORE = _env("IGDB_TOKEN_STORE", "store")

# --- MusicBrainz run options ------------------------------------------------------------
# Searches run when neither -a query nor -a mbids is given; ";"-separated (Lucene queries
# may contain commas).
MUSICBRAINZ_QUERIES = [
    query.strip() for query in _env("MUSICBRAINZ_QUERIES").split(";") if query.strip()
]
# `limit` of searches and browses (MusicBrainz allows 1-100).
MUSICBRAINZ_PAGE_SIZE = _env_int("MUSICBRAINZ_PAGE_SIZE", 100)
# Results read per search (0: all); a search stops at the first hit below MIN_SCORE.
MUSICBRAINZ_SEARCH_MAX_RESULTS = _env_int("MUSICBRAINZ_SEARCH_MAX_RESULTS", 1000)
MUSICBRAINZ_MIN_SCORE = _env_int("MUSICBRAINZ_MIN_SCORE", 0)

# --- TMDB run options ------------------------------------------------------------
# A changes cursor older than this runs an export instead (TMDB keeps changes for a
# limited time and documents no exact period).
TMDB_CHANGES_MAX_AGE_DAYS = _env_int("TMDB_CHANGES_MAX_AGE_DAYS", 90)
# Detail requests waiting for an answer at once while an export is read.
TMDB_START_BACKLOG = _env_int("TMDB_START_BACKLOG", 200)
# Seconds between the TMDB spider's progress lines (records done of those planned, ETA).
TMDB_PROGRESS_INTERVAL = _env_int("TMDB_PROGRESS_INTERVAL", 60)
# Pages read per list in `lists` mode (`-a pages=` overrides).
TMDB_LIST_PAGES = _env_int("TMDB_LIST_PAGES", 5)
# Default of `-a older_than_days=` in `refresh` mode.
TMDB_REFRESH_DAYS = _env_int("TMDB_REFRESH_DAYS", 30)
# Filters (off by default): skip movies below a budget / revenue, or without these parts.
TMDB_MIN_BUDGET = _env_int("TMDB_MIN_BUDGET", 0)
TMDB_MIN_REVENUE = _env_int("TMDB_MIN_REVENUE", 0)
TMDB_REQUIRE = [part for part in _env("TMDB_REQUIRE").split(",") if part]

# --- Credentials (never logged: see README "Secrets") -------------------------
TMDB_READ_ACCESS_TOKEN = _env("TMDB_READ_ACCESS_TOKEN")
TMDB_API_KEY = _env("TMDB_API_KEY")
TMDB_LANGUAGE = _env("TMDB_LANGUAGE", "en-US")
IGDB_CLIENT_ID = _env("IGDB_CLIENT_ID")
IGDB_CLIENT_SECRET = _env("IGDB_CLIENT_SECRET")
MUSICBRAINZ_CONTACT = _env("MUSICBRAINZ_CONTACT")

USER_AGENT = f"contentcrawl/{__version__} (+https://github.com/contentcrawl/contentcrawl)"
# The sources are APIs and dump files, not pages; their robots.txt speaks to browsers.
ROBOTSTXT_OBEY = False
TELNETCONSOLE_ENABLED = False
# Scrapy 2.19 starts in every crawl an HTTP server that runs the Python code sent to it, and
# writes its port and token into the user's state directory (left behind by a killed crawl).
# A scrapyd host runs many crawls unattended: it is switched on for a debugging session only.
REMOTE_CONTROL_ENABLED = False
# The sources are APIs and dump files: no answer sets a cookie worth sending back.
COOKIES_ENABLED = False
FEED_EXPORT_ENCODING = "utf-8"
LOG_LEVEL = _env("LOG_LEVEL", "INFO")

# --- Rate limits: per source, never per host ----------------------------------
# Each source's requests carry meta["download_slot"] = <source>, so these limits hold
# whatever host a base URL points at (a mirror, a proxy, a test fake on 127.0.0.1).
# "rate" is the published limit in requests/s, held by PacingMiddleware
# (contentcrawl/middlewares/pacing.py), which also lowers it on 429/503 (the slot learns
# the rate the server really allows, contentcrawl/pacing.py), pauses a slot on failures and
# never for longer than its "backoff_max" (default: RETRY_AFTER_MAX). "concurrency",
# "delay" and "jitter" are Scrapy's: "delay" 0, AutoThrottle raises it when a server
# answers slowly.
# TMDB: ~40/s. The tmdb slot is paced ("pace": its rate is kept, not a minimum gap): 1/40
# under TMDB's so that no second holds more than 40 requests (bench/tmdb_crawl.py).
TMDB_REQUESTS_PER_SECOND = _env_float("TMDB_REQUESTS_PER_SECOND", 39.0)
TMDB_CONCURRENCY = _env_int("TMDB_CONCURRENCY", 16)  # TMDB: 20 connections per IP
IGDB_REQUESTS_PER_SECOND = _env_float("IGDB_REQUESTS_PER_SECOND", 3.7)  # IGDB: 4/s
IGDB_CONCURRENCY = _env_int("IGDB_CONCURRENCY", 7)  # IGDB: 8 open requests
MUSICBRAINZ_REQUESTS_PER_SECOND = _env_float("MUSICBRAINZ_REQUESTS_PER_SECOND", 1.0)  # MB: 1/s
DOWNLOAD_SLOTS = {
    "tmdb": {
        "concurrency": TMDB_CONCURRENCY,
        "delay": 0.0,
        "jitter": 0,
        "rate": TMDB_REQUESTS_PER_SECOND,
        "pace": True,
    },
    # Image slots: one per image host (<slot>@<host>, contentcrawl/pacing.py), each with
    # these settings; a dead host's pauses never outlast a record's image deadline.
    "tmdb_images": {
        "concurrency": 8,
        "delay": 0.0,
        "jitter": 0,
        "backoff_max": IMAGES_TIMEOUT,
    },
    "igdb_images": {
        "concurrency": 8,
        "delay": 0.0,
        "jitter": 0,
        "backoff_max": IMAGES_TIMEOUT,
    },
    "igdb": {
        "concurrency": IGDB_CONCURRENCY,
        "delay": 0.0,
        "jitter": 0,
        "rate": IGDB_REQUESTS_PER_SECOND,
        "pace": True,
    },
    "twitch": {"concurrency": 1, "delay": 0.0, "jitter": 0, "rate": 1.0},
    # 5 % under MusicBrainz's 1/s, as a minimum gap: the gap is measured when a request
    # leaves PacingMiddleware, and a request reaches the server up to tens of ms later than
    # that (a garbage collection pause between the two measured 40 ms), so a 2 % margin let
    # two land 0.98 s apart and drew a 503 (bench/musicbrainz_crawl.py).
    "musicbrainz": {
        "concurrency": 1,
        "delay": 0.0,
        "jitter": 0,
        "rate": MUSICBRAINZ_REQUESTS_PER_SECOND / 1.05,
    },
    "musicbrainz_dumps": {"concurrency": 1, "delay": 0.0, "jitter": 0},
    "openlibrary_dumps": {"concurrency": 1, "delay": 0.0, "jitter": 0},
    "openlibrary_covers": {
        "concurrency": 4,
        "delay": 0.0,
        "jitter": 0,
        "rate": 10.0,
        "backoff_max": IMAGES_TIMEOUT,
    },
}
CONCURRENT_REQUESTS = _env_int("CONCURRENT_REQUESTS", 32)
CONCURRENT_REQUESTS_PER_DOMAIN = 8
DOWNLOAD_TIMEOUT = _env_int("DOWNLOAD_TIMEOUT", 60)

# Scrapy's AutoThrottle: a slot's delay follows its answers' latency / this target, never
# under the slot's "rate" (PacingMiddleware holds that). 16, the most open requests any
# slot allows (tmdb): a slot's own "concurrency" bounds it anyway, so AutoThrottle only
# slows a slot whose answers take longer than 16 of its rate's intervals.
AUTOTHROTTLE_ENABLED = _env_bool("AUTOTHROTTLE_ENABLED", True)
AUTOTHROTTLE_START_DELAY = 1.0
AUTOTHROTTLE_MAX_DELAY = 60.0
AUTOTHROTTLE_TARGET_CONCURRENCY = 16.0

# --- Retries and backoff ------------------------------------------------------
# BACKOFF_* and RETRY_AFTER_MAX are PacingMiddleware's (middlewares/pacing.py);
# RETRY_BACKOFF_MAX caps the backoff without a Retry-After, unlike a slot's "backoff_max" above,
# which caps every pause of that slot.
RETRY_ENABLED = True
RETRY_TIMES = _env_int("RETRY_TIMES", 5)
RETRY_HTTP_CODES = [500, 502, 503, 504, 522, 524, 408, 429]
# Exponential backoff with jitter when a response carries no Retry-After:
# RETRY_BACKOFF_BASE * 2**(n-1) seconds after the n-th consecutive failure of a slot, capped.
RETRY_BACKOFF_BASE = _env_float("RETRY_BACKOFF_BASE", 1.0)
RETRY_BACKOFF_MAX = _env_float("RETRY_BACKOFF_MAX", 300.0)
RETRY_BACKOFF_JITTER = 0.25
# A Retry-After longer than this is capped (a server asking for a day is not obeyed blindly).
RETRY_AFTER_MAX = _env_float("RETRY_AFTER_MAX", 3600.0)

DOWNLOADER_MIDDLEWARES = {
    # Outermost: requests a stopping crawl hands back unsent go back to the scheduler
    # (contentcrawl/middlewares/pacing.py).
    "contentcrawl.middlewares.pacing.HandBackMiddleware": 10,
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    "contentcrawl.middlewares.polite_retry.PoliteRetryMiddleware": 550,
    # After the retry and redirect middlewares, so it sees every answer first and a retry
    # waits for its slot; before the TMDB key goes into the URL.
    "contentcrawl.middlewares.pacing.PacingMiddleware": 900,
    # Closest to the downloader, so no other middleware (retry, redirect, cache) ever holds
    # a request with the TMDB key in its URL.
    "contentcrawl.middlewares.tmdb_auth.TmdbAuthMiddleware": 950,
    # After the retry middleware: a retried request is signed with the current token.
    "contentcrawl.middlewares.igdb_oauth.IgdbOAuthMiddleware": 560,
    # Last before the network: an account lease is held only while the request goes out.
    "contentcrawl.middlewares.redis_limits.RedisAccountLimits": 990,
}
EXTENSIONS = {
    # First: the umask is owner-only before any other component writes a file.
    "contentcrawl.extensions.private_files.PrivateFiles": -100,
    # The crawl's one store, for every component that reads or writes it.
    "contentcrawl.extensions.crawl_store.CrawlStore": -50,
    "contentcrawl.extensions.log_redaction.LogRedaction": 0,
    # log_count/<LEVEL> of this crawl only, when `scrapy syncall` runs several in one process.
    "scrapy.extensions.logcount.LogCount": None,
    "contentcrawl.extensions.log_counts.LogCounts": 0,
    # Dump imports carry records in batches: counts, feed exports and CLOSESPIDER_ITEMCOUNT
    # per record.
    "contentcrawl.extensions.record_batches.RecordCounts": 0,
    "scrapy.extensions.feedexport.FeedExporter": None,
    "contentcrawl.extensions.record_batches.RecordFeedExporter": 0,
    "scrapy.extensions.closespider.CloseSpider": None,
    "contentcrawl.extensions.record_batches.RecordCloseSpider": 0,
    "contentcrawl.extensions.distributed.DistributedRun": 50,
    "contentcrawl.extensions.sync_state.SyncState": 100,
    "spidermon.contrib.scrapy.extensions.Spidermon": 500,
    "contentcrawl.extensions.progress.Progress": 800,
    # After Spidermon: the run record reads the monitors' verdict.
    "contentcrawl.extensions.runs.RunRecorder": 900,
}

# --- Run records, dead letters, progress -----------------------------------------------
# Write a run record to `runs` for every crawl and keep requests that still fail after
# their retries in `failures` (replayed by `-a mode=failed`).
RUNS_ENABLED = _env_bool("RUNS_ENABLED", True)
# Seconds between two refreshes of a running crawl's heartbeat in its run record; a record
# silent for 3 intervals (or whose process is gone, on the same host) is marked killed by
# the next run or `scrapy status`. 0: no heartbeat (only the same-host check).
RUNS_HEARTBEAT_INTERVAL = _env_float("RUNS_HEARTBEAT_INTERVAL", 60.0)
# Dead letters replayed per `mode=failed` run (0: all).
FAILURES_REPLAY_LIMIT = _env_int("FAILURES_REPLAY_LIMIT", 0)
# The Progress extension (extensions/progress.py): seconds between its generic progress
# lines (0 switches it off), and a live line on a terminal.
PROGRESS_LOG_INTERVAL = _env_int("PROGRESS_LOG_INTERVAL", 60)
PROGRESS_LIVE = _env_bool("PROGRESS_LIVE", True)

# --- Monitoring (spidermon; contentcrawl/monitors.py) ------------------------------------
# The thresholds of the run's verdict (contentcrawl/verdict.py), which the monitors show.
SPIDERMON_ENABLED = _env_bool("SPIDERMON_ENABLED", True)
SPIDERMON_SPIDER_CLOSE_MONITORS = ["contentcrawl.monitors.CloseMonitorSuite"]
# Long runs are checked every 10 minutes too.
SPIDERMON_PERIODIC_MONITORS = {"contentcrawl.monitors.PeriodicMonitorSuite": 600}
# 0: a quiet day of changes is fine; a job that must bring records raises it with -s.
SPIDERMON_MIN_ITEMS = _env_int("SPIDERMON_MIN_ITEMS", 0)
SPIDERMON_MAX_ERRORS = _env_int("SPIDERMON_MAX_ERRORS", 0)
SPIDERMON_MAX_RETRIES = _env_int("SPIDERMON_MAX_RETRIES", 0)
# Largest share of records validation may drop before the run counts as failed (a verdict
# threshold of contentcrawl/verdict.py, like the three SPIDERMON_* above).
MONITOR_MAX_DROPPED_SHARE = _env_float("MONITOR_MAX_DROPPED_SHARE", 0.01)

# --- Many workers (README "Many workers on many machines") ---------------------------------
# Set: requests go through one shared scrapy-redis queue and duplicate filter, one worker
# seeds the ids, and IGDB's account limits hold across workers (DistributedAddon).
REDIS_URL = _env("REDIS_URL")
DISTRIBUTED_SEED_BATCH = _env_int("DISTRIBUTED_SEED_BATCH", 500)  # ids pushed per batch
# The seeder waits while the shared queue holds more requests than this.
DISTRIBUTED_QUEUE_HIGH_WATER = _env_int("DISTRIBUTED_QUEUE_HIGH_WATER", 2000)
DISTRIBUTED_TICK = _env_float("DISTRIBUTED_TICK", 0.5)  # s between state reports
DISTRIBUTED_LOCK_TTL = _env_float("DISTRIBUTED_LOCK_TTL", 30.0)  # a dead seeder's lock frees
DISTRIBUTED_WORKER_TTL = _env_float("DISTRIBUTED_WORKER_TTL", 30.0)  # a dead worker stops counting
DISTRIBUTED_RECONCILE_ROUNDS = _env_int("DISTRIBUTED_RECONCILE_ROUNDS", 2)
# slot -> {"rate": requests/s, "concurrency": open requests} held in Redis for all workers;
# empty: IGDB's, from IGDB_REQUESTS_PER_SECOND and IGDB_CONCURRENCY.
REDIS_ACCOUNT_LIMITS: dict[str, dict[str, float]] = {}
REDIS_LIMITS_POLL = 0.05  # seconds between tries for an open-request lease
ADDONS = {
    # First: an old setting name given with -s takes its new name before the others read it.
    "contentcrawl.renamed_settings.RenamedSettings": -100,
    # The Scrapy components switched off above (remote control, cookies, telnet) are not
    # even imported: ~0.14 s of each crawl's start (contentcrawl/switched_off.py).
    "contentcrawl.switched_off.SwitchedOffComponents": -50,
    "contentcrawl.extensions.distributed.DistributedAddon": 0,
}

# --- Read API (`python -m contentcrawl.api`) ----------------------------------------------
API_HOST = _env("API_HOST", "127.0.0.1")
API_PORT = _env_int("API_PORT", 8000)

# --- scrapyd (the `scrapy schedule` command) ---------------------------------------------
# Default: the [deploy] url of scrapy.cfg.
SCRAPYD_URL = _env("SCRAPYD_URL")
SCRAPYD_USERNAME = _env("SCRAPYD_USERNAME")
SCRAPYD_PASSWORD = _env("SCRAPYD_PASSWORD")
ITEM_PIPELINES = {
    "contentcrawl.pipelines.validation.ValidationPipeline": 100,
    "contentcrawl.pipelines.images.ContentImagesPipeline": 200,
    "contentcrawl.pipelines.store.StorePipeline": 300,
}
