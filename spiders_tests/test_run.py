"""The suite's command (spiders_tests/run.py) fails when a part fails or no test ran."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spiders_tests.crawling import PROJECT
from spiders_tests.run import (
    NICENESS,
    PARTS,
    Part,
    combined_exit_code,
    start_part,
    with_bytecode_cache,
)

OK = pytest.ExitCode.OK
FAILED = pytest.ExitCode.TESTS_FAILED
NONE = pytest.ExitCode.NO_TESTS_COLLECTED


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ([OK, OK], OK),
        ([FAILED, OK], FAILED),
        ([OK, FAILED], FAILED),
        ([pytest.ExitCode.INTERRUPTED, FAILED], pytest.ExitCode.INTERRUPTED),
        ([OK, NONE], OK),
        ([NONE, OK], OK),
        ([NONE, NONE], NONE),
        ([NONE, FAILED], FAILED),
    ],
)
def test_the_command_fails_when_a_part_fails_or_no_part_collected_a_test(
    parts: list[int], expected: int
) -> None:
    assert combined_exit_code(parts) == expected


def test_every_test_runs_in_exactly_one_part() -> None:
    selections = [part.options[part.options.index("-m") + 1] for part in PARTS]
    assert sorted(selections) == ["not timing", "timing"]


def test_only_the_timing_tests_keep_the_commands_priority() -> None:
    assert {part.options[part.options.index("-m") + 1]: part.niceness for part in PARTS} == {
        "timing": 0,
        "not timing": NICENESS,
    }
    # Low enough a priority, and still room for the probe below to go 3 lower under it.
    assert 0 < NICENESS <= 16


def test_a_part_runs_at_its_priority(tmp_path: Path) -> None:
    # Under the suite's command this test runs at NICENESS already; 19 is the lowest priority.
    expected = min(19, os.nice(0) + 3)
    probe = tmp_path / "test_probe.py"
    probe.write_text(f"import os\n\ndef test_niceness():\n    assert os.nice(0) == {expected}\n")

    with (tmp_path / "output").open("w+b") as output:
        part = start_part(
            Part("probe", ["-p", "no:cacheprovider"], 3), [str(probe)], os.environ, output
        )
        code = part.wait(timeout=60)
        output.seek(0)
        assert code == OK, output.read().decode()[-2000:]


def test_the_suites_processes_write_their_bytecode_into_the_cache_only(tmp_path: Path) -> None:
    cache = tmp_path / "bytecode"
    env = with_bytecode_cache({"PYTHONDONTWRITEBYTECODE": "1", "PATH": ""}, str(cache))
    assert "PYTHONDONTWRITEBYTECODE" not in env

    subprocess.run(
        [sys.executable, "-c", "import contentcrawl.verdict"],
        cwd=PROJECT,
        env=env,
        check=True,
        timeout=60,
    )

    # Written under the cache, mirroring the code's path; the checkout is left alone.
    assert list(cache.rglob("contentcrawl/verdict.*.pyc"))
