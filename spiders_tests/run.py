"""The suite's one command: ``python -m spiders_tests.run [pytest options]``.

Every test but the timing ones runs in ``WORKERS`` pytest-xdist workers: many of them wait
on child processes, servers and stops, so more workers than cores keep both cores busy
(85 % with 4 workers, about 60 % with 2). Then the tests marked ``timing`` (rates, pacing,
stop latency: they measure wall-clock time) run in two workers of their own: they use about
a quarter of a core each, while with the other tests' load one of them failed in about one
full run of two (and with three timing workers, in two runs of three). Both parts run
whatever the first one's result; the command fails if either fails, or if neither collects
a test.

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

import pytest

# Workers for the tests that are not timing ones (this machine: 2 cores).
WORKERS = 4
PARTS = (
    (
        f"everything but the timing tests, in {WORKERS} workers",
        ["-n", str(WORKERS), "--dist", "worksteal", "-m", "not timing"],
    ),
    ("the timing tests, in two workers", ["-n", "2", "--dist", "worksteal", "-m", "timing"]),
)


def run_part(options: list[str], extra: list[str], env: Mapping[str, str]) -> int:
    """pytest's exit code for one part of the suite, run in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", *options, *extra], env=dict(env), check=False
    ).returncode


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
        codes = []
        for title, options in PARTS:
            print(f"== {title}", flush=True)
            codes.append(run_part(options, extra, env))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return combined_exit_code(codes)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
