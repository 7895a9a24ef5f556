"""``scrapy schedule daily|weekly|monthly``: queue a schedule's jobs on a scrapyd.

Called by the shipped crontab or systemd timers (``deploy/``). A job already pending or
running on the scrapyd is skipped, so a slow run is never doubled by the next tick. Jobs
get their arguments and non-secret settings from ``contentcrawl/jobs.py``; credentials
come from the scrapyd host's environment or ``.env``.

The scrapyd is ``--url``, else the ``SCRAPYD_URL`` setting, else the ``[deploy]`` url of
``scrapy.cfg``; HTTP basic auth from ``SCRAPYD_USERNAME`` / ``SCRAPYD_PASSWORD``, else from
the URL's ``user:password@``.
"""

from __future__ import annotations

import http.client
import json
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlencode

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError
from scrapy.utils.conf import get_config

from contentcrawl.jobs import JOBS, SCHEDULES, Job, jobs_for, jobs_named
from contentcrawl.redaction import basic_auth, redact_text, redact_url, split_userinfo

if TYPE_CHECKING:
    import argparse

DEFAULT_URL = "http://127.0.0.1:6800/"


class ScrapydError(Exception):
    """scrapyd could not be reached or refused a request."""


class Scrapyd:
    """The few scrapyd endpoints scheduling needs (``listjobs.json``, ``schedule.json``).

    Credentials in ``url`` are taken out of it and sent as basic auth unless ``username`` or
    ``password`` is given: urllib would take ``user:password@host`` for the host name (and
    quote a piece of a password holding a ``/`` in its "nonnumeric port" error).
    """

    def __init__(
        self,
        url: str,
        project: str,
        *,
        username: str = "",
        password: str = "",
        timeout: float = 30.0,
    ) -> None:
        bare_url, url_user, url_password = split_userinfo(url)
        if not (username or password):
            username, password = unquote(url_user), unquote(url_password or "")
        self.url = bare_url.rstrip("/") + "/"
        # Errors name the URL as given, password masked: which user was refused shows.
        self.shown_url = redact_url(url.rstrip("/") + "/")
        self.project = project
        self.timeout = timeout
        self._headers: dict[str, str] = {}
        if username or password:
            self._headers["Authorization"] = basic_auth(username, password)

    def _call(self, endpoint: str, form: list[tuple[str, str]] | None = None) -> dict[str, Any]:
        path = endpoint
        data = None
        if form is None:
            path = f"{path}?{urlencode({'project': self.project})}"
        else:
            data = urlencode(form).encode()
        request = urllib.request.Request(  # noqa: S310
            f"{self.url}{path}", data=data, headers=self._headers
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                answer = json.loads(response.read())
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise ScrapydError(f"{self.shown_url}{path}: {redact_text(str(reason))}") from None
        if answer.get("status") != "ok":
            raise ScrapydError(f"{endpoint}: {answer.get('message', answer)}")
        return answer

    def active_jobs(self) -> list[tuple[str, str]]:
        """``(spider, job id)`` of every pending or running job of this project."""
        answer = self._call("listjobs.json")
        return [
            (entry["spider"], entry["id"])
            for state in ("running", "pending")
            for entry in answer.get(state, [])
            if entry.get("project", self.project) == self.project
        ]

    def schedule(self, job: Job, job_id: str) -> str:
        """Queue ``job`` under ``job_id``; returns the id scrapyd gave it."""
        form = [("project", self.project), ("spider", job.spider), ("jobid", job_id)]
        form += [(name, value) for name, value in job.args.items()]
        form += [("setting", f"{name}={value}") for name, value in job.settings.items()]
        return self._call("schedule.json", form)["jobid"]


# ``<job name>-<stamp>``: the id this command gives a job (scrapyd keeps it).
JOB_ID = re.compile(r"(?P<name>.+)-\d{8}T\d{6}")


def holders(active: list[tuple[str, str]], known: set[str]) -> dict[str, str]:
    """What each active job stands for -> its id: the job name when this command queued it
    (``JOB_ID``), else its spider, since a job queued by hand may be any of its spider's."""
    held: dict[str, str] = {}
    for spider, job_id in active:
        match = JOB_ID.fullmatch(job_id)
        name = match["name"] if match and match["name"] in known else spider
        held.setdefault(name, job_id)
    return held


def schedule_jobs(scrapyd: Scrapyd, jobs: list[Job], *, dry_run: bool = False) -> Iterator[str]:
    """Queue the jobs not already pending or running; one line per job says what.

    A job is the same job when its name is (``tmdb_movies-changes`` twice), not when its
    spider is: ``tmdb_movies-failed`` is queued behind ``tmdb_movies-changes`` and runs
    after it (scrapyd runs one job at a time). A job queued by hand holds back every job
    of its spider.
    """
    held = holders(scrapyd.active_jobs(), {job.name for job in JOBS})
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    for job in jobs:
        holder = held.get(job.name) or held.get(job.spider)
        if holder is not None:
            yield f"skipped {job.name}: already queued as {holder}"
            continue
        job_id = f"{job.name}-{stamp}"
        if not dry_run:
            job_id = scrapyd.schedule(job, job_id)
        held[job.name] = job_id
        yield f"{'would schedule' if dry_run else 'scheduled'} {job.name} as {job_id}"


def deploy_target() -> tuple[str, str]:
    """The url and project of ``scrapy.cfg``'s ``[deploy]`` section, with defaults."""
    config = get_config()
    url = config.get("deploy", "url", fallback=DEFAULT_URL)
    return url, config.get("deploy", "project", fallback="contentcrawl")


class Command(ScrapyCommand):
    requires_project = True
    requires_crawler_process = False
    default_settings = {"LOG_ENABLED": False}  # noqa: RUF012 - Scrapy's own attribute shape

    def syntax(self) -> str:
        return "[options] daily|weekly|monthly"

    def short_desc(self) -> str:
        return "Queue a schedule's jobs on scrapyd, skipping jobs already queued"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--url", help="scrapyd URL (default: SCRAPYD_URL, scrapy.cfg)")
        parser.add_argument("--project", help="scrapyd project (default: scrapy.cfg)")
        parser.add_argument(
            "--job",
            dest="job_names",
            action="append",
            default=[],
            metavar="NAME",
            help="queue only this job, whatever its schedule (repeatable)",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="say what would be queued, queue nothing"
        )

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        assert self.settings is not None
        if opts.job_names:
            if args:
                raise UsageError("give a schedule or --job, not both")
            try:
                jobs = jobs_named(opts.job_names)
            except KeyError as error:
                raise UsageError(str(error.args[0])) from None
        elif len(args) == 1 and args[0] in SCHEDULES:
            jobs = jobs_for(args[0])
        else:
            raise UsageError(f"give one schedule among {', '.join(SCHEDULES)}")
        cfg_url, cfg_project = deploy_target()
        scrapyd = Scrapyd(
            opts.url or self.settings.get("SCRAPYD_URL") or cfg_url,
            opts.project or cfg_project,
            username=self.settings.get("SCRAPYD_USERNAME") or "",
            password=self.settings.get("SCRAPYD_PASSWORD") or "",
        )
        try:
            for line in schedule_jobs(scrapyd, jobs, dry_run=opts.dry_run):
                print(line)
        except ScrapydError as error:
            print(f"scrapyd: {error}", file=sys.stderr)
            self.exitcode = 1
