"""The package's shape, checked so it stays true as code lands: small modules, small classes,
and a curated public API (what ``import batch_override`` offers is a decision, not an accident)."""

from __future__ import annotations

import ast
from pathlib import Path

import batch_override

PACKAGE = Path(batch_override.__file__).parent
MAX_MODULE_LINES = 500
MAX_CLASS_LINES = 150


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_module_of_the_package_is_over_500_lines() -> None:
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text(encoding="utf-8").splitlines()) for p in _modules()}
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_no_class_of_the_package_is_over_150_lines() -> None:
    big: dict[str, int] = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_CLASS_LINES:
                    big[f"{path.relative_to(PACKAGE)}:{node.name}"] = lines
    assert big == {}


def test_the_package_exports_exactly_its_curated_api() -> None:
    assert sorted(batch_override.__all__) == [
        "ApiKey", "BatchOverrideError", "ExitCode", "Outcome", "Rate", "RunConfig", "Summary",
        "__version__", "load_api_key", "read_ledger", "run_job",
    ]  # fmt: skip
    for name in batch_override.__all__:
        assert getattr(batch_override, name) is not None
