"""Settings defaults live once: in ``contentcrawl/settings.py``, never again at a getter call."""

from __future__ import annotations

import ast

from spiders_tests.crawling import PROJECT, SETTINGS_FILE

PACKAGE = PROJECT / "contentcrawl"
GETTERS = frozenset({"get", "getint", "getfloat", "getbool", "getlist", "getdict", "getdictorlist"})


def defined_settings() -> frozenset[str]:
    """The names ``contentcrawl/settings.py`` assigns at module level."""
    tree = ast.parse(SETTINGS_FILE.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names.update(
            target.id for target in targets if isinstance(target, ast.Name) and target.id.isupper()
        )
    return frozenset(names)


def repeated_defaults(source: str, settings: frozenset[str]) -> list[tuple[int, str]]:
    """(line, setting) of each ``<x>.get*("SETTING", default)`` in ``source`` for a setting
    of ``settings`` (positional or ``default=``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in GETTERS
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value in settings
        ):
            continue
        if len(node.args) > 1 or any(keyword.arg == "default" for keyword in node.keywords):
            found.append((node.lineno, node.args[0].value))
    return sorted(found)


def project_repeats() -> dict[tuple[str, str], list[int]]:
    """(file, setting) -> lines, for every repeated default under ``contentcrawl/``."""
    settings = defined_settings()
    repeats: dict[tuple[str, str], list[int]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == SETTINGS_FILE:
            continue
        relative = path.relative_to(PROJECT).as_posix()
        for line, name in repeated_defaults(path.read_text(encoding="utf-8"), settings):
            repeats.setdefault((relative, name), []).append(line)
    return repeats


def test_no_getter_repeats_a_default_of_settings_py() -> None:
    repeats = {
        f"{path}:{line} {name}"
        for (path, name), lines in project_repeats().items()
        for line in lines
    }
    assert not repeats, f"defaults belong in contentcrawl/settings.py only: {sorted(repeats)}"


def test_a_repeated_default_is_found_positional_or_by_keyword() -> None:
    source = (
        "a = settings.getint('STORE_BATCH_SIZE', 500)\n"
        "b = crawler.settings.getfloat('RETRY_BACKOFF_MAX', default=300.0)\n"
        "c = settings.getint('STORE_BATCH_SIZE')\n"
        "d = settings.get('NOT_A_PROJECT_SETTING', 1)\n"
        "e = payload.get('id', 0)\n"
    )

    found = repeated_defaults(source, defined_settings())

    assert found == [(1, "STORE_BATCH_SIZE"), (2, "RETRY_BACKOFF_MAX")]


def test_settings_py_names_are_read() -> None:
    names = defined_settings()

    assert {"STORE_BATCH_SIZE", "DUMP_MAX_PENDING_ITEMS", "REDIS_ACCOUNT_LIMITS"} <= names
