"""Pass two: plan each batch, ledger the rows that need no request, hand the others to the senders.

Contract: once the run has stopped, no row is handed out any more: the rest of the input is
read batch by batch and its rows finished without a request (skipped, invalid...) are recorded as
usual, while the sendable ones are left ``not_attempted`` (``--record-skipped``: an ``aborted``
line each), unless the ledger itself failed, when reading ends at once.  :func:`produce` ends
with one ``None`` per sender on the queue, and only when it was not cancelled: a cancelled
producer never waits on a queue nobody may read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ..config import RunConfig
from ..errors import BatchOverrideError, InputError
from ..input.batch import Batch
from ..input.source import BatchSource
from ..keys import make_keys
from ..ledger.format import neutralize_array
from ..ledger.resume import ResumeIndex
from ..stopping import Stopper
from .plan import InputIndex, Plan, plan_batch
from .recorder import Item, Recorder


async def _next_batch(iterator: Iterator[Batch]) -> Batch | None:
    """The next batch of pass two; None at the end, or when the input cannot be read any more:
    pass one read it whole, so the check of the batch count finds it changed."""
    try:
        return await asyncio.to_thread(next, iterator, None)
    except InputError:
        return None


@dataclass(frozen=True, slots=True)
class PassTwo:
    """What pass two reads from and hands on to; ``queue`` None is a dry run."""

    config: RunConfig
    source: BatchSource
    index: InputIndex
    resume: ResumeIndex
    recorder: Recorder
    stopper: Stopper
    queue: asyncio.Queue[Item | None] | None


async def produce(work: PassTwo, senders: int = 0) -> None:
    """Pass two over ``work.source``; without a queue every sendable row is ``planned``.

    An error here stops the run (a :class:`BatchOverrideError` with its exit code, anything else
    as a bug, exit 70); the rows in the queue are then aborted by the senders, and the rows not
    read yet get no line, as after a kill.
    """
    try:
        await _produce(work)
    except BatchOverrideError as exc:
        work.stopper.request(exc.exit_code, str(exc))
    except Exception as exc:
        work.stopper.fail(exc)
    if work.queue is not None:
        for _ in range(senders):
            await work.queue.put(None)  # the senders drain the queue, even after a stop


async def _produce(work: PassTwo) -> None:
    config, source, index, resume = work.config, work.source, work.index, work.resume
    recorder, stopper, queue = work.recorder, work.stopper, work.queue
    iterator = iter(source.batches())
    first_valid = 0
    to_send = 0
    limit_reached = False
    # Read one batch ahead: pyarrow reads and normalises the next batch (in a thread, mostly
    # outside the GIL) while this one is planned and ledgered.
    ahead = asyncio.ensure_future(_next_batch(iterator))
    number = 0
    try:
        while (batch := await ahead) is not None:
            if recorder.failed:
                return  # the ledger failed: nothing more can be recorded
            ahead = asyncio.ensure_future(_next_batch(iterator))
            # The plan applies to rows by position: a batch that reads otherwise than in pass one
            # stops the run (InputChanged, exit 2 or 3) before any of its rows is handed out.
            index.check_batch(
                number, batch, display=source.display, handed_out=queue is not None and to_send > 0
            )
            number += 1
            if limit_reached:
                recorder.summary.not_attempted += len(batch)
                continue
            plan = plan_batch(batch, first_valid, index, resume, retry_rejected=config.retry_rejected)
            first_valid += int(np.count_nonzero(batch.valid))
            send_at = np.flatnonzero(plan == Plan.SEND)
            if config.limit is not None and to_send + len(send_at) > config.limit:
                keep = config.limit - to_send
                cut = int(send_at[keep]) if keep < len(send_at) else len(plan)
                recorder.summary.not_attempted += len(plan) - cut
                plan, send_at = plan[:cut], send_at[:keep]
                limit_reached = True
            to_send += len(send_at)
            if queue is None:
                recorder.immediate(batch, plan, np.arange(len(plan)))
                continue
            recorder.immediate(batch, plan, np.flatnonzero(plan != Plan.SEND))
            if len(send_at) == 0:
                continue
            if stopper.stops:
                recorder.not_reached(batch, plan, send_at)
                continue
            for item in items(batch, send_at, recorder, resume, neutralize=config.neutralize_formulas):
                if stopper.stops:
                    recorder.abort(item)
                else:
                    await queue.put(item)
        index.check_batch(number, None, display=source.display, handed_out=queue is not None and to_send > 0)
    finally:
        if not ahead.done():
            # The thread reading the next batch cannot be cancelled: let it end (one batch)
            # before the caller closes the source under it.
            await asyncio.wait({ahead})
        if not ahead.cancelled():
            ahead.exception()  # seen: an error in a batch nobody asked for any more is moot


def items(
    batch: Batch, idx: np.ndarray[Any, Any], recorder: Recorder, resume: ResumeIndex, *, neutralize: bool
) -> list[Item]:
    """The rows at ``idx`` of ``batch`` as items for the senders (carried cells in the ledger's
    format, ready to write; none without a ledger)."""
    take = pa.array(idx)
    media = batch.media.take(take).to_pylist()
    hashes = batch.hash.take(take).to_pylist()
    classes = batch.classification.take(take).to_pylist()
    carried: list[list[str]] = []
    if batch.carried and recorder.ledger is not None:
        carried = [neutralize_array(c.take(take), neutralize).to_pylist() for c in batch.carried]
    rows = (batch.start + idx).tolist()
    out = [
        Item(rows[j], media[j], hashes[j], classes[j], tuple(col[j] for col in carried))
        for j in range(len(rows))
    ]
    if resume.first_run is not None:
        seen = resume.first_seen_of(
            make_keys(batch.hash.take(take), batch.media.take(take), batch.classification.take(take))
        ).tolist()
        for item, when in zip(out, seen, strict=True):
            item.first_seen = when
    return out
