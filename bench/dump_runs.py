"""What the dump import benches share: a ``scrapy crawl`` of a dump in a child process, timed
from its own stats, and how its figures are printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Issue #17's targets.
WORKERS_TARGET = 1.7
FORCE_TARGET = 0.15
UNCHANGED_LIMIT_S = 2.0
NEXT_MONTH_TARGET = 0.25
# The share of a next-month dump's lines at a new revision.
NEXT_MONTH_CHANGED = 0.05


@dataclass
class Run:
    records: int
    seconds: float
    peak_rss_mb: float
    # CPU of the crawl's own process (the work thread with DUMP_WORKERS=0; not the workers).
    cpu_seconds: float = 0.0
    # CPU the store's server spent during the run, when its process is known.
    server_cpu_seconds: float | None = None

    @property
    def rate(self) -> float:
        return self.records / self.seconds


def crawl(
    spider: str,
    collection: str,
    dump: Path,
    env: dict[str, str],
    workdir: Path,
    *arguments: str,
    server: int | None = None,
) -> Run:
    """``scrapy crawl <spider> -a dump=<dump>`` in a child process: the records it stored or
    skipped by revision, its time, peak RSS and CPU (of the crawl's own process: the workers
    are its children, counted apart), and the CPU of the ``server`` process during the run."""
    log = workdir / "crawl.log"
    command = [*scrapy_command(), "crawl", spider, "-a", f"dump={dump}"]
    for argument in arguments:
        command += ["-a", argument]
    server_before = process_cpu_seconds(server) if server else 0.0
    with log.open("w") as out:
        child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
        _, status, usage = os.wait4(child.pid, 0)
    server_cpu = process_cpu_seconds(server) - server_before if server else None
    text = log.read_text()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"crawl failed:\n{text[-3000:]}")
    seconds = float(re.search(r"'elapsed_time_seconds': ([\d.]+)", text)[1])
    counted = rf"'store/{collection}/(?:inserted|updated|unchanged)': (\d+)"
    counted += r"|'\w+/import/unchanged_revision': (\d+)"
    stored = sum(int(first or second) for first, second in re.findall(counted, text))
    cpu = usage.ru_utime + usage.ru_stime
    return Run(stored, seconds, usage.ru_maxrss / 1024, cpu, server_cpu)


def scrapy_command() -> list[str]:
    """The ``scrapy`` console script next to this interpreter, as the README runs it;
    ``python -m scrapy`` where there is none."""
    script = Path(sys.executable).with_name("scrapy")
    return [str(script)] if script.exists() else [sys.executable, "-m", "scrapy"]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pid(workdir: Path) -> int | None:
    """The nx-27017 that ``running_mongo`` started in ``workdir``, if it did (its pid file)."""
    pid_file = workdir / "nx.pid"
    return int(pid_file.read_text()) if pid_file.exists() else None


def cpu_shares(run: Run) -> str:
    server = run.server_cpu_seconds or 0.0
    return (
        f"crawl CPU {run.cpu_seconds:.1f} s, server CPU {server:.1f} s "
        f"({server / run.seconds:.0%} of the {run.seconds:.1f} s elapsed)"
    )


def store_of(env: dict[str, str], workdir: Path, name: str) -> dict[str, str]:
    """A fresh store for one series of runs: a SQLite file, or a MongoDB database."""
    if env.get("MONGO_URI"):
        return {"MONGO_DATABASE": f"bench_{name}"}
    return {"SQLITE_PATH": str(workdir / f"{name}.sqlite3")}


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def describe(run: Run) -> str:
    return (
        f"{run.rate:>9,.0f} records/s  ({run.records:,} records in {run.seconds:.1f} s, "
        f"peak RSS {run.peak_rss_mb:.0f} MB)"
    )


def crawl_env(**settings: str) -> dict[str, str]:
    return {
        **os.environ,
        "MONGO_URI": "",
        "LOG_LEVEL": "INFO",
        "DUMP_PROGRESS_INTERVAL": "30",
        **settings,
    }


@dataclass
class Imports:
    """A dump's first import with one process and with 2 workers, then its re-import with
    ``-a force=1`` and without, the last three into the 2 workers' store (``two_env``)."""

    one: Run
    two: Run
    forced: Run
    unchanged_seconds: float
    two_env: dict[str, str]


def import_series(
    crawl: Callable[..., Run],
    label: str,
    dump: Path,
    env: dict[str, str],
    workdir: Path,
    **crawl_options: Any,
) -> Imports:
    """Run the imports of ``Imports`` with ``crawl(dump, env, workdir, *arguments,
    **crawl_options)`` and print each against its target."""
    one_env = {**env, **store_of(env, workdir, "one"), "DUMP_WORKERS": "0"}
    one = crawl(dump, one_env, workdir, **crawl_options)
    two_env = {**env, **store_of(env, workdir, "two"), "DUMP_WORKERS": "2"}
    two = crawl(dump, two_env, workdir, **crawl_options)
    print(f"{label} first import, 1 process  {describe(one)}")
    print(f"{label} first import, 2 workers  {describe(two)}")
    speedup = one.seconds / two.seconds
    print(
        f"{label} 2 workers / 1 process: {speedup:.2f}x  target >= {WORKERS_TARGET}  "
        f"{verdict(speedup >= WORKERS_TARGET)}; per-core scaling {speedup / 2:.2f}"
    )
    forced = crawl(dump, two_env, workdir, "force=1", **crawl_options)
    share = forced.seconds / two.seconds
    print(
        f"{label} re-import -a force=1: {forced.seconds:.1f} s, {share:.3f} of the first  "
        f"target <= {FORCE_TARGET}  {verdict(share <= FORCE_TARGET)}"
    )
    unchanged = crawl(dump, two_env, workdir).seconds
    print(
        f"{label} unchanged dump, no force: {unchanged:.2f} s  "
        f"limit <= {UNCHANGED_LIMIT_S} s  {verdict(unchanged <= UNCHANGED_LIMIT_S)}"
    )
    return Imports(one, two, forced, unchanged, two_env)
