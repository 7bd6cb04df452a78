"""Start-up: ``--version`` and ``--help`` import nothing heavy; a subcommand imports what it needs
when it runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import REPO, cli_env

#: What a bare ``--version`` or ``--help`` must not wait for (0.4 s of the old start-up).
HEAVY = ("aiohttp", "pyarrow", "pandas", "numpy", "prometheus_client", "tqdm")

_PROBE = """\
import json, sys
import batch_override.__main__ as entry
sys.argv = ["batch-override", *sys.argv[1:]]
try:
    entry.main()
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def _imported(*argv: str) -> set[str]:
    """The top-level modules a fresh interpreter has imported after the console script's entry
    point ran ``argv``.  A subprocess: what is tested is a fresh interpreter's imports."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv],
        capture_output=True, text=True, cwd=str(REPO), env=cli_env(key=None), timeout=120,
    )  # fmt: skip
    return {name.split(".")[0] for name in json.loads(done.stderr.splitlines()[-1])}


@pytest.mark.parametrize("argv", [("--version",), ("--help",), ("run", "--help")])
def test_version_and_help_import_nothing_heavy(argv: tuple[str, ...]) -> None:
    """A subprocess: the property is a fresh interpreter's modules."""
    assert _imported(*argv).isdisjoint(HEAVY), sorted(_imported(*argv) & set(HEAVY))


def test_a_subcommand_loads_its_modules_when_chosen() -> None:
    """A subprocess: the property is a fresh interpreter's modules (``report`` defines its options
    with its module, which imports numpy, and pyarrow is still kept from importing pandas)."""
    imported = _imported("report", "--help")
    assert "numpy" in imported
    assert "pandas" not in imported
