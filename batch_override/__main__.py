"""``python -m batch_override`` and the ``batch-override`` script."""

import sys


def main() -> int:
    from .cli.nopandas import keep_pandas_out

    keep_pandas_out()  # before the command line's modules import pyarrow and use it
    from .cli.main import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
