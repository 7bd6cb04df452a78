"""Keep pandas out of the command line: it never uses it, yet pyarrow would import it.

pyarrow imports pandas on its first ``pa.array()`` call (to check whether the argument is a
pandas Series), which costs a CLI run start-up time and memory for nothing (BENCHMARKS.md
quotes how much).  :func:`keep_pandas_out` lets that one attempt fail, and pyarrow remembers it.

The trap: pyarrow then treats a pandas object given to ``pa.array`` as a plain sequence until
something converts a DataFrame explicitly (``Table.from_pandas``, ``to_pandas``), which imports
pandas for real.  Hence only the command line's entry point calls this, never the library.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType


class _RefusePandas:
    """A meta path finder under which ``import pandas`` fails."""

    @staticmethod
    def find_spec(
        name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name == "pandas":
            raise ImportError("pandas is kept out of the command line")
        return None


def keep_pandas_out() -> None:
    """Make pyarrow's one automatic import of pandas fail (a no-op once pandas is imported)."""
    if "pandas" in sys.modules:
        return
    import pyarrow as pa

    refuse = _RefusePandas()
    sys.meta_path.insert(0, refuse)
    try:
        pa.array([0])
    finally:
        sys.meta_path.remove(refuse)
