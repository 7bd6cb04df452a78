"""Planning, asked directly: which rows are sent and which end at once, before any request."""

from __future__ import annotations

from pathlib import Path

import pytest

from batch_override.errors import ExitCode
from batch_override.input.batch import InputOptions
from batch_override.input.file_input import CorrectionsFile
from batch_override.job.plan import InputChanged, Plan, index_input, plan_batch
from batch_override.ledger.resume import ResumeIndex, load_resume_index
from tests.support import line, sha, write_csv, write_ledger

HEADER = ("hash", "classification", "media")


def corrections(
    tmp_path: Path, rows: list[tuple[str, str, str]], batch_rows: int = 65_536
) -> CorrectionsFile:
    return CorrectionsFile(
        str(write_csv(tmp_path / "c.csv", rows, HEADER)), InputOptions(batch_rows=batch_rows)
    )


def test_later_copies_are_duplicates_and_both_classifications_hold_back_every_copy(tmp_path: Path) -> None:
    source = corrections(
        tmp_path,
        [
            (sha(1), "human", "video"),  # sent
            (sha(1), "human", "video"),  # the same correction again
            (sha(2), "human", "image"),  # conflict: the first copy is held back too
            (sha(1), "artificial", "image"),  # another media: another item
            (sha(2), "artificial", "image"),
            ("not-a-hash", "human", "video"),  # invalid: no status of its own
            (sha(2), "human", "image"),
        ],
    )
    index = index_input(source.batches())
    assert (index.rows, index.invalid) == (7, 1)
    assert index.status.tolist() == [
        Plan.SEND,
        Plan.DUPLICATE,
        Plan.CONFLICT,
        Plan.SEND,
        Plan.CONFLICT,
        Plan.CONFLICT,
    ]
    assert (index.duplicates, index.conflicts) == (1, 3)


def test_duplicates_are_found_across_batches(tmp_path: Path) -> None:
    source = corrections(tmp_path, [(sha(i % 3), "human", "video") for i in range(6)], batch_rows=2)
    index = index_input(source.batches())
    assert len(index.digests) == 3
    assert index.status.tolist() == [Plan.SEND] * 3 + [Plan.DUPLICATE] * 3


def test_the_ledger_decides_skipped_rejected_and_locked_and_retry_rejected_resends(tmp_path: Path) -> None:
    rows = [(sha(i), "human", "video") for i in range(4)] + [("x", "human", "video")]
    source = corrections(tmp_path, rows)
    ledger = write_ledger(
        tmp_path / "l.csv",
        [
            line(0, "submitted", "r1", h=sha(0)),
            line(1, "rejected", "r1", h=sha(1), error_code="no_longer_possible", http_status=400),
            line(2, "submitted", "r1", h=sha(2), classification="artificial"),  # the other class won
        ],
    )
    resume = load_resume_index(ledger, {"r1": 0.0})
    index = index_input(source.batches())
    (batch,) = source.batches()
    plan = plan_batch(batch, 0, index, resume, retry_rejected=False)
    assert plan.tolist() == [Plan.SKIPPED, Plan.REJECTED, Plan.LOCKED, Plan.SEND, Plan.INVALID]
    again = plan_batch(batch, 0, index, resume, retry_rejected=True)
    assert again.tolist() == [Plan.SKIPPED, Plan.SEND, Plan.LOCKED, Plan.SEND, Plan.INVALID]
    fresh = plan_batch(batch, 0, index, ResumeIndex.empty(), retry_rejected=False)
    assert fresh.tolist() == [Plan.SEND] * 4 + [Plan.INVALID]


def test_an_untrusted_runs_lines_decide_nothing(tmp_path: Path) -> None:
    source = corrections(tmp_path, [(sha(0), "human", "video")])
    ledger = write_ledger(tmp_path / "l.csv", [line(0, "submitted", "elsewhere", h=sha(0))])
    resume = load_resume_index(ledger, {"r1": 0.0})
    (batch,) = source.batches()
    assert plan_batch(batch, 0, index_input(source.batches()), resume, retry_rejected=False).tolist() == [
        Plan.SEND
    ]


@pytest.mark.parametrize(("handed_out", "code"), [(False, ExitCode.USAGE), (True, ExitCode.ABORTED)])
def test_a_changed_input_stops_the_run_with_2_before_any_send_and_3_after(
    tmp_path: Path, handed_out: bool, code: ExitCode
) -> None:
    source = corrections(tmp_path, [(sha(i), "human", "video") for i in range(4)], batch_rows=2)
    index = index_input(source.batches())
    first, second = source.batches()
    index.check_batch(0, first, display="c.csv", handed_out=handed_out)
    index.check_batch(1, second, display="c.csv", handed_out=handed_out)
    index.check_batch(2, None, display="c.csv", handed_out=handed_out)  # pass two read as many
    with pytest.raises(InputChanged, match=r"^c\.csv: the input changed") as raised:
        index.check_batch(1, None, display="c.csv", handed_out=handed_out)  # pass two read fewer
    assert raised.value.exit_code == code
    with pytest.raises(InputChanged):
        index.check_batch(0, second, display="c.csv", handed_out=handed_out)
