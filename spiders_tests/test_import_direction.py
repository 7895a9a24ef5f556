"""Imports go one way: the store knows nothing of the read API; extensions, pipelines and the
store know nothing of sources and spiders; inside the read query and source packages the parts
import their base or mappers, never the module that picks or runs them; no test file or
benchmark imports a test file (read with ``ast``: imports inside functions and
``TYPE_CHECKING`` blocks count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from spiders_tests.crawling import PROJECT

PACKAGE = PROJECT / "contentcrawl"


def imported_modules(path: Path, package: str = "contentcrawl") -> set[str]:
    """Every module of ``package`` a file imports, wherever in the file the import is."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith(package)}


def imports_of(module: str) -> set[str]:
    return imported_modules(PACKAGE.parent / (module.replace(".", "/") + ".py"))


def test_the_store_does_not_import_the_read_api() -> None:
    offending = {
        str(path.relative_to(PROJECT)): sorted(
            name for name in imported_modules(path) if name.startswith("contentcrawl.api")
        )
        for path in (PACKAGE / "store").rglob("*.py")
    }
    assert not {path: names for path, names in offending.items() if names}


@pytest.mark.parametrize("room", ["extensions", "pipelines", "store"])
def test_components_do_not_import_sources_or_spiders(room: str) -> None:
    offending = {
        str(path.relative_to(PROJECT)): sorted(
            name
            for name in imported_modules(path)
            if name.startswith(("contentcrawl.sources", "contentcrawl.spiders"))
        )
        for path in (PACKAGE / room).rglob("*.py")
    }
    assert not {path: names for path, names in offending.items() if names}


@pytest.mark.parametrize("room", ["sources", "spiders", "pipelines"])
def test_no_source_spider_or_pipeline_opens_a_store(room: str) -> None:
    # The crawl's one store is the CrawlStore extension's (crawl_store(crawler)).
    offending = {
        str(path.relative_to(PROJECT))
        for path in (PACKAGE / room).rglob("*.py")
        if "contentcrawl.store.build_store" in imported_modules(path)
    }
    assert offending == set()


@pytest.mark.parametrize(
    "module", ["contentcrawl.api.queries.sqlite", "contentcrawl.api.queries.mongo"]
)
def test_read_query_implementations_import_only_the_base_of_their_package(module: str) -> None:
    assert {name for name in imports_of(module) if name.startswith("contentcrawl.api.queries")} <= {
        "contentcrawl.api.queries.base"
    } | {f"contentcrawl.api.queries.base.{name}" for name in ("Condition", "Json", "ReadQueries")}


def test_the_read_query_base_imports_no_implementation() -> None:
    assert not {name for name in imports_of("contentcrawl.api.queries.base") if ".queries." in name}


@pytest.mark.parametrize(
    "module",
    [
        "contentcrawl.sources.igdb.mappers",
        "contentcrawl.sources.igdb.queries",
        "contentcrawl.sources.musicbrainz.mappers",
        "contentcrawl.sources.musicbrainz.queries",
        "contentcrawl.sources.musicbrainz.dump",
        "contentcrawl.sources.musicbrainz.lines",
    ],
)
def test_source_parts_do_not_import_their_spider_or_package(module: str) -> None:
    package = module.rpartition(".")[0]
    assert not {
        name
        for name in imports_of(module)
        if name == package or name.startswith((f"{package}.spider", f"{package}.__init__"))
    }


def test_no_test_file_or_benchmark_imports_a_test_file() -> None:
    # What two test files share lives in a helper module (crawling.py, conftest.py, …): a test
    # file imported by another would tie the two together and bring its own fixtures along.
    offending = {
        str(path.relative_to(PROJECT)): sorted(
            name
            for name in imported_modules(path, "spiders_tests")
            if name.startswith("spiders_tests.test_")
        )
        for folder in ("spiders_tests", "bench")
        for path in (PROJECT / folder).rglob("*.py")
    }
    assert not {path: names for path, names in offending.items() if names}
