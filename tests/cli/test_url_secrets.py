"""No credential in any output, for every URL option: a sentinel password given to ``--api-url``,
``--ping-url``, ``--pushgateway``, ``--s3-endpoint``, ``--gcs-endpoint`` and object-store URIs is
absent from stdout, stderr, the summary, the run log, the metrics and the ledger, whether the run
is refused at once (exit 2, before the lock) or runs and its outputs fail.

In-process (``cli.main``): exit codes and streams are the command's own; nothing here is a
property of a separate process."""

from __future__ import annotations

import gc
import socket
from pathlib import Path

import pytest

from batch_override.cli import main as cli
from batch_override.emulator import DEMO_API_KEY
from tests.api_support import emulator_in_thread
from tests.support import FAST, sha, write_csv

SECRET = "SENTINEL-7f3a-pw"
#: One credential in every shape a user could type: plain, with a / (AWS secrets), malformed.
PASSWORDS = [f"u:{SECRET}@127.0.0.1:9", f"u:{SECRET}/x@127.0.0.1:9", f"u:{SECRET}@[::1"]


def _refusals() -> list[tuple[str, list[str]]]:
    cases: list[tuple[str, list[str]]] = []
    for netloc in PASSWORDS:
        url = "http://" + netloc
        cases += [
            ("c.csv", ["--api-url", url]),
            ("c.csv", ["--ping-url", url + "/check"]),
            ("c.csv", ["--pushgateway", url]),
            ("c.csv", ["--pushgateway", netloc]),
            ("s3://bucket/c.csv", ["--s3-endpoint", url]),
            ("gs://bucket/c.csv", ["--gcs-endpoint", url]),
        ]
    cases += [(f"s3://AKIA:{SECRET}@bucket/c.csv", []), (f"gs://AKIA:{SECRET}/x@bucket/c.csv", [])]
    return cases


def _outputs(tmp_path: Path) -> dict[str, Path]:
    ledger = tmp_path / "l.csv"
    return {
        "ledger": ledger,
        "run log": ledger.with_name("l.csv.runs.jsonl"),
        "lock": ledger.with_name("l.csv.lock"),
        "summary": tmp_path / "summary.json",
        "metrics": tmp_path / "m.prom",
    }


def _run(
    tmp_path: Path, source: str, flags: list[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    out = _outputs(tmp_path)
    argv = ["run", source, "--ledger", str(out["ledger"]), *FAST, "--summary", str(out["summary"])]
    argv += ["--metrics-file", str(out["metrics"]), *flags]
    try:
        code = cli.main(argv)
    finally:
        gc.unfreeze()  # `run` freezes the collector for the process it expects to end
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _refused_before_the_lock(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    source: str,
    flags: list[str],
) -> str:
    """A dry run of ``source`` with ``flags`` (a URL wrongly accepted ends it quickly, nothing
    sent, its outputs still tried): asserts exit 2 in one line and no output file made (the
    check came before the lock and the run log); returns what it printed."""
    monkeypatch.setenv("IDENTIFAI_API_KEY", DEMO_API_KEY)
    monkeypatch.chdir(tmp_path)
    write_csv(tmp_path / "c.csv", [(sha(1), "human")])
    code, shown = _run(tmp_path, source, ["--dry-run", *flags], capsys)
    assert code == 2, shown
    assert len(shown.strip().splitlines()) == 1, shown
    assert [name for name, path in _outputs(tmp_path).items() if path.exists()] == []
    return shown


@pytest.mark.parametrize(("source", "flags"), _refusals(), ids=lambda v: str(v))
def test_a_credential_in_any_url_is_refused_before_the_lock_and_never_shown(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    source: str,
    flags: list[str],
) -> None:
    shown = _refused_before_the_lock(tmp_path, monkeypatch, capsys, source, flags)
    assert SECRET not in shown and "credentials" in shown


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_run_whose_push_and_pings_fail_shows_no_credential_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The URLs the job takes still hold secrets: a ping URL is a capability, the gateway's
    # password comes from the environment. Both fail here, so their warnings are printed.
    monkeypatch.setenv("IDENTIFAI_API_KEY", DEMO_API_KEY)
    monkeypatch.setenv("PUSHGATEWAY_USERNAME", "ops")
    monkeypatch.setenv("PUSHGATEWAY_PASSWORD", SECRET)
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(3)])
    port = _closed_port()
    with emulator_in_thread(unknown="classified") as emulator:
        code, shown = _run(
            tmp_path,
            str(corrections),
            [
                "--api-url", emulator.url,
                "--ping-url", f"http://127.0.0.1:{port}/{SECRET}",
                "--pushgateway", f"http://127.0.0.1:{port}/{SECRET}",
                "--progress-interval", "0.05",
            ],
            capsys,
        )  # fmt: skip
    assert code == 0, shown
    assert "cannot ping --ping-url" in shown and "cannot push metrics to --pushgateway" in shown
    assert SECRET not in shown
    written = {name: p.read_text() for name, p in _outputs(tmp_path).items() if p.exists()}
    assert {"ledger", "run log", "summary", "metrics"} <= set(written)
    assert [name for name, text in written.items() if SECRET in text] == []


@pytest.mark.parametrize(
    ("source", "flags"),
    [
        ("c.csv", ["--api-url", "http://127.0.0.1:99999"]),
        ("c.csv", ["--api-url", "http://[::1"]),
        ("c.csv", ["--ping-url", "http://127.0.0.1:99999/check"]),
        ("c.csv", ["--ping-url", "http://[::1/check"]),
        ("c.csv", ["--pushgateway", "127.0.0.1:99999"]),
        ("c.csv", ["--pushgateway", "http://[::1"]),
        ("s3://bucket/c.csv", ["--s3-endpoint", "http://[::1"]),
        ("s3://[", []),
    ],
    ids=lambda v: str(v),
)
def test_a_malformed_url_is_exit_2_in_one_line_before_the_lock_and_the_run_log(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    source: str,
    flags: list[str],
) -> None:
    shown = _refused_before_the_lock(tmp_path, monkeypatch, capsys, source, flags)
    assert "internal error" not in shown
