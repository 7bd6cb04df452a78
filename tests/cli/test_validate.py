"""``validate`` reads as ``run`` reads (its job file, label map, encoding and column flags) and names
the line of every problem it prints, duplicates and conflicts included, up to --max-problems."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from batch_override.cli.main import main
from tests.support import sha, write_csv


def validate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    """``batch-override validate ARGS`` in-process: the exit code, the problem lines, the count line."""
    code = main(["validate", *args])
    out = capsys.readouterr().out.splitlines()
    return code, [line for line in out if ": line " in line], out[-1] if out else ""


def test_validate_takes_the_label_map_and_the_job_file_run_takes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_csv(tmp_path / "c.csv", [(sha(0), "AI"), (sha(1), "real")], ("sha256", "label"))
    code, problems, count = validate(
        capsys, str(path), "--hash-column", "sha256", "--classification-column", "label",
        "--label-map", "ai=artificial,real=human",
    )  # fmt: skip
    assert (code, problems) == (0, [])
    assert "2 to send, 0 invalid" in count
    job = tmp_path / "job.toml"
    job.write_text(
        '[run]\nhash_column = "sha256"\nclassification_column = "label"\nrate = "5/s"\n'
        '[run.label_map]\nai = "artificial"\nreal = "human"\n',
        encoding="utf-8",
    )
    code, problems, count = validate(capsys, str(path), "--job", str(job))
    assert (code, problems) == (0, [])
    assert "2 to send, 0 invalid" in count


def test_validate_takes_the_input_and_the_encoding_from_the_job_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(f"hash,classification,note\n{sha(0)},human,caf\xe9\n".encode("cp1252"))
    job = tmp_path / "job.toml"
    job.write_text(f'[run]\ninput = "{path}"\nencoding = "cp1252"\n', encoding="utf-8")
    code, problems, count = validate(capsys, "--job", str(job))
    assert (code, problems) == (0, [])
    assert "1 rows: 1 to send" in count


def test_validate_lists_the_lines_of_duplicates_and_conflicts_in_file_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        (sha(0), "human"),  # line 2
        ("abc", "human"),  # line 3: invalid
        (sha(0), "human"),  # line 4: a duplicate of line 2
        (sha(1), "human"),  # line 5: conflicts with line 6
        (sha(1), "artificial"),  # line 6
        (sha(2), "human"),  # line 7
    ]
    path = write_csv(tmp_path / "c.csv", rows)
    code, problems, count = validate(capsys, str(path))
    assert code == 1
    found = [re.match(rf"^{re.escape(str(path))}: line (\d+): (\w+)", line) for line in problems]
    assert [(int(m.group(1)), m.group(2)) for m in found if m] == [
        (3, "hash"),
        (4, "duplicate"),
        (5, "conflict"),
        (6, "conflict"),
    ]
    assert count.endswith("6 rows: 2 to send, 1 invalid, 1 duplicate, 2 conflict")
    code, problems, _ = validate(capsys, str(path), "--max-problems", "2")
    assert [line.split(": ")[1] for line in problems] == ["line 3", "line 4"]


def test_validate_finds_the_row_of_a_duplicate_batches_later(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows far apart, with invalid rows between them: the line is found from the valid rows' bits."""
    rows: list[tuple[str, str]] = [(sha(i), "human") for i in range(70_000)]
    rows[5] = ("bad", "human")
    rows[69_000] = ("bad", "human")
    rows.append((sha(66_000), "human"))  # line 70,002 repeats line 66,002
    path = write_csv(tmp_path / "c.csv", rows)
    code, problems, _ = validate(capsys, str(path))
    assert code == 1
    assert [line.split(": ")[1] for line in problems] == ["line 7", "line 69002", "line 70002"]
    assert "duplicate" in problems[-1]


def test_a_bad_label_map_is_the_flags_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_csv(tmp_path / "c.csv", [(sha(0), "human")])
    job = tmp_path / "job.toml"
    job.write_text('[run]\nlabel_map = "ai=robot"\n', encoding="utf-8")
    assert main(["validate", str(path), "--job", str(job)]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "batch-override: error: --label-map: 'robot' is not human or artificial"
    )
