"""The API's vocabulary: what a row may say (media, classifications, a hash) and what the columns
are called, and the label map (``--label-map``: other words for the classifications).  Every stage
that reads, checks, keys or sends a row takes these names from here.

The trap: the order of :data:`MEDIA` and :data:`CLASSIFICATIONS` is part of the de-duplication
keys (:mod:`.keys` codes each by its position), so a new value goes at the end, never between.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import UsageError

MEDIA = ("video", "image", "audio")
#: The override endpoint's path segment for each media (``/api/{endpoint}/{hash}/override``).
ENDPOINTS = {"image": "classification", "video": "classification_video", "audio": "classification_audio"}
CLASSIFICATIONS = ("human", "artificial")
#: A valid hash, once normalised: a SHA-256 as 64 lowercase hex digits.
HASH_PATTERN = "^[0-9a-f]{64}$"
#: The input's column names unless told otherwise (a media column is optional).
HASH_COLUMN, CLASSIFICATION_COLUMN, MEDIA_COLUMN = "hash", "classification", "media"


def fold_case(text: str) -> str:
    """``text`` lowercased by Arrow's ``utf8_lower``, the kernel that lowercases the input's cells.

    The trap it avoids: Python's ``str.lower`` differs from it (Turkish ``İ`` becomes ``i`` plus a
    combining dot, a Greek final ``Σ`` becomes ``ς``), so a word lowercased by Python for the label
    map never matched the same word in a cell.  Map and cells must share one rule.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    return str(pc.utf8_lower(pa.scalar(text, pa.string())).as_py())


#: A label map as :class:`RunConfig` holds it: (word, classification) pairs, words folded.
LabelMap = tuple[tuple[str, str], ...]


def parse_label_map(text: str) -> LabelMap:
    """``ai=artificial,real=human`` -> pairs (see :func:`label_pairs`)."""
    pairs: list[tuple[str, str]] = []
    for part in text.split(","):
        if not part.strip():
            continue
        word, sep, target = part.partition("=")
        if not sep or not word.strip():
            raise UsageError(f"--label-map {text!r}: expected WORD=human|artificial pairs, comma-separated")
        pairs.append((word, target))
    return label_pairs(pairs)


def label_pairs(pairs: Iterable[object]) -> LabelMap:
    """(word, classification) pairs, checked: words are matched after trimming and lowercasing
    (:func:`fold_case`, as the cells are), each word means one classification.  The text form
    (:func:`parse_label_map`) and a mapping's items come here alike."""
    out: list[tuple[str, str]] = []
    for pair in pairs:
        if not (isinstance(pair, tuple | list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise UsageError(f"--label-map: expected WORD=human|artificial pairs (got {pair!r:.40})")
        word, target = fold_case(pair[0].strip()), pair[1].strip().lower()
        if not word:
            raise UsageError("--label-map: a word is empty")
        if target not in CLASSIFICATIONS:
            raise UsageError(f"--label-map: {target!r} is not human or artificial")
        if any(w == word and t != target for w, t in out):  # one mapping: a word means one thing
            raise UsageError(f"--label-map: {word!r} is mapped to both human and artificial")
        out.append((word, target))
    return tuple(out)
