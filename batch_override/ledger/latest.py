"""The latest entry of each key, from entries taken block by block: resume's sort.

An entry is 37 bytes (:data:`ENTRY_DTYPE`): a 34-byte key of :mod:`keys`, then two bytes of
run ordinal (big-endian) and one verdict byte, so plain byte order is by key, then run, then
verdict.  :class:`LatestEntries` keeps, per key, the byte-greatest entry: the latest run's, and
within one run the greatest verdict byte (an entry's bytes alone decide: identical entries are
interchangeable, and nothing depends on the order the lines came in).

How: each block is spread over ``2**bits`` buckets by the top bits of its hash, and at the end
each bucket (about 2**16 entries, which fit in the CPU's cache) is sorted as uint64 numbers (the
entry's first 8 bytes past the bucket's bits, with its position in the low bits): numpy sorts
those about 9x faster than 37-byte strings.  Only entries whose numbers tie (the same hash from
several runs or classifications, and the rare different hashes sharing a prefix) are then put in
byte order, and only they can share a key.

Memory: ~37 bytes per entry at the peak, in the buckets or in the output, plus a few buckets'
temporaries (41-42 bytes per entry measured on 4M).  The trap this avoids: the output is written
while the buckets are released, so a released bucket must go back to the system at once.  Once a
process has freed a larger block, glibc's ``malloc`` serves smaller ones from its heap and keeps
them when they are freed, and then buckets and output are resident together (77 bytes per entry
measured); buckets therefore live in anonymous memory maps, unmapped when released, whose
untouched capacity costs nothing.
"""

from __future__ import annotations

import mmap
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt

ENTRY_DTYPE = np.dtype("S37")
ENTRY_SIZE = ENTRY_DTYPE.itemsize
Entries = npt.NDArray[np.bytes_]
Positions = npt.NDArray[np.intp]
Mask = npt.NDArray[np.bool_]

#: About this many entries per bucket: a bucket's entries and its sort keys stay in the cache.
BUCKET_ENTRIES = 1 << 16
#: Threads that sort buckets at the end (numpy sorts and copies without the GIL).
_WORKERS = max(1, min(4, os.cpu_count() or 1))
#: At most 2**MAX_BITS buckets: a block is copied into each bucket by its own call, and the top
#: byte of the hash is what spreads them.
MAX_BITS = 8

#: An entry's first 8 bytes as one big-endian number (the same order as the bytes).
_HEAD = np.dtype({"names": ["head"], "formats": [">u8"], "offsets": [0], "itemsize": ENTRY_SIZE})
#: An entry's key seen as four 8-byte words and two bytes: five vectorised comparisons instead
#: of one over 34 separate bytes (and its 34-byte-per-entry temporary).
_KEY_WORDS = np.dtype(
    {
        "names": ["a", "b", "c", "d", "e"],
        "formats": ["<u8", "<u8", "<u8", "<u8", "<u2"],
        "offsets": [0, 8, 16, 24, 32],
        "itemsize": ENTRY_SIZE,
    }
)
_HASH_WORDS = ("a", "b", "c", "d")
#: An entry's last 8 bytes as one big-endian number: of which the last 5 (_TAIL_BITS) are its
#: media, classification, run ordinal and verdict.
_TAIL = np.dtype({"names": ["tail"], "formats": [">u8"], "offsets": [ENTRY_SIZE - 8], "itemsize": ENTRY_SIZE})
_TAIL_BITS = 40


def bucket_bits(expected: int) -> int:
    """How many top bits of the hash spread ``expected`` entries over buckets of ~BUCKET_ENTRIES."""
    return min(MAX_BITS, max(0, (max(1, expected) - 1) // BUCKET_ENTRIES).bit_length())


class LatestEntries:
    """Entries added block by block; :meth:`finish` returns each key's byte-greatest entry, sorted.

    ``expected`` (an estimate of how many entries will come) sizes the buckets; a wrong guess
    costs speed, never correctness.  Finish once: the buckets are released as they are read.
    """

    __slots__ = ("_bits", "_maps", "_sizes")

    def __init__(self, expected: int, bits: int | None = None) -> None:
        self._bits = bucket_bits(expected) if bits is None else bits
        count = 1 << self._bits
        capacity = expected // count + expected // (4 * count) + 1024  # untouched: no memory
        self._maps: list[mmap.mmap | None] = [_new_map(capacity) for _ in range(count)]
        self._sizes = [0] * count

    def add(self, block: Entries) -> None:
        """Copy ``block``'s entries into their buckets (the caller may reuse ``block``)."""
        if not len(block):
            return
        if self._bits == 0:
            self._append(0, block, None)
            return
        first = block.view(np.uint8).reshape(-1, ENTRY_SIZE)[:, 0] >> (8 - self._bits)
        order = np.argsort(first, kind="stable")  # a radix sort for one byte: linear
        bounds = np.zeros((1 << self._bits) + 1, np.intp)
        np.cumsum(np.bincount(first, minlength=1 << self._bits), out=bounds[1:])
        for bucket in np.flatnonzero(bounds[1:] > bounds[:-1]).tolist():
            self._append(bucket, block, order[bounds[bucket] : bounds[bucket + 1]])

    def _append(self, bucket: int, block: Entries, which: Positions | None) -> None:
        mapped = self._maps[bucket]
        if mapped is None:
            raise RuntimeError("LatestEntries.add() after finish()")
        count = len(block) if which is None else len(which)
        at, need = self._sizes[bucket], self._sizes[bucket] + count
        if need * ENTRY_SIZE > len(mapped):
            mapped.resize(2 * need * ENTRY_SIZE)  # mremap: no copy (no view of it is alive here)
        target = np.frombuffer(mapped, ENTRY_DTYPE, count=count, offset=at * ENTRY_SIZE)
        if which is None:
            target[:] = block
        else:
            np.take(block, which, out=target, mode="clip")  # "clip": no buffer (the indices are valid)
        self._sizes[bucket] = need

    def finish(self, *, first_run: bool) -> tuple[Entries, npt.NDArray[np.uint16] | None]:
        """Each key's byte-greatest entry in byte order, and with ``first_run`` the smallest run
        ordinal among each key's entries (bytes 34-35) beside it."""
        maps = [m for m in self._maps if m is not None]
        if len(maps) < len(self._maps):
            raise RuntimeError("LatestEntries.finish() called twice")
        self._maps = [None] * len(maps)
        sizes, bits = self._sizes, self._bits
        starts = np.concatenate([[0], np.cumsum(sizes)]).tolist()
        out = np.empty(starts[-1], ENTRY_DTYPE)
        firsts = np.empty(len(out), np.uint16) if first_run else None

        def copy_bucket(bucket: int) -> int:
            kept = _copy_latest(maps[bucket], sizes[bucket], bits, out, firsts, starts[bucket])
            maps[bucket].close()  # no view of it is left: its pages go back to the system now
            return kept

        # Each bucket's entries go where they start, so buckets are independent: threads sort
        # and copy them on every core (numpy lets go of the GIL), and a busy machine loses nothing.
        with ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="resume-sort") as pool:
            kept = list(pool.map(copy_bucket, range(len(maps))))
        write = 0
        for start, count in zip(starts, kept, strict=False):
            if write < start:  # keys seen twice left a gap: close it
                out[write : write + count] = out[start : start + count]
                if firsts is not None:
                    firsts[write : write + count] = firsts[start : start + count]
            write += count
        out.resize(write, refcheck=False)
        if firsts is not None:
            firsts.resize(write, refcheck=False)
        return out, firsts


def _copy_latest(
    mapped: mmap.mmap, size: int, bits: int, out: Entries, firsts: npt.NDArray[np.uint16] | None, write: int
) -> int:
    """Write one bucket's latest entries (and first runs) at ``write``; returns how many."""
    if not size:
        return 0
    entries = np.frombuffer(mapped, ENTRY_DTYPE, count=size)
    last, first = _latest(entries, bits)
    end = write + len(last)
    np.take(entries, last, out=out[write:end], mode="clip")
    if firsts is not None:
        raw = entries.view(np.uint8).reshape(size, ENTRY_SIZE)
        firsts[write:end] = raw[first, 34].astype(np.uint16) << 8 | raw[first, 35]
    return len(last)


def _new_map(entries: int) -> mmap.mmap:
    return mmap.mmap(-1, entries * ENTRY_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


def _latest(entries: Entries, bits: int) -> tuple[Positions, Positions]:
    """Positions of each key's last and first entry in byte order (keys in byte order too)."""
    order, same_next = _byte_order(entries, bits)
    if same_next is None:  # no two entries share a key: each is its key's first and last
        return order, order
    is_last = ~same_next
    is_first = np.ones(len(entries), np.bool_)
    is_first[1:] = is_last[:-1]
    return order[is_last], order[is_first]


def _byte_order(entries: Entries, bits: int) -> tuple[Positions, Mask | None]:
    """The permutation that sorts one bucket's entries by their bytes, and for each position in
    that order whether the next entry holds the same key (None: no two share a key).

    The number is the entry's first 8 bytes, less the ``bits`` every entry of the bucket shares,
    with the entry's position in the low bits: one uint64 sort, and the positions come back
    with it.  Tied numbers are ordered afterwards by the entries' remaining bytes; only they can
    share a key (a key fixes its first 8 bytes).
    """
    m = len(entries)
    position_bits = max(1, (m - 1).bit_length())
    low = np.uint64((1 << position_bits) - 1)
    numbers = entries.view(_HEAD)["head"].astype(np.uint64)
    if bits:
        numbers <<= np.uint64(bits)
    numbers &= ~low
    numbers |= np.arange(m, dtype=np.uint64)
    numbers.sort()
    order = (numbers & low).astype(np.intp)
    numbers >>= np.uint64(position_bits)
    tied = numbers[1:] == numbers[:-1]
    if not tied.any():
        return order, None
    same_next = np.zeros(m, np.bool_)
    _order_ties(entries, order, tied, same_next)
    return order, same_next


def _order_ties(entries: Entries, order: Positions, tied: Mask, same_next: Mask) -> None:
    """Put each run of tied positions of ``order`` in the byte order of its entries, and mark in
    ``same_next`` the tied positions whose next entry holds the same key; both in place.

    Byte order refines the numbers' order, so sorting all tied entries together keeps every run
    in its own positions.  The usual tie is one hash (several runs, or both classifications):
    then the run's rank and the entries' last 5 bytes make one uint64 to sort by; otherwise the
    37-byte strings are compared.
    """
    member = np.zeros(len(order), np.bool_)
    member[:-1] = tied
    member[1:] |= tied
    at = np.flatnonzero(member)
    which = order[at]
    starts = np.ones(len(at), np.bool_)
    starts[1:] = ~tied[at[1:] - 1]
    ties = entries[which]
    words = ties.view(_KEY_WORDS)
    same_hash = np.ones(len(at) - 1, np.bool_)  # as its predecessor's
    for name in _HASH_WORDS:
        same_hash &= words[name][1:] == words[name][:-1]
    one_hash = same_hash | starts[1:]  # every run of ties holds one hash
    rank = np.cumsum(starts) - 1
    if one_hash.all() and int(rank[-1]) < 1 << (64 - _TAIL_BITS):
        number = ties.view(_TAIL)["tail"] & np.uint64((1 << _TAIL_BITS) - 1)
        number |= rank.astype(np.uint64) << np.uint64(_TAIL_BITS)
        by_bytes = np.argsort(number)  # equal numbers: identical entries
        key = number[by_bytes] >> np.uint64(24)  # the run's rank, media and classification
        same = key[1:] == key[:-1]
    else:
        by_bytes = np.argsort(ties, kind="stable")
        ordered = ties[by_bytes]
        same = _same_key(ordered[1:], ordered[:-1])  # across runs: different hashes, never
    order[at] = which[by_bytes]
    same_next[at[:-1]] = same


def _same_key(entries: np.ndarray[Any, Any], others: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Element-wise: does each entry hold the same 34-byte key as its counterpart?"""
    a, b = entries.view(_KEY_WORDS), others.view(_KEY_WORDS)
    same: np.ndarray[Any, Any] = a["a"] == b["a"]
    for name in ("b", "c", "d", "e"):
        same &= a[name] == b[name]
    return same
