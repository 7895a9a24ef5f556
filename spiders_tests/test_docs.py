"""The docs stay true to the code: settings, stat keys, spiders and links.

Settings and stat keys are read from the source with ``ast`` (importing
``contentcrawl.settings`` would read the environment); spiders come from ``scrapy list``.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from contentcrawl.items import ITEM_CLASSES
from contentcrawl.records import PROVENANCE_FIELDS
from contentcrawl.renamed_settings import RENAMED_SETTINGS
from spiders_tests.crawling import PROJECT, child_env, run_scrapy

DOCS = PROJECT / "docs"
SETTINGS_PY = PROJECT / "contentcrawl" / "settings.py"
ENV_READERS = {"_env", "_env_int", "_env_float", "_env_bool"}
STATS_CALLS = {"inc_value", "set_value", "max_value", "min_value"}
# docs/settings.md lists the settings read from the environment above this heading, and
# the ones only settings.py (or `-s`) sets below it.
FIXED_HEADING = "## Set only in settings.py"
# docs/stats.md lists Scrapy's own keys below this heading: no contentcrawl code sets them all.
SCRAPY_STATS_HEADING = "## Scrapy's own stats"
BACKTICKED = re.compile(r"`([^`]+)`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def markdown_files() -> list[Path]:
    return [PROJECT / "README.md", *sorted(DOCS.glob("*.md"))]


def table_rows(text: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of every table body row of a Markdown text."""
    for number, line in enumerate(text.splitlines(), 1):
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or set("".join(cells)) <= {"-", ":", " "}:
            continue
        yield number, cells


def documented_settings() -> dict[str, tuple[int, str]]:
    """Setting name -> (line, default cell) of each row of docs/settings.md's tables."""
    documented: dict[str, tuple[int, str]] = {}
    for number, cells in table_rows((DOCS / "settings.md").read_text()):
        names = BACKTICKED.findall(cells[0])
        if len(names) == 1 and re.fullmatch(r"[A-Z][A-Z0-9_]*", names[0]):
            documented[names[0]] = (number, cells[1])
    return documented


def assigned_settings() -> dict[str, ast.expr]:
    """Every UPPERCASE name contentcrawl/settings.py assigns, with the expression assigned."""
    assigned: dict[str, ast.expr] = {}
    for node in ast.parse(SETTINGS_PY.read_text()).body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Name) and target.id.isupper():
                assigned[target.id] = value
    return assigned


def env_default(value: ast.expr, name: str) -> tuple[str, object] | None:
    """(reader, default) when ``value`` is ``_env*("NAME", default)``, else None."""
    if not (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name)
        and value.func.id in ENV_READERS
        and value.args
        and isinstance(value.args[0], ast.Constant)
        and value.args[0].value == name
    ):
        return None
    default = ast.literal_eval(value.args[1]) if len(value.args) > 1 else ""
    return value.func.id, default


def reads_environment(value: ast.expr) -> bool:
    return any(
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ENV_READERS
        for node in ast.walk(value)
    )


def same_default(cell: str, default: object) -> bool:
    """Whether a default cell of docs/settings.md states ``default``."""
    text = cell.strip("`")
    if isinstance(default, bool):
        return text == str(default).lower()
    if isinstance(default, int | float):
        try:
            return float(text) == float(default)
        except ValueError:
            return False
    if cell == "empty":
        return default == ""
    return text == default


def test_every_setting_in_settings_py_is_documented() -> None:
    missing = sorted(set(assigned_settings()) - set(documented_settings()))
    assert not missing, f"settings.py assigns these, docs/settings.md has no row: {missing}"


def test_every_documented_setting_exists() -> None:
    renamed = set(RENAMED_SETTINGS)
    unknown = sorted(set(documented_settings()) - set(assigned_settings()) - renamed)
    assert not unknown, f"docs/settings.md documents settings settings.py lacks: {unknown}"


def test_every_renamed_setting_is_documented_with_its_new_name() -> None:
    text = (DOCS / "settings.md").read_text(encoding="utf-8")
    for old, new in RENAMED_SETTINGS.items():
        assert f"| `{old}` | `{new}` |" in text, old


def test_documented_defaults_are_the_code_defaults() -> None:
    documented = documented_settings()
    wrong = []
    for name, value in assigned_settings().items():
        if name not in documented:
            continue
        from_env = env_default(value, name)
        if from_env is not None:
            default = from_env[1]
        elif isinstance(value, ast.Constant) and isinstance(value.value, bool | int | float | str):
            default = value.value
        else:
            continue
        line, cell = documented[name]
        if not same_default(cell, default):
            wrong.append(f"docs/settings.md:{line} {name}: {cell}, settings.py: {default!r}")
    assert not wrong, "\n".join(wrong)


def test_settings_read_from_the_environment_are_documented_as_such() -> None:
    text = (DOCS / "settings.md").read_text()
    assert FIXED_HEADING in text.splitlines(), f"docs/settings.md lacks {FIXED_HEADING!r}"
    fixed_from = text.splitlines().index(FIXED_HEADING) + 1
    documented = documented_settings()
    misplaced = [
        name
        for name, value in assigned_settings().items()
        if name in documented and reads_environment(value) != (documented[name][0] < fixed_from)
    ]
    assert not misplaced, (
        f"read from the environment above {FIXED_HEADING!r}, the others below it: {misplaced}"
    )


def test_every_spider_is_documented_in_sources(tmp_path: Path) -> None:
    listed = run_scrapy("list", cwd=tmp_path, env=child_env(tmp_path / "store.sqlite3"))
    assert listed.returncode == 0, listed.stderr
    spiders = listed.stdout.split()
    assert spiders, "scrapy list printed no spider"
    sources = set(BACKTICKED.findall((DOCS / "sources.md").read_text()))
    missing = [name for name in spiders if name not in sources]
    assert not missing, f"docs/sources.md does not name these spiders: {missing}"


def test_field_lists_are_the_items_fields() -> None:
    collections = {f"`{item_class.collection}`" for item_class in ITEM_CLASSES}
    # Rows of the "collection | key field | fields" table: the first cell names a collection.
    listed = {
        cells[0].strip("`"): (cells[1], set(BACKTICKED.findall(cells[2])))
        for _, cells in table_rows((DOCS / "sources.md").read_text())
        if cells[0] in collections and len(cells) == 3
    }
    wrong = []
    for item_class in ITEM_CLASSES:
        stored = {
            item_field.name
            for item_field in dataclasses.fields(item_class)
            if item_field.name not in (*PROVENANCE_FIELDS, item_class.key_field)
        }
        documented = listed.get(item_class.collection)
        if documented != (f"`{item_class.key_field}`", stored):
            wrong.append(f"{item_class.collection}: documented {documented}, items.py {stored}")
    assert not wrong, "docs/sources.md field lists:\n" + "\n".join(wrong)


def anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    found = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower().replace("`", "")
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


@pytest.mark.parametrize("page", markdown_files(), ids=lambda page: page.name)
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.name}")
    assert not broken, f"{page.name}: {broken}"


def stat_pattern(node: ast.expr, attributes: dict[str, ast.expr]) -> str | None:
    """A regular expression of the keys a stat key expression makes (a string, an f-string
    or ``a if c else b``), or None for any other expression. ``{self.x}`` is inlined when
    its module assigns ``self.x`` one string once; any other ``{...}`` matches any text."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.escape(node.value)
    if isinstance(node, ast.IfExp):
        body, orelse = stat_pattern(node.body, attributes), stat_pattern(node.orelse, attributes)
        return f"(?:{body}|{orelse})" if body and orelse else None
    if not isinstance(node, ast.JoinedStr):
        return None
    parts = []
    for value in node.values:
        if isinstance(value, ast.Constant):
            parts.append(re.escape(str(value.value)))
            continue
        assert isinstance(value, ast.FormattedValue)
        inner = value.value
        known = (
            attributes.get(inner.attr)
            if isinstance(inner, ast.Attribute) and isinstance(inner.value, ast.Name)
            else None
        )
        parts.append((known is not None and stat_pattern(known, {})) or ".+")
    return "".join(parts)


def code_stat_keys() -> dict[str, str]:
    """Pattern -> where, of every stat key contentcrawl's code sets or increments."""
    keys: dict[str, str] = {}
    for path in sorted((PROJECT / "contentcrawl").rglob("*.py")):
        tree = ast.parse(path.read_text())
        assigned: dict[str, list[ast.expr]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                        assigned.setdefault(target.attr, []).append(node.value)
        attributes = {name: values[0] for name, values in assigned.items() if len(values) == 1}
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in STATS_CALLS
                and node.args
            ):
                pattern = stat_pattern(node.args[0], attributes)
                if pattern is not None:
                    keys[pattern] = f"{path.relative_to(PROJECT)}:{node.lineno}"
    return keys


def documented_stat_keys() -> dict[str, bool]:
    """Key -> whether it is contentcrawl's own (above the Scrapy heading) in docs/stats.md."""
    text = (DOCS / "stats.md").read_text()
    lines = text.splitlines()
    assert SCRAPY_STATS_HEADING in lines, f"docs/stats.md lacks {SCRAPY_STATS_HEADING!r}"
    scrapy_from = lines.index(SCRAPY_STATS_HEADING) + 1
    return {
        key: number < scrapy_from
        for number, cells in table_rows(text)
        for key in BACKTICKED.findall(cells[0])
    }


def documents(key: str, pattern: str) -> bool:
    """Whether documented ``key`` covers the code's key ``pattern``: the code's pattern takes
    the key, or the key's ``<placeholder>``s take the code's literal key."""
    if re.fullmatch(pattern, key):
        return True
    key_pattern = "".join(
        "[^/]+" if part.startswith("<") else re.escape(part) for part in re.split(r"(<[^>]+>)", key)
    )
    return re.fullmatch(key_pattern, pattern.replace("\\", "")) is not None


def test_every_stat_key_the_code_sets_is_documented() -> None:
    documented = documented_stat_keys()
    undocumented = [
        f"{where}: {pattern}"
        for pattern, where in code_stat_keys().items()
        if not any(documents(key, pattern) for key in documented)
    ]
    assert not undocumented, "stat keys missing from docs/stats.md:\n" + "\n".join(undocumented)


def test_every_documented_stat_key_is_set_by_the_code() -> None:
    patterns = list(code_stat_keys())
    stale = [
        key
        for key, own in documented_stat_keys().items()
        if own and not any(re.fullmatch(pattern, key) for pattern in patterns)
    ]
    assert not stale, f"docs/stats.md documents keys no code sets: {stale}"
