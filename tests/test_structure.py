"""The package's shape, checked so it stays true as code lands: imports that run one way through the
pipeline's stages, small modules, small classes, and a curated public API (what ``import
batch_override`` offers is a decision, not an accident)."""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable
from pathlib import Path

import batch_override

PACKAGE = Path(batch_override.__file__).parent
MAX_MODULE_LINES = 500

#: The stages in the order imports may run: a module imports from its own stage and earlier ones only.
#: "" is the top level's shared vocabulary; its ``__init__`` and ``__main__`` are the public faces and
#: may reach any stage (lazily, so that the command line stays free of pandas).
LAYERS = ("", "input", "ledger", "pacing", "sending", "job", "report", "cli")
FACES = {"__init__", "__main__"}
MAX_CLASS_LINES = 150


def _modules(package: Path = PACKAGE) -> list[Path]:
    return sorted(package.rglob("*.py"))


def _stage(module: str) -> str:
    """``"pacing"`` for ``batch_override.pacing.window``, ``""`` for ``batch_override.errors``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in (*LAYERS, "emulator") else ""


def _imports(path: Path, root: Path) -> list[tuple[int, str]]:
    """Every ``batch_override`` module a file imports (relative imports resolved), with its line."""
    rel = path.relative_to(root).with_suffix("")
    here = list(rel.parts) if rel.name == "__init__" else list(rel.parts[:-1])
    if rel.name == "__init__":
        here = here[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target == "batch_override" or (node.level and not node.module):
                found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, target))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, name) for line, name in found if name.split(".")[0] == "batch_override"]


def _layer_may_import(rank: int, target: str) -> bool:
    """Whether a module of the layer at ``rank`` may import ``target`` (only ``cli/`` the emulator)."""
    return (_stage(target) in LAYERS and LAYERS.index(_stage(target)) <= rank) or (
        _stage(target) == "emulator" and rank == LAYERS.index("cli")
    )


def wrong_way_imports(package: Path = PACKAGE) -> list[str]:
    """``file:line imports module`` for every import that runs against the stages' order.

    The emulator imports nothing of the job, and only the command line's ``emulator`` command
    (``cli/``) imports the emulator: the job never does.
    """
    wrong: list[str] = []
    for path in _modules(package):
        rel = path.relative_to(package.parent).with_suffix("")
        module = ".".join(rel.parts)
        allowed: Callable[[str], bool]
        if rel.parts[1] == "emulator":
            allowed = lambda target: _stage(target) == "emulator" or target == "batch_override.emulator"  # noqa: E731
        elif len(rel.parts) == 2 and rel.name in FACES:
            continue
        else:
            allowed = functools.partial(_layer_may_import, LAYERS.index(_stage(module)))
        for line, target in _imports(path, package.parent):
            if not allowed(target):
                wrong.append(f"{path.relative_to(package.parent)}:{line} imports {target}")
    return wrong


def test_imports_run_one_way_through_the_stages() -> None:
    assert wrong_way_imports() == []


def test_a_wrong_way_import_is_caught(tmp_path: Path) -> None:
    copy = tmp_path / "batch_override"
    for path in _modules():
        target = copy / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    window = copy / "pacing" / "window.py"
    window.write_text(window.read_text(encoding="utf-8") + "\nfrom ..job import runner\n", encoding="utf-8")
    (copy / "emulator" / "stray.py").write_text("from ..outcome import Outcome\n", encoding="utf-8")
    wrong = wrong_way_imports(copy)
    lines = len(window.read_text(encoding="utf-8").splitlines())
    assert wrong == [
        "batch_override/emulator/stray.py:1 imports batch_override.outcome",
        f"batch_override/pacing/window.py:{lines} imports batch_override.job",
    ]


def test_the_stage_folders_and_the_vocabulary_are_all_the_top_level_holds() -> None:
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert folders == sorted([*(stage for stage in LAYERS if stage), "emulator"])


def test_the_emulator_imports_nothing_of_the_job() -> None:
    assert [w for w in wrong_way_imports() if w.startswith("batch_override/emulator/")] == []


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
        "ApiKey", "BatchOverrideError", "DeadlineReached", "ExitCode", "LedgerUnwritable", "Outcome",
        "ProgressSnapshot", "Rate", "RowsFailed", "RunAborted", "RunConfig", "RunFailed", "RunInterrupted",
        "ServerOutage", "StopAt", "StopHandle", "Summary", "__version__", "load_api_key", "read_ledger",
        "run_job", "run_job_async",
    ]  # fmt: skip
    for name in batch_override.__all__:
        assert getattr(batch_override, name) is not None
