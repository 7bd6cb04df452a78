"""``python -m batch_override`` and the ``batch-override`` script."""

import sys


def main() -> int:
    from .cli.main import main as cli_main
    from .cli.nopandas import keep_pandas_out

    # keep_pandas_out (which imports pyarrow) once a command is chosen, before it uses pyarrow:
    # --version and --help import neither.
    return cli_main(prepare=keep_pandas_out)


if __name__ == "__main__":
    sys.exit(main())
