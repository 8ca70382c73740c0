"""No production module uses the development harness: what ships to Composer, Cloud Run and
Dataflow (plugins/quotestream, api/, dags/, beam_pipelines/) has no quotestream_dev there, so
a module that imports it, or names it for import_module or `python -m`, fails in production."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.unit

SHIPPED = ("plugins/quotestream", "api", "dags", "beam_pipelines")
DEV_MODULE = re.compile(r"quotestream_dev(\.\w+)*")


def dev_module_uses(source: str) -> Iterator[str]:
    """Every import of quotestream_dev, and every string that names one of its modules."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value]
        else:
            continue
        yield from (name for name in names if DEV_MODULE.fullmatch(name))


def shipped_modules() -> list[Path]:
    return sorted(
        path
        for folder in SHIPPED
        for path in (REPO / folder).rglob("*.py")
        if "__pycache__" not in path.parts
    )


def test_no_shipped_module_imports_the_development_harness() -> None:
    modules = shipped_modules()
    uses = [
        f"{path.relative_to(REPO)}: {name}"
        for path in modules
        for name in dev_module_uses(path.read_text())
    ]
    assert len(modules) > 50, modules
    assert uses == []


def test_each_way_of_using_the_harness_is_caught() -> None:
    """What the walk must find, so the test above can fail."""
    source = """
import quotestream_dev
import json, quotestream_dev.bench.api as bench
from quotestream_dev.demo import run
importlib.import_module("quotestream_dev.report")
subprocess.run([sys.executable, "-m", "quotestream_dev.commands"])
from quotestream.domain import market  # the core, not the harness
print("quotestream_dev is the harness")  # prose, not a module name
"""
    assert list(dev_module_uses(source)) == [
        "quotestream_dev",
        "quotestream_dev.bench.api",
        "quotestream_dev.demo",
        "quotestream_dev.report",
        "quotestream_dev.commands",
    ]
