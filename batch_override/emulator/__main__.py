"""``python -m batch_override.emulator``: the same as ``batch-override emulator``."""

from batch_override.emulator.cli import main

raise SystemExit(main())
