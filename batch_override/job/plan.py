"""Planning: what happens to each row before anything is sent.

Pass one (:func:`index_input`) reads every row once, validates it and groups the valid rows by
(media, hash) to find duplicates and conflicts.  Pass two (:func:`plan_batch`) re-reads a batch
and decides per row: send it, or finish it at once as invalid / duplicate / conflict / skipped /
rejected.  Both keep only compact numpy arrays (see :mod:`keys`), never a Python object per row.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from ..errors import BatchOverrideError, ExitCode
from ..input.batch import Batch
from ..keys import GrowableKeys, KeyArray, make_keys
from ..ledger.resume import Prior, ResumeIndex


class Plan(enum.IntEnum):
    SEND = 0
    INVALID = 1
    DUPLICATE = 2
    CONFLICT = 3
    SKIPPED = 4  # the ledger shows this override accepted
    REJECTED = 5  # the ledger shows it rejected for good (and --retry-rejected is off)
    LOCKED = 6  # the ledger shows the other classification accepted
    ABORTED = 7  # the run stopped before this row was sent
    LOCKED_AGAIN = 8  # as LOCKED, and the ledger holds this override's rejected line already


class InputChanged(BatchOverrideError):
    """The input changed between the run's two reads: its plan no longer fits the rows.

    Exit 2 when no row had been handed out for sending yet (so none can have been sent), else 3.
    """

    def __init__(self, display: str, *, handed_out: bool) -> None:
        super().__init__(f"{display}: the input changed while the run read it; rerun to plan it again")
        self.exit_code = ExitCode.ABORTED if handed_out else ExitCode.USAGE


@dataclass(slots=True)
class InputIndex:
    """Per valid row (in file order): SEND, DUPLICATE or CONFLICT; and the input's counts.

    ``digests`` holds one :func:`batch_digest` per batch read: pass two sends a batch only if it
    reads the same (:meth:`planned`), since the statuses apply to rows by position.
    """

    status: npt.NDArray[np.uint8]
    rows: int
    invalid: int
    digests: list[bytes] = field(default_factory=list)
    #: The keys of the SEND rows, in order, until :meth:`count_sends` has read them (then None).
    send_keys: KeyArray | None = None

    def count_sends(self, resume: ResumeIndex, *, retry_rejected: bool) -> int:
        """The rows the run will send: SEND rows that ``resume`` has not settled (the rule of
        :func:`plan_batch`), so a resume's estimate leaves out what the ledger already holds.
        Frees :attr:`send_keys`: it is asked once, before pass two."""
        keys, self.send_keys = self.send_keys, None
        if keys is None or not len(resume):
            return int(np.count_nonzero(self.status == Plan.SEND))
        sends = 0
        for lo in range(0, len(keys), _STEP):
            prior, other = resume.lookup_both(keys[lo : lo + _STEP])
            sends += int(np.count_nonzero(_resumed(prior, other, retry_rejected=retry_rejected) == Plan.SEND))
        return sends

    def planned(self, number: int, batch: Batch) -> bool:
        """Is ``batch`` the ``number``-th batch exactly as pass one read it?"""
        return number < len(self.digests) and self.digests[number] == batch_digest(batch)

    def check_batch(self, number: int, batch: Batch | None, *, display: str, handed_out: bool) -> None:
        """Raise :class:`InputChanged` unless pass two's ``number``-th batch is pass one's
        (``batch`` None: pass two has ended, and must have read as many batches)."""
        same = self.planned(number, batch) if batch is not None else number == len(self.digests)
        if not same:
            raise InputChanged(display, handed_out=handed_out)

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
    digests = []
    for batch in batches:
        digests.append(batch_digest(batch))
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
    found = keys.finish()  # hands the array over
    status = _group_status(found)
    return InputIndex(status, rows, invalid, digests, _kept(found, status == Plan.SEND))


#: Keys handled at a time by the steps that go over all of them: a few MB of temporaries.
_STEP = 1 << 16


def _kept(keys: KeyArray, mask: npt.NDArray[np.bool_]) -> KeyArray:
    """``keys[mask]`` moved to the front of ``keys``' own buffer, a chunk at a time: never a
    second copy of all the keys (the trap: the view keeps the whole buffer until it is dropped)."""
    out = 0
    for lo in range(0, len(keys), _STEP):
        chunk = keys[lo : lo + _STEP][mask[lo : lo + _STEP]]
        keys[out : out + len(chunk)] = chunk
        out += len(chunk)
    return keys[:out]


def batch_digest(batch: Batch) -> bytes:
    """A 16-byte digest of what planning reads of a batch: its first row, its normalised hash,
    classification and media, and which rows are valid.

    Carried columns are left out (they change no decision), so the cost is ~80 bytes of hashing
    per row.  The trap: two reads of the same file must cut the same batches, which they do.
    """
    digest = hashlib.sha256()  # SHA-NI makes it the fastest of hashlib where the CPU has it
    digest.update(batch.start.to_bytes(8, "little"))
    digest.update(np.ascontiguousarray(batch.valid).tobytes())
    for values in (batch.hash, batch.classification, batch.media):
        _update_with_text(digest, values)
    return digest.digest()[:16]


def _update_with_text(digest: hashlib._Hash, values: pa.Array) -> None:
    """Feed a string array's value boundaries and bytes to ``digest`` (slices of a larger array
    feed only their own values, and nulls are told apart from empty strings)."""
    if not pa.types.is_string(values.type):
        values = values.cast(pa.string())
    _, offsets_buf, data_buf = values.buffers()
    n = len(values)
    offsets = (
        np.frombuffer(offsets_buf, np.int32, n + 1, values.offset * 4)
        if offsets_buf
        else np.zeros(1, np.int32)
    )
    digest.update(n.to_bytes(8, "little"))
    digest.update((offsets - offsets[0]).tobytes())
    if data_buf is not None and n:
        digest.update(memoryview(data_buf)[int(offsets[0]) : int(offsets[-1])])
    if values.null_count:
        digest.update(values.is_null().to_numpy(zero_copy_only=False).tobytes())


def _group_status(keys: KeyArray) -> npt.NDArray[np.uint8]:
    """Memory: the keys (34 B/row, kept by the caller for :attr:`InputIndex.send_keys`), the
    sort order (8 B/row) and 3 B/row of flags at the peak (8 B/row more with conflicts)."""
    n = len(keys)
    status = np.zeros(n, np.uint8)
    if n < 2:
        return status
    order = np.argsort(keys, kind="stable")
    same_item = np.empty(n, np.bool_)  # same (media, hash) as the previous key in sorted order
    same_key = np.empty(n, np.bool_)  # same (media, hash, classification)
    same_item[0] = same_key[0] = False
    raw = keys.view(np.uint8).reshape(n, 34)
    step = 1 << 16  # keys compared at a time: bounds the gathered temporaries to a few MB
    for lo in range(1, n, step):
        hi = min(n, lo + step)
        cur, prev = raw[order[lo:hi]], raw[order[lo - 1 : hi - 1]]
        same_item[lo:hi] = (cur[:, :33] == prev[:, :33]).all(axis=1)
        same_key[lo:hi] = same_item[lo:hi] & (cur[:, 33] == prev[:, 33])
    del keys, raw
    sorted_status = np.zeros(n, np.uint8)
    sorted_status[same_item] = Plan.DUPLICATE
    changed = same_item & ~same_key  # a classification change inside one (media, hash)
    del same_key
    if changed.any():
        group = np.cumsum(~same_item)
        sorted_status[np.isin(group, np.unique(group[changed]))] = Plan.CONFLICT
        del group
    del same_item, changed
    status[order] = sorted_status
    return status


def plan_batch(
    batch: Batch,
    first_valid: int,
    index: InputIndex,
    resume: ResumeIndex,
    *,
    retry_rejected: bool,
) -> npt.NDArray[np.uint8]:
    """The :class:`Plan` of every row of ``batch``; ``first_valid`` is its first valid row's ordinal.

    A row the ledger already settled is not sent: ``SKIPPED`` (accepted), ``REJECTED`` (its latest
    trusted line is rejected), ``LOCKED`` (the other classification was accepted; the first time,
    so the verdict gets its line) or ``LOCKED_AGAIN`` (the same, once its rejected line is
    there).  The trap: the recorder counts ``SKIPPED``, ``REJECTED`` and ``LOCKED_AGAIN`` without a
    line (their verdict is in the ledger already), so ``LOCKED`` must stay the only one written.
    """
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
        prior, other = resume.lookup_both(keys)
        valid_plan[send] = _resumed(prior, other, retry_rejected=retry_rejected)
    plan[valid_at] = valid_plan
    return plan


def _resumed(
    prior: npt.NDArray[np.uint8], other: npt.NDArray[np.uint8], *, retry_rejected: bool
) -> npt.NDArray[np.uint8]:
    """The plan of rows the input would send, given what the ledger says of each (``prior``) and
    of its other classification (``other``): the one rule of what a resume settles."""
    decided = np.full(len(prior), Plan.SEND, np.uint8)
    decided[prior == Prior.DONE] = Plan.SKIPPED
    if not retry_rejected:
        decided[prior == Prior.REJECTED] = Plan.REJECTED
    locked = other == Prior.DONE
    decided[locked & (prior != Prior.DONE)] = Plan.LOCKED
    decided[locked & (prior == Prior.REJECTED)] = Plan.LOCKED_AGAIN  # its rejected line is there
    return decided
