"""The tests' own layout: folders mirror the package's stages, and no test file imports another
(shared helpers live in ``support`` modules and ``conftest.py``)."""

from __future__ import annotations

import ast
from pathlib import Path

import batch_override

TESTS = Path(__file__).parent
PACKAGE = Path(batch_override.__file__).parent
#: Folders that are not a stage's: data, and the Laravel conformance suite (not a module's test).
NOT_STAGES = {"__pycache__", "snapshots", "data", "laravel"}


def test_every_test_folder_is_a_stage_of_the_package() -> None:
    stages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    folders = {p.name for p in TESTS.rglob("*") if p.is_dir() and p.name not in NOT_STAGES}
    assert folders <= stages, f"test folders without a package stage: {sorted(folders - stages)}"


def _imported(node: ast.AST) -> list[str]:
    """The modules an import names, relative ones with their leading dots."""
    if isinstance(node, ast.ImportFrom):
        return ["." * node.level + (node.module or "")]
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    return []


def test_no_test_file_imports_another() -> None:
    offenders = [
        f"{path.relative_to(TESTS)}: {name}"
        for path in TESTS.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        for name in _imported(node)
        if (name.startswith(("tests.", ".")) and name.rsplit(".", 1)[-1].startswith("test_"))
    ]
    assert offenders == []
