"""A bundled emulator of the identifAI override API, for tests, the demo and benchmarks.

It answers every documented response of the three override endpoints, throttles like Laravel,
and can inject reproducible faults. The batch job never imports it; tests and the demo do::

    from batch_override.emulator import Emulator, EmulatorConfig

    async with Emulator(EmulatorConfig(rate_limit=(60, 60.0), unknown="classified")) as emulator:
        ...  # point the client at emulator.url, then check emulator.stats() / emulator.overrides()

From a shell: ``python -m batch_override.emulator --help``.
"""

from batch_override.emulator.config import DEMO_API_KEY, EmulatorConfig
from batch_override.emulator.server import Emulator, build_app
from batch_override.emulator.state import load_state_csv

__all__ = ["DEMO_API_KEY", "Emulator", "EmulatorConfig", "build_app", "load_state_csv"]
