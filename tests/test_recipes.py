"""The README's recipes, run for real: the example notebook executed by a Jupyter kernel, the
Dagster asset materialized by Dagster, both against the emulator; the others at least compile."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pytest

from batch_override import RunConfig
from batch_override.emulator import DEMO_API_KEY
from tests.api_support import emulator_in_thread
from tests.binaries import unavailable
from tests.support import REPO, sha, write_csv

README = (REPO / "README.md").read_text(encoding="utf-8")


def module(name: str, install: str) -> ModuleType:
    """``import name``; fails (CI) or skips (elsewhere) the test when it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        unavailable(f"{name} is not installed ({install})")


def recipe(heading: str) -> str:
    """The first python block after the recipe's bold heading in the README."""
    after = README.split(f"**{heading}", 1)[1]
    block = re.search(r"```python\n(.*?)```", after, re.DOTALL)
    assert block, heading
    return block.group(1)


@pytest.mark.parametrize(
    "heading", ["An Airflow task.", "A Prefect task.", "A Dagster asset.", "A notebook."]
)
def test_every_recipe_compiles(heading: str) -> None:
    compile(recipe(heading), heading, "exec")


@pytest.mark.integration
def test_the_example_notebook_runs_in_a_real_kernel_and_reads_the_ledger_back_typed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nbformat = module("nbformat", "make venv: a dev dependency")
    nbclient = module("nbclient", "make venv: a dev dependency")
    module("ipykernel", "make venv: a dev dependency")
    notebook = nbformat.read(REPO / "examples" / "quickstart.ipynb", as_version=4)
    # A throttled emulator, as the real API is: its X-RateLimit headers set the pace (50/s).
    with emulator_in_thread(unknown="classified", rate_limit=(50, 1.0)) as emulator:
        monkeypatch.setenv("BATCH_OVERRIDE_API_URL", emulator.url)
        monkeypatch.setenv("BATCH_OVERRIDE_NOTEBOOK_OUT", str(tmp_path))
        monkeypatch.setenv("IDENTIFAI_API_KEY", DEMO_API_KEY)
        client = nbclient.NotebookClient(
            notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        )
        client.execute()  # raises CellExecutionError, with the cell's traceback, if a cell fails
        overrides = emulator.stats()["overrides"]
    text = "\n".join(
        str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )
    assert "done: 30/30 rows" in text
    assert "submitted" in text and "exit 0" in text
    assert overrides == 30
    ledger = pd.read_csv(tmp_path / "quickstart.ledger.csv")
    assert len(ledger) == 30 and set(ledger["outcome"]) == {"submitted"}


@pytest.mark.integration
def test_the_dagster_asset_recipe_materializes_against_the_emulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dg = module("dagster", "make integration installs it from requirements-integration.txt")
    code = README.split("<!-- dagster-recipe -->", 1)[1]
    block = re.search(r"```python\n(.*?)```", code, re.DOTALL)
    assert block
    namespace: dict[str, Any] = {"__name__": "dagster_recipe"}
    # dont_inherit: this file's `from __future__ import annotations` would turn the recipe's hints
    # into strings, which Dagster refuses for `context`; users run the block as it is.
    exec(compile(block.group(1), "README.md (Dagster recipe)", "exec", dont_inherit=True), namespace)
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(12)])
    # A throttled emulator, as the real API is: its X-RateLimit headers set the pace (50/s).
    with emulator_in_thread(unknown="classified", rate_limit=(50, 1.0)) as emulator:
        namespace["CONFIG"] = RunConfig(
            input=str(corrections), ledger=tmp_path / "l.csv", api_url=emulator.url
        )
        monkeypatch.setenv("IDENTIFAI_API_KEY", DEMO_API_KEY)
        result = dg.materialize([namespace["overrides"]])
        assert result.success
        metadata = result.asset_materializations_for_node("overrides")[0].metadata
        assert metadata["rows"].value == 12 and metadata["outcomes"].value == {"submitted": 12}

        # A refused key: the step fails, and Dagster is told not to retry it.
        monkeypatch.setenv("IDENTIFAI_API_KEY", "not-the-key")
        failed = dg.materialize([namespace["overrides"]], raise_on_error=False)
    assert not failed.success
    events = [event.event_type_value for event in failed.all_events]
    assert "STEP_FAILURE" in events and "STEP_UP_FOR_RETRY" not in events
    failure = next(e for e in failed.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_failure_data.user_failure_data.metadata["exit_code"].value == 3
