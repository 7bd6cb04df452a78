"""Compact, exact keys for de-duplication and resume: 34 bytes per row, no Python objects.

A key is the 32 bytes of the SHA-256, then one byte for the media, then one for the
classification (both codes start at 1, so a key never ends in NUL bytes, which numpy's ``S``
dtype would strip).  Sorting such keys groups a (media, hash) together with its classifications.
"""

from __future__ import annotations

import binascii

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from .domain import CLASSIFICATIONS, MEDIA

KEY_DTYPE = np.dtype("S34")
MEDIA_CODES = pa.array(MEDIA)
CLASS_CODES = pa.array(CLASSIFICATIONS)

_HEX_VALUE = np.full(256, 0, dtype=np.uint8)
_HEX_VALUE[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10, dtype=np.uint8)
_HEX_VALUE[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16, dtype=np.uint8)
_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", np.uint8)

KeyArray = npt.NDArray[np.bytes_]


def hex_to_bytes(hashes: pa.Array) -> npt.NDArray[np.uint8]:
    """(n, 32) bytes of n validated 64-character lowercase hex strings (no nulls)."""
    n = len(hashes)
    if n == 0:
        return np.empty((0, 32), np.uint8)
    # The characters are read where pyarrow put them: no cast, which would copy them all.
    if not pa.types.is_string(hashes.type):
        hashes = hashes.cast(pa.large_string())
    width = np.int32 if pa.types.is_string(hashes.type) else np.int64
    offsets = np.frombuffer(hashes.buffers()[1], width)[hashes.offset : hashes.offset + n + 1]
    data = np.frombuffer(hashes.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
    try:  # C speed for the usual case; the table below also takes (and zeroes) non-hex bytes
        return np.frombuffer(binascii.a2b_hex(data.data), np.uint8).reshape(n, 32)
    except (binascii.Error, ValueError):
        pass
    nibbles = _HEX_VALUE[data.reshape(n, 64)]
    out = (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]
    return out.astype(np.uint8, copy=False)


def bytes_to_hex(raw: npt.NDArray[np.uint8]) -> pa.Array:
    """The inverse of :func:`hex_to_bytes`: (n, 32) bytes to n lowercase hex strings."""
    n = raw.shape[0]
    chars = np.empty((n, 64), np.uint8)
    chars[:, 0::2] = _HEX_DIGITS[raw >> 4]
    chars[:, 1::2] = _HEX_DIGITS[raw & 15]
    offsets = np.arange(0, 64 * (n + 1), 64, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(chars.tobytes())])


def codes(values: pa.Array, vocabulary: pa.Array) -> npt.NDArray[np.uint8]:
    """1-based codes of validated values (0 where a value is not in the vocabulary)."""
    index = pc.fill_null(pc.index_in(values, value_set=vocabulary), -1)
    as_int: npt.NDArray[np.int64] = np.asarray(index.to_numpy(zero_copy_only=False), np.int64)
    return (as_int + 1).astype(np.uint8)


def make_keys(hashes: pa.Array, media: pa.Array, classifications: pa.Array) -> KeyArray:
    """Keys of validated rows (every value already checked)."""
    n = len(hashes)
    raw = np.empty((n, 34), np.uint8)
    raw[:, :32] = hex_to_bytes(hashes)
    raw[:, 32] = codes(media, MEDIA_CODES)
    raw[:, 33] = codes(classifications, CLASS_CODES)
    return raw.view(KEY_DTYPE).reshape(n)


class GrowableKeys:
    """An append-only array (of keys, by default) that grows in place.

    ``ndarray.resize`` reallocates with ``realloc``, which for large blocks remaps pages instead
    of copying, so peak memory stays near the size used rather than twice it (a list of chunks
    joined by ``np.concatenate`` would need both copies at once).  The trap: ``resize`` zero-fills
    what it adds, so spare capacity is resident memory; growing by 1/8 at a time keeps it small.
    """

    __slots__ = ("_array", "_size")

    def __init__(self, capacity: int = 1 << 16, dtype: np.dtype[np.bytes_] = KEY_DTYPE) -> None:
        self._array: KeyArray | None = np.empty(capacity, dtype)
        self._size = 0

    def extend(self, keys: KeyArray) -> None:
        if self._array is None:
            raise RuntimeError("GrowableKeys.extend() after finish(): the keys were handed over")
        need = self._size + len(keys)
        if need > len(self._array):
            self._array.resize(max(need, len(self._array) + len(self._array) // 8), refcheck=False)
        self._array[self._size : need] = keys
        self._size = need

    def finish(self) -> KeyArray:
        """The keys; the builder lets go of them, so the caller alone decides when they are freed.

        Once only: a second call raises ``RuntimeError`` (the builder no longer holds the keys, and
        keeping them to hand out again is what letting go avoids), as does ``extend`` after it.
        """
        if self._array is None:
            raise RuntimeError("GrowableKeys.finish() called twice: the keys were handed over")
        array, self._array = self._array, None
        array.resize(self._size, refcheck=False)
        return array
