"""``python -m bench.scan FILE.csv``: stream a CSV with pyarrow, every column as text, and count its rows.

The floor for reading an input: the same reader the job uses (``pyarrow.csv.open_csv``, 4 MiB
blocks, all columns as strings), with nothing done to the rows.
"""

from __future__ import annotations

import sys

import pyarrow as pa
import pyarrow.csv as pacsv


def count_rows(path: str) -> int:
    with open(path, encoding="utf-8") as fh:
        names = fh.readline().rstrip("\n").split(",")
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=1 << 22),
        convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names}),
    )
    return sum(batch.num_rows for batch in reader)


if __name__ == "__main__":
    print(count_rows(sys.argv[1]))
