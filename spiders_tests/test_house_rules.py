"""Rules of the code that no linter checks (issue #16): Scrapy's private attributes are used
in one adapter module only, and no file grows past ~500 lines."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import scrapy

from spiders_tests.crawling import PROJECT

ADAPTER = PROJECT / "contentcrawl" / "scrapy_internals.py"
OUR_CODE = ("contentcrawl", "spiders_tests", "bench")
MAX_LINES = 500


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


@cache
def scrapy_private_names() -> frozenset[str]:
    """Every private name Scrapy defines: its ``_methods`` and the ``_attributes`` it sets."""
    names = set()
    for path in Path(scrapy.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and is_private(node.name):
                names.add(node.name)
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and is_private(node.attr)
            ):
                names.add(node.attr)
    return frozenset(names)


def scrapy_private_uses(path: Path) -> list[str]:
    """``line: expression`` of each access to one of Scrapy's private names on an object
    other than ``self`` or ``cls`` (a class's own private attributes are its business)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in scrapy_private_names()
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        ):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def python_files() -> list[Path]:
    return sorted(path for folder in OUR_CODE for path in (PROJECT / folder).rglob("*.py"))


def test_the_adapter_module_is_found_using_scrapys_private_attributes() -> None:
    uses = "\n".join(scrapy_private_uses(ADAPTER))
    assert "engine._slot" in uses
    assert "engine.scraper._check_if_closing" in uses


def test_no_private_scrapy_attribute_outside_the_adapter_module() -> None:
    offending = {
        str(path.relative_to(PROJECT)): uses
        for path in python_files()
        if path != ADAPTER and (uses := scrapy_private_uses(path))
    }
    assert offending == {}


def test_no_file_is_over_500_lines() -> None:
    lengths = {
        str(path.relative_to(PROJECT)): len(path.read_text(encoding="utf-8").splitlines())
        for path in python_files()
    }
    assert {path: lines for path, lines in lengths.items() if lines > MAX_LINES} == {}
