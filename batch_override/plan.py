"""Planning: what happens to each row before anything is sent.

Pass one (:func:`index_input`) reads every row once, validates it and groups the valid rows by
(media, hash) to find duplicates and conflicts.  Pass two (:func:`plan_batch`) re-reads a batch
and decides per row: send it, or finish it at once as invalid / duplicate / conflict / skipped /
rejected.  Both keep only compact numpy arrays (see :mod:`keys`), never a Python object per row.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from .keys import KEY_DTYPE, GrowableKeys, KeyArray, flip_classification, make_keys
from .source import Batch


class Plan(enum.IntEnum):
    SEND = 0
    INVALID = 1
    DUPLICATE = 2
    CONFLICT = 3
    SKIPPED = 4  # the ledger shows this override accepted
    REJECTED = 5  # the ledger shows it rejected for good (and --retry-rejected is off)
    LOCKED = 6  # the ledger shows the other classification accepted
    ABORTED = 7  # the run stopped before this row was sent


class Prior(enum.IntEnum):
    """What a trusted earlier ledger line says of a (media, hash, classification)."""

    NONE = 0
    DONE = 1
    REJECTED = 2
    RETRY = 3


@dataclass(slots=True)
class InputIndex:
    """Per valid row (in file order): SEND, DUPLICATE or CONFLICT; and the input's counts."""

    status: npt.NDArray[np.uint8]
    rows: int
    invalid: int

    @property
    def duplicates(self) -> int:
        return int(np.count_nonzero(self.status == Plan.DUPLICATE))

    @property
    def conflicts(self) -> int:
        return int(np.count_nonzero(self.status == Plan.CONFLICT))


def index_input(batches: Iterable[Batch]) -> InputIndex:
    """Read every batch once; find which valid rows are duplicates or conflicts.

    Sorting the 34-byte keys (stable, so the first copy in the file sorts first) brings each
    (media, hash) together, classifications in order.  A run whose first and last
    classification differ is a conflict: every row in it is held back.
    """
    keys = GrowableKeys()
    rows = invalid = 0
    for batch in batches:
        rows += len(batch)
        invalid += int(np.count_nonzero(~batch.valid))
        mask = batch.valid
        if mask.all():
            keys.extend(make_keys(batch.hash, batch.media, batch.classification))
        elif mask.any():
            sel = pa.array(mask)
            keys.extend(
                make_keys(batch.hash.filter(sel), batch.media.filter(sel), batch.classification.filter(sel))
            )
    return InputIndex(_group_status(keys.finish()), rows, invalid)


def _group_status(keys: KeyArray) -> npt.NDArray[np.uint8]:
    n = len(keys)
    status = np.zeros(n, np.uint8)
    if n < 2:
        return status
    order = np.argsort(keys, kind="stable")
    same_item = np.empty(n, np.bool_)  # same (media, hash) as the previous key in sorted order
    same_key = np.empty(n, np.bool_)  # same (media, hash, classification)
    same_item[0] = same_key[0] = False
    raw = keys.view(np.uint8).reshape(n, 34)
    step = 1 << 20
    for lo in range(1, n, step):
        hi = min(n, lo + step)
        cur, prev = raw[order[lo:hi]], raw[order[lo - 1 : hi - 1]]
        same_item[lo:hi] = (cur[:, :33] == prev[:, :33]).all(axis=1)
        same_key[lo:hi] = same_item[lo:hi] & (cur[:, 33] == prev[:, 33])
    del keys, raw
    group = np.cumsum(~same_item)
    conflicted_groups = np.unique(group[same_item & ~same_key])
    conflict = np.isin(group, conflicted_groups) if len(conflicted_groups) else np.zeros(n, np.bool_)
    del group
    sorted_status = np.where(conflict, Plan.CONFLICT, np.where(same_item, Plan.DUPLICATE, Plan.SEND))
    status[order] = sorted_status.astype(np.uint8)
    return status


@dataclass(slots=True)
class ResumeIndex:
    """The latest trusted ledger verdict per (media, hash, classification), sorted for lookup."""

    keys: KeyArray
    prior: npt.NDArray[np.uint8]
    #: Unix time of the key's first trusted line, only where ``--give-up-after`` asked for it.
    first_seen: npt.NDArray[np.float64] | None = None

    @classmethod
    def empty(cls) -> ResumeIndex:
        return cls(np.empty(0, KEY_DTYPE), np.empty(0, np.uint8))

    def __len__(self) -> int:
        return len(self.keys)

    def _find(self, keys: KeyArray) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
        pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return pos, self.keys[pos] == keys

    def lookup(self, keys: KeyArray) -> npt.NDArray[np.uint8]:
        if len(self.keys) == 0 or len(keys) == 0:
            return np.zeros(len(keys), np.uint8)
        pos, hit = self._find(keys)
        return np.where(hit, self.prior[pos], Prior.NONE).astype(np.uint8)

    def first_seen_of(self, keys: KeyArray) -> npt.NDArray[np.float64]:
        """When each key first appeared in the ledger (NaN: never, or not tracked)."""
        if self.first_seen is None or len(self.keys) == 0 or len(keys) == 0:
            return np.full(len(keys), np.nan)
        pos, hit = self._find(keys)
        return np.where(hit, self.first_seen[pos], np.nan)


def plan_batch(
    batch: Batch,
    first_valid: int,
    index: InputIndex,
    resume: ResumeIndex,
    *,
    retry_rejected: bool,
) -> npt.NDArray[np.uint8]:
    """The :class:`Plan` of every row of ``batch``; ``first_valid`` is its first valid row's ordinal."""
    plan = np.full(len(batch), Plan.INVALID, np.uint8)
    valid_at = np.flatnonzero(batch.valid)
    if len(valid_at) == 0:
        return plan
    status = index.status[first_valid : first_valid + len(valid_at)]
    valid_plan = status.copy()
    send = status == Plan.SEND
    if len(resume) and send.any():
        sel = pa.array(valid_at[send])
        keys = make_keys(batch.hash.take(sel), batch.media.take(sel), batch.classification.take(sel))
        prior = resume.lookup(keys)
        locked = resume.lookup(flip_classification(keys)) == Prior.DONE
        decided = np.full(len(keys), Plan.SEND, np.uint8)
        decided[prior == Prior.DONE] = Plan.SKIPPED
        if not retry_rejected:
            decided[prior == Prior.REJECTED] = Plan.REJECTED
        decided[locked & (prior != Prior.DONE)] = Plan.LOCKED
        valid_plan[send] = decided
    plan[valid_at] = valid_plan
    return plan
