"""The suite's one command: ``python -m spiders_tests.run [pytest options]``.

The suite runs in two pytest-xdist runs side by side. The tests marked ``timing`` (rates,
pacing, stop latency: they measure wall-clock time) run in two workers of their own at the
command's CPU priority. Every other test runs in ``WORKERS`` workers at ``NICENESS``: many
of them wait on child processes, servers and stops, so more workers than cores keep both
cores busy (85 % with 4 workers, about 60 % with 2). The timing tests use about a quarter
of a core each: at the same priority as that load, one of them failed in about one full run
of two, so they used to run after it, alone, and the suite took both parts' time (about
160 s). At a lower priority the load gives the cores up whenever a timing test wakes, and
the suite takes about as long as its larger part. Each part runs whatever the other's
result; the command fails if either fails, or if neither collects a test. The other part's
output streams; the timing part's is printed when both have ended.

Compiled bytecode (Python's, and pytest's rewritten test modules) is written to a temp dir
shared by every process of the run, this one's children's children included, and removed
at the end: otherwise, with ``PYTHONDONTWRITEBYTECODE`` set, each of the ~90 ``scrapy``
processes the suite starts compiles the project again, and each worker its test modules.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO

import pytest

# Workers for the tests that are not timing ones (this machine: 2 cores).
WORKERS = 4
# The CPU priority (nice value) of those tests, their servers and child processes (at 10, a
# timing test still failed in one run of nine; 19 is the lowest).
NICENESS = 15


@dataclass(frozen=True)
class Part:
    """One pytest-xdist run of the suite."""

    title: str
    options: list[str]
    niceness: int


TIMING = Part(
    "the timing tests, in two workers", ["-n", "2", "--dist", "worksteal", "-m", "timing"], 0
)
OTHERS = Part(
    f"everything but the timing tests, in {WORKERS} workers at nice {NICENESS}",
    ["-n", str(WORKERS), "--dist", "worksteal", "-m", "not timing"],
    NICENESS,
)
PARTS = (OTHERS, TIMING)


def start_part(
    part: Part, extra: list[str], env: Mapping[str, str], output: IO[bytes] | None
) -> subprocess.Popen[bytes]:
    """The pytest process of ``part``, started at its priority, its output to ``output``
    (``None``: this command's)."""
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", *part.options, *extra],
        env=dict(env),
        stdout=output,
        stderr=subprocess.STDOUT if output else None,
        # This command runs no thread, so the child may run Python code before its exec.
        preexec_fn=(lambda: os.nice(part.niceness)) if part.niceness else None,
    )


def exit_codes(processes: list[subprocess.Popen[bytes]]) -> list[int]:
    """Each process's exit code, once all have ended. A Ctrl-C reaches them too: each part
    ends its run and reports, and this command waits for that."""
    while True:
        try:
            return [process.wait() for process in processes]
        except KeyboardInterrupt:
            continue


def combined_exit_code(codes: list[int]) -> int:
    """The first failing part's code; no test collected counts as a failure only when no
    part collected any (options such as ``-k`` may leave one part empty)."""
    collected_none = pytest.ExitCode.NO_TESTS_COLLECTED
    failures = [code for code in codes if code not in (pytest.ExitCode.OK, collected_none)]
    if failures:
        return failures[0]
    if all(code == collected_none for code in codes):
        return collected_none
    return pytest.ExitCode.OK


def with_bytecode_cache(environ: Mapping[str, str], cache: str) -> dict[str, str]:
    """``environ`` with bytecode written and read under ``cache``, never beside the code."""
    env = {**environ, "PYTHONPYCACHEPREFIX": cache}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def main(extra: list[str]) -> int:
    cache = tempfile.mkdtemp(prefix="contentcrawl-bytecode-")
    try:
        env = with_bytecode_cache(os.environ, cache)
        with tempfile.TemporaryFile() as timing_output:
            # The timing part first: its longest test starts at once.
            timing = start_part(TIMING, extra, env, timing_output)
            print(f"== {OTHERS.title}", flush=True)
            others = start_part(OTHERS, extra, env, None)
            codes = exit_codes([others, timing])
            timing_output.seek(0)
            print(f"== {TIMING.title}", flush=True)
            sys.stdout.buffer.write(timing_output.read())
            sys.stdout.flush()
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return combined_exit_code(codes)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
