"""The benchmark suite of batch-override: ``make bench`` (or ``python -m bench.run``).

Three benchmarks, each against a baseline measured in the same run (see BENCHMARKS.md):

* :mod:`bench.pacing`: how much of a fixed-window throttle the job uses, and how often it is answered 429;
* :mod:`bench.overhead`: rows per second and client CPU per 1,000 rows against an unthrottled emulator;
* :mod:`bench.scale`: peak memory and wall time of a dry run over millions of rows, and resume time.

Every server and client runs in its own process, started and stopped by PID (:mod:`bench.procs`).
"""
