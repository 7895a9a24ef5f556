"""The suite's one command: ``python -m spiders_tests.run [pytest options]``.

Every test but the timing ones runs in two pytest-xdist workers; then the tests marked
``timing`` (rates, pacing, stop latency: they measure wall-clock time, and with both cores
busy one of them failed in about one full run of two) run in one process. Both parts run
whatever the first one's result; the command fails if either fails, or if neither collects
a test.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

PARTS = (
    ("everything but the timing tests, in two workers", ["-n", "2", "-m", "not timing"]),
    ("the timing tests, in one process", ["-n", "0", "-m", "timing"]),
)


def run_part(options: list[str], extra: list[str]) -> int:
    """pytest's exit code for one part of the suite, run in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", *options, *extra], check=False
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


def main(extra: list[str]) -> int:
    codes = []
    for title, options in PARTS:
        print(f"== {title}", flush=True)
        codes.append(run_part(options, extra))
    return combined_exit_code(codes)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
