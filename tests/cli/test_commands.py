"""The commands around a run: ``validate``, ``--job`` TOML files, the Python API, and ``--help``."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from batch_override import RunConfig, run_job
from batch_override.config import Rate
from batch_override.emulator import DEMO_API_KEY, load_state_csv
from tests.support import REPO, Result, cli_env, read_ledger, run_cli, sha, write_csv


def one_error_line(result: Result) -> str:
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


# -- validate ---------------------------------------------------------------------------------------------


async def test_validate_a_clean_file_exits_0(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(5)] + [(sha(0), "human")])
    result = await run_cli("validate", str(path), env=cli_env(key=None))
    assert result.returncode == 0, result.stderr  # a duplicate is sent once: not a failure
    assert [line for line in result.stdout.splitlines() if ": line " in line] == [
        f"{path}: line 7: duplicate: repeats an earlier row of this input (sent once)"
    ]
    assert "5 to send" in result.stdout and "1 duplicate" in result.stdout


async def test_validate_prints_file_line_reason_for_each_problem_and_exits_1(tmp_path: Path) -> None:
    rows = [
        (sha(0), "human"),
        ("abc", "human"),
        (sha(2), "human"),
        (sha(3), "AI"),
        (sha(4).upper(), " Human"),
    ]
    path = write_csv(tmp_path / "c.csv", rows)
    result = await run_cli("validate", str(path), env=cli_env(key=None))
    assert result.returncode == 1, result.stderr
    problems = [line for line in result.stdout.splitlines() if ": line " in line]
    pattern = re.compile(rf"^{re.escape(str(path))}: line (\d+): (.+)$")
    matches = [pattern.match(line) for line in problems]
    assert all(matches), problems
    # rows 1 and 3 are bad: a spreadsheet shows them on lines 3 and 5 (the header is line 1)
    assert [int(m.group(1)) for m in matches if m] == [3, 5]
    assert "hash" in problems[0] and "classification" in problems[1]


async def test_validate_names_the_line_of_a_ragged_row(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(f"hash,classification\n{sha(0)},human\n{sha(1)},human\n{sha(2)}\n", encoding="utf-8")
    result = await run_cli("validate", str(path), env=cli_env(key=None))
    assert result.returncode == 1
    (problem,) = [line for line in result.stdout.splitlines() if ": line " in line]
    assert problem.startswith(f"{path}: line 4: ")


async def test_validate_reports_conflicts_with_exit_1(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", [(sha(0), "human"), (sha(0), "artificial"), (sha(1), "human")])
    result = await run_cli("validate", str(path), env=cli_env(key=None))
    assert result.returncode == 1
    assert "2 conflict" in result.stdout


async def test_validate_honours_column_mapping(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", [(sha(0), "human")], ("sha256", "label"))
    result = await run_cli(
        "validate",
        str(path),
        "--hash-column",
        "SHA256",
        "--classification-column",
        "label",
        env=cli_env(key=None),
    )
    assert result.returncode == 0, result.stderr


# -- job files ---------------------------------------------------------------------------------------------


def job_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "job.toml"
    path.write_text(body, encoding="utf-8")
    return path


async def test_job_file_supplies_the_options_of_a_run(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified")
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(3)])
    ledger = tmp_path / "ledger.csv"
    job = job_file(
        tmp_path,
        f'[run]\ninput = "{corrections}"\nledger = "{ledger}"\napi_url = "{emulator.url}"\n'
        'media = "image"\nrate = "1000/s"\nconcurrency = 2\nbackoff-base = 0.01\nmax_retries = 1\n',
    )
    result = await run_cli("run", "--job", str(job), env=cli_env())
    assert result.returncode == 0, result.stderr
    assert len(read_ledger(ledger)) == 3
    assert {o["media"] for o in emulator.overrides()} == {"image"}


async def test_command_line_flags_override_the_job_file(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified")
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(5)])
    job = job_file(
        tmp_path,
        f'[run]\ninput = "{tmp_path / "elsewhere.csv"}"\nledger = "{tmp_path / "job-ledger.csv"}"\n'
        f'api_url = "{emulator.url}"\nmedia = "image"\nlimit = 1\nrate = "1000/s"\n',
    )
    ledger = tmp_path / "flag-ledger.csv"
    result = await run_cli(
        "run", str(corrections), "--job", str(job), "--ledger", str(ledger),
        "--media", "audio", "--limit", "2", env=cli_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sorted((o["media"], o["hash"]) for o in emulator.overrides()) == sorted(
        [("audio", sha(0)), ("audio", sha(1))]
    )
    assert ledger.exists() and not (tmp_path / "job-ledger.csv").exists()


async def test_job_file_may_name_an_api_key_file(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified")
    key_file = tmp_path / "key.txt"
    key_file.write_text(DEMO_API_KEY + "\n", encoding="utf-8")
    corrections = write_csv(tmp_path / "c.csv", [(sha(0), "human")])
    job = job_file(
        tmp_path,
        f'[run]\ninput = "{corrections}"\nledger = "{tmp_path / "l.csv"}"\napi_url = "{emulator.url}"\n'
        f'api_key_file = "{key_file}"\nrate = "1000/s"\n',
    )
    result = await run_cli("run", "--job", str(job), env=cli_env(key=None))
    assert result.returncode == 0, result.stderr
    assert len(emulator.overrides()) == 1


async def test_shipped_demo_job_runs_against_the_emulator_with_flag_overrides(
    tmp_path: Path, emulator_factory
) -> None:
    states = load_state_csv(REPO / "sample_data" / "emulator_state.csv")
    emulator = await emulator_factory(states=states)
    ledger = tmp_path / "demo.ledger.csv"
    result = await run_cli(
        "run", "--job", "jobs/demo.toml", "--api-url", emulator.url, "--ledger", str(ledger),
        "--rate", "2000/s", env=cli_env(), cwd=REPO,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr
    rows = len((REPO / "sample_data" / "corrections.csv").read_text(encoding="utf-8").splitlines()) - 1
    assert sorted(read_ledger(ledger)["row"]) == list(range(rows))


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('[run]\ninput = "x.csv"\nconcurency = 4\n', ("concurency",)),
        ('[run]\ninput = "x.csv"\napi_key = "sk-secret-123"\n', ("API key", "api_key")),
        ('[run]\ninput = "x.csv"\nx-api-key = "sk-secret-123"\n', ("API key", "api_key")),
        ('[run\ninput = "x.csv"\n', ("TOML",)),
        ('[run]\ninput = "x.csv"\nrate = "fast"\n', ("rate",)),
    ],
    ids=["unknown-key", "api-key", "x-api-key", "bad-toml", "bad-rate"],
)
async def test_bad_job_file_exits_2_with_one_line(
    tmp_path: Path, emulator_factory, body: str, words: tuple[str, ...]
) -> None:
    emulator = await emulator_factory(unknown="classified")
    write_csv(tmp_path / "x.csv", [(sha(0), "human")])
    job = job_file(tmp_path, body)
    result = await run_cli(
        "run", "--job", str(job), "--ledger", str(tmp_path / "l.csv"), "--api-url", emulator.url,
        env=cli_env(), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    line = one_error_line(result)
    assert any(w.lower() in line.lower() for w in words), line
    assert "sk-secret-123" not in result.stdout + result.stderr
    assert emulator.stats()["requests"] == 0


async def test_missing_job_file_exits_2_with_one_line(tmp_path: Path) -> None:
    result = await run_cli("run", "--job", str(tmp_path / "nope.toml"), env=cli_env())
    assert result.returncode == 2
    assert "nope.toml" in one_error_line(result)


# -- the Python API ------------------------------------------------------------------------------------------


async def test_run_job_returns_a_summary_with_exit_code_and_outcomes(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified", states={("video", sha(1)): "expired"})
    corrections = write_csv(tmp_path / "c.csv", [(sha(0), "human"), (sha(1), "human"), ("bad", "human")])
    config = RunConfig(
        input=str(corrections), ledger=tmp_path / "l.csv", api_url=emulator.url, rate=Rate(1000, 1.0)
    )
    # run_job blocks (it runs its own event loop), so it runs in a thread while this loop serves.
    summary = await asyncio.to_thread(run_job, config, DEMO_API_KEY)
    assert summary.exit_code == 1
    assert dict(summary.outcomes) == {"submitted": 1, "rejected": 1, "invalid": 1}
    assert summary.to_dict()["exit_code"] == 1


async def test_run_job_reads_the_key_from_the_environment(
    tmp_path: Path, emulator_factory, api_key: str
) -> None:
    emulator = await emulator_factory(unknown="classified")
    corrections = write_csv(tmp_path / "c.csv", [(sha(0), "human")])
    config = RunConfig(
        input=str(corrections), ledger=tmp_path / "l.csv", api_url=emulator.url, rate=Rate(1000, 1.0)
    )
    summary = await asyncio.to_thread(run_job, config)
    assert (summary.exit_code, dict(summary.outcomes)) == (0, {"submitted": 1})


async def test_run_job_dry_run_needs_no_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IDENTIFAI_API_KEY", raising=False)
    corrections = write_csv(tmp_path / "c.csv", [(sha(0), "human"), (sha(1), "artificial")])
    summary = await asyncio.to_thread(
        run_job, RunConfig(input=str(corrections), ledger=tmp_path / "l.csv", dry_run=True)
    )
    assert (summary.exit_code, dict(summary.outcomes)) == (0, {"planned": 2})


# -- help -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"]], ids=" ".join)
async def test_help_exits_0_and_lists_the_exit_codes(args: list[str]) -> None:
    result = await run_cli(*args, env=cli_env(key=None))
    assert result.returncode == 0, result.stderr
    assert "exit codes" in result.stdout
    for code in ("0", "1", "2", "3"):
        assert re.search(rf"^\s+{code}\s+\S", result.stdout, re.MULTILINE), code
