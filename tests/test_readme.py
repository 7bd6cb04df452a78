"""The README cannot rot: its walkthrough runs here, command by command, against the emulator.

Console blocks of the "Walkthrough" section are read in order.  ``$ export K=V`` sets the
environment; ``$ mkdir -p DIR`` makes a folder; ``$ batch-override emulator ... &`` starts the
real emulator command (on a free port, substituted for 8080 in later commands); every other
``$ batch-override ...`` runs in a scratch directory holding copies of sample_data/ and jobs/,
and must exit with the code its trailing ``# exit N`` comment names (0 when there is none).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shlex
import shutil
import signal
import sys
import tomllib
from pathlib import Path

from batch_override.cli.main import build_parser
from batch_override.cli.options import JOB_KEYS
from tests.support import REPO, cli_env, run_cli

EXIT = re.compile(r"#\s*exit\s+(\d+)")


def walkthrough_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Walkthrough", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```console\n(.*?)```", section, re.DOTALL)
    return [line[2:] for block in blocks for line in block.splitlines() if line.startswith("$ ")]


def test_the_walkthrough_covers_what_a_new_user_does() -> None:
    joined = "\n".join(walkthrough_commands())
    for step in ("validate", "--dry-run", "--limit", "report", "--retry-file", "jobs/backfill.toml",
                 "jobs/nightly.toml", "emulator"):  # fmt: skip
        assert step in joined, step


async def test_every_walkthrough_command_runs_as_documented(tmp_path: Path) -> None:
    """The emulator in a subprocess, as the walkthrough starts it in the background (a server of
    its own); the commands in-process, in the walkthrough's folder."""
    for folder in ("sample_data", "jobs"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    env = cli_env(key=None, extra={"PYTHONPATH": str(REPO)})
    emulator: asyncio.subprocess.Process | None = None
    url = None
    try:
        for command in walkthrough_commands():
            body, _, comment = command.partition("#")
            expected = int(m.group(1)) if (m := EXIT.search("#" + comment)) else 0
            if body.startswith("export "):
                name, _, value = body[len("export ") :].strip().partition("=")
                env[name] = value
                continue
            words = shlex.split(body.replace(" &", ""))
            if words[:2] == ["mkdir", "-p"]:
                (tmp_path / words[2]).mkdir(parents=True, exist_ok=True)
                continue
            assert words[0] == "batch-override", command
            if url is not None:
                words = [w.replace("http://127.0.0.1:8080", url) for w in words]
            if words[1] == "emulator":
                words = [("0" if w == "8080" else w) for w in words]
                emulator = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "batch_override", *words[1:], cwd=tmp_path, env=env,
                    stdout=asyncio.subprocess.PIPE,
                )  # fmt: skip
                assert emulator.stdout is not None
                line = (await asyncio.wait_for(emulator.stdout.readline(), 30)).decode()
                url = line.split()[-1]
                continue
            done = await run_cli(*words[1:], cwd=tmp_path, env=env)
            assert done.returncode == expected, f"{command}\n{done.stdout}\n{done.stderr}"
            assert "Traceback" not in done.stderr
    finally:
        if emulator is not None and emulator.returncode is None:
            emulator.send_signal(signal.SIGTERM)
            await emulator.wait()
    assert (tmp_path / "out" / "batch_override.prom").exists()
    assert (tmp_path / "out" / "retry.csv").exists()


def test_the_reference_job_file_lists_every_run_option() -> None:
    text = (REPO / "jobs" / "reference.toml").read_text(encoding="utf-8")
    uncommented = "\n".join(
        line[2:] if line.startswith("# ") and " = " in line else line for line in text.splitlines()
    )
    listed = set(tomllib.loads(uncommented)["run"])
    assert listed <= JOB_KEYS
    run = next(
        action.choices["run"]
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    for action in run._actions:
        flag = max(action.option_strings, key=len, default="")
        if flag in ("", "--help", "--job"):
            continue
        key = {
            "--no-preflight": "preflight",
            "--raw-cells": "neutralize_formulas",
            "--no-progress": "progress",
        }.get(flag, flag.lstrip("-").replace("-", "_"))
        assert key in listed, f"{flag} is missing from jobs/reference.toml"


def test_the_shipped_job_files_load() -> None:
    from batch_override.cli.jobfile import load_job

    for name in ("demo", "nightly", "backfill", "reference"):
        load_job(REPO / "jobs" / f"{name}.toml", JOB_KEYS)
    assert os.path.exists(REPO / "jobs" / "demo.toml")


def test_the_development_map_names_every_module_of_the_package() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    development = text[text.index("## Development") :]
    package = REPO / "batch_override"
    names = [p.name for p in package.glob("*.py")] + [f"{p.name}/" for p in package.iterdir() if p.is_dir()]
    assert [name for name in sorted(names) if f"`{name}`" not in development and name != "__pycache__/"] == []


def test_the_metrics_section_says_node_exporter_needs_honor_labels_for_the_job_label() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    metrics = " ".join(text[text.index("**Metrics.**") : text.index("**While a run runs**")].split())
    textfile = metrics[: metrics.index("--pushgateway URL")]
    assert "node_exporter with `honor_labels: true`" in textfile
    assert "`exported_job`" in textfile
