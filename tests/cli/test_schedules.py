"""The scheduling examples users copy (jobs/crontab.example, jobs/batch-override-nightly.{service,timer}):
valid syntax, and a command the CLI accepts, with the key never inline."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from batch_override.cli import main as cli
from batch_override.cli.jobfile import load_job
from batch_override.cli.options import JOB_KEYS, config_from
from batch_override.config import RunConfig
from tests.support import REPO

JOBS = REPO / "jobs"
CRONTAB = JOBS / "crontab.example"
SERVICE = JOBS / "batch-override-nightly.service"
TIMER = JOBS / "batch-override-nightly.timer"


def _parse_run(argv: list[str]) -> object:
    """``argv`` (after the program) parsed by the CLI's own parser: a typo'd flag fails the test."""
    try:
        return cli.build_parser().parse_args(argv)
    except SystemExit as exc:  # the parser's one-line usage error
        raise AssertionError(f"the CLI refuses {shlex.join(argv)!r}") from exc


def _check_run_command(argv: list[str]) -> object:
    """A ``batch-override run --job ...`` command that is quiet unless something failed and reads
    the key from a file; returns the parsed arguments."""
    assert Path(argv[0]).name == "batch-override", argv
    args = _parse_run(argv[1:])
    assert getattr(args, "command", None) == "run"
    assert args.job, "the schedule runs a job file"  # type: ignore[attr-defined]
    # The job file it names is one of ours (installed elsewhere), and loads.
    shipped = JOBS / Path(args.job).name  # type: ignore[attr-defined]
    assert shipped.exists(), f"{args.job} names no file in jobs/"  # type: ignore[attr-defined]
    values = load_job(shipped, JOB_KEYS)
    assert values.get("input") and values.get("ledger")
    assert getattr(args, "quiet", False), "--quiet: cron and the journal get output only on failure"
    assert getattr(args, "api_key_file", None), "the key comes from a file"
    return args


# -- cron ------------------------------------------------------------------------------------------
_CRON_FIELDS = (  # name, low, high, names
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_ENV_LINE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\s*=")


def _cron_value(text: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if text.lower() in names:
        return names.index(text.lower()) + (1 if low == 1 else 0)
    assert text.isdigit(), text
    value = int(text)
    assert low <= value <= high, f"{value} not in {low}-{high}"
    return value


def _cron_field(text: str, low: int, high: int, names: tuple[str, ...]) -> set[int]:
    """The values a crontab time field matches (lists, ranges, steps, names, '*')."""
    out: set[int] = set()
    for item in text.split(","):
        span, _, step = item.partition("/")
        every = int(step) if step else 1
        assert every >= 1, item
        if span == "*":
            first, last = low, high
        else:
            a, _, b = span.partition("-")
            first = _cron_value(a, low, high, names)
            last = _cron_value(b, low, high, names) if b else (high if step else first)
            assert first <= last, item
        out |= set(range(first, last + 1, every))
    return out


def _crontab_entries() -> tuple[dict[str, str], list[tuple[list[set[int]], str]]]:
    env: dict[str, str] = {}
    entries = []
    for raw in CRONTAB.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if _ENV_LINE.match(line):
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip()
            continue
        parts = line.split(None, 5)
        assert len(parts) == 6, f"not five time fields and a command: {line!r}"
        fields = [
            _cron_field(p, lo, hi, names)
            for p, (_, lo, hi, names) in zip(parts[:5], _CRON_FIELDS, strict=True)
        ]
        entries.append((fields, parts[5]))
    return env, entries


def test_the_crontab_line_has_five_valid_time_fields_and_runs_once_a_night() -> None:
    env, entries = _crontab_entries()
    assert len(entries) == 1
    (minute, hour, day, month, weekday), _ = entries[0]
    assert len(minute) == 1 and len(hour) == 1, "once a day"
    assert (day, month) == (set(range(1, 32)), set(range(1, 13)))
    assert weekday == set(range(8))
    assert env.get("MAILTO"), "cron mails the output (only failures print any) to MAILTO"


def test_the_crontab_command_cds_to_a_directory_and_runs_the_nightly_job_quietly() -> None:
    _, entries = _crontab_entries()
    command = entries[0][1]
    assert "%" not in command.replace("\\%", ""), "cron turns an unescaped % into a newline"
    words = shlex.split(command)
    steps = [list(group) for group in _split(words, "&&")]
    assert steps[0][0] == "cd" and Path(steps[0][1]).is_absolute(), "cd to a working directory first"
    run = next(s for s in steps if Path(s[0]).name == "batch-override")
    assert Path(run[0]).is_absolute(), "cron's PATH is bare: name the program by its full path"
    _check_run_command(run)
    assert "flock" not in words, "the job locks its ledger itself"


def test_the_crontab_never_holds_the_key() -> None:
    text = CRONTAB.read_text(encoding="utf-8")
    live = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not any("IDENTIFAI_API_KEY" in line for line in live)
    assert "--api-key " not in text


def _split(words: list[str], sep: str) -> list[list[str]]:
    out: list[list[str]] = [[]]
    for word in words:
        if word == sep:
            out.append([])
        else:
            out[-1].append(word)
    return out


# -- systemd -----------------------------------------------------------------------------------------
def _unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file's sections, each key with all its values (systemd allows repeats), continuation
    lines joined; configparser would refuse the repeated ReadWritePaths."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            assert line.endswith("]"), line
            current = sections.setdefault(line[1:-1], defaultdict(list))
            continue
        assert current is not None, f"{path.name}: a setting before any section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
        current[key.strip()].append(value.strip())
    assert not pending, f"{path.name}: ends in a continuation"
    return sections


def _one(section: dict[str, list[str]], key: str) -> str:
    values = section.get(key, [])
    assert len(values) == 1, f"{key}: expected one value, got {values}"
    return values[0]


def _exec_argv(service: dict[str, dict[str, list[str]]]) -> list[str]:
    line = _one(service["Service"], "ExecStart").lstrip("-@+!:")
    return shlex.split(line)


def test_the_service_is_a_oneshot_run_of_the_nightly_job() -> None:
    unit = _unit(SERVICE)
    assert unit["Unit"]["Description"]
    service = unit["Service"]
    assert _one(service, "Type") == "oneshot"
    assert Path(_one(service, "WorkingDirectory")).is_absolute()
    argv = _exec_argv(unit)
    assert Path(argv[0]).is_absolute(), "systemd wants the program's full path"
    _check_run_command([a.replace("%d", "/run/credentials/x") for a in argv])


def test_the_service_gets_the_key_from_a_credential_or_file_never_inline() -> None:
    unit = _unit(SERVICE)
    service = unit["Service"]
    text = SERVICE.read_text(encoding="utf-8")
    live = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not any("IDENTIFAI_API_KEY=" in line for line in live), "the key inline"
    assert not any(value.startswith("IDENTIFAI_API_KEY") for value in service.get("Environment", []))
    argv = _exec_argv(unit)
    key_file = argv[argv.index("--api-key-file") + 1]
    credentials = [c.partition(":") for c in service.get("LoadCredential", [])]
    if credentials:
        names = {name for name, _, _ in credentials}
        assert any(key_file in (f"%d/{n}", f"${{CREDENTIALS_DIRECTORY}}/{n}") for n in names), key_file
        assert all(Path(source).is_absolute() for _, _, source in credentials)
    else:
        assert service.get("EnvironmentFile"), "LoadCredential= or EnvironmentFile= supplies the key"


def test_the_service_is_hardened_and_may_write_only_the_ledger_and_metrics_directories() -> None:
    unit = _unit(SERVICE)
    service = unit["Service"]
    assert _one(service, "NoNewPrivileges") in ("yes", "true", "1", "on")
    assert _one(service, "ProtectSystem") == "strict"
    writable = {Path(p) for value in service.get("ReadWritePaths", []) for p in value.split()}
    argv = _exec_argv(unit)
    ledger = Path(load_job(JOBS / Path(argv[argv.index("--job") + 1]).name, JOB_KEYS)["ledger"])
    # The ledger, its run log and its lock live side by side: the whole directory must be writable.
    assert ledger.parent in writable, f"{ledger.parent} not in ReadWritePaths {sorted(map(str, writable))}"
    if "--metrics-file" in argv:
        assert Path(argv[argv.index("--metrics-file") + 1]).parent in writable


_ON_CALENDAR = re.compile(r"^(?:\*|\d{4})-(?:\*|\d{1,2})-(?:\*|\d{1,2}) (\d{1,2}):(\d{2})(?::(\d{2}))?$")
_TIMESPAN = re.compile(r"^(\d+\s*(us|ms|s|sec|seconds?|m|min|minutes?|h|hr|hours?|d|days?)?\s*)+$")


def test_the_timer_fires_nightly_persistently_with_a_random_delay() -> None:
    timer = _unit(TIMER)
    section = timer["Timer"]
    match = _ON_CALENDAR.match(_one(section, "OnCalendar"))
    assert match, section["OnCalendar"]
    hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
    assert hour <= 23 and minute <= 59 and second <= 59
    assert _one(section, "Persistent") in ("true", "yes", "1", "on")
    assert _TIMESPAN.match(_one(section, "RandomizedDelaySec"))
    assert _one(timer["Install"], "WantedBy") == "timers.target"
    started = section.get("Unit", [TIMER.with_suffix(".service").name])[0]
    assert (JOBS / started).exists(), f"the timer starts {started}, which is not in jobs/"


def test_cron_and_the_timer_run_at_the_same_time_of_night() -> None:
    _, entries = _crontab_entries()
    (minute, hour, *_), _ = entries[0]
    match = _ON_CALENDAR.match(_one(_unit(TIMER)["Timer"], "OnCalendar"))
    assert match
    assert (hour, minute) == ({int(match[1])}, {int(match[2])})


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    # verify checks that ExecStart's program exists: point it at this checkout's entry point.
    program = Path(sys.executable).parent / "batch-override"
    if not program.exists():
        pytest.skip(f"{program} is not installed (pip install -e .)")
    installed = _exec_argv(_unit(SERVICE))[0]
    for unit in (SERVICE, TIMER):
        text = unit.read_text(encoding="utf-8").replace(installed, str(program))
        (tmp_path / unit.name).write_text(text, encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / SERVICE.name), str(tmp_path / TIMER.name)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    ours = [line for line in result.stderr.splitlines() if "batch-override-nightly" in line]
    assert result.returncode == 0 and not ours, result.stderr
    calendar = subprocess.run(
        ["systemd-analyze", "calendar", _one(_unit(TIMER)["Timer"], "OnCalendar")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert calendar.returncode == 0, calendar.stderr


def test_the_nightly_schedules_stop_the_run_before_business_hours() -> None:
    _, entries = _crontab_entries()
    cron = _parse_run(shlex.split(entries[0][1].split("&&")[-1])[1:])
    service = _parse_run([a.replace("%d", "/run/credentials/x") for a in _exec_argv(_unit(SERVICE))][1:])
    for args in (cron, service):
        stop_at = args.stop_at  # type: ignore[attr-defined]
        assert (stop_at.hour, stop_at.minute) == (6, 0)
    match = _ON_CALENDAR.match(_one(_unit(TIMER)["Timer"], "OnCalendar"))
    assert match and int(match[1]) >= 18, "the window starts in the evening"
    # TimeoutStartSec is only a backstop: it must not end the window before --stop-at does.
    timeout = _one(_unit(SERVICE)["Service"], "TimeoutStartSec")
    assert timeout.endswith("h") and int(timeout[:-1]) >= 24 - int(match[1]) + 6 + 1


# -- one set of OK outcomes --------------------------------------------------------------------------
#: What every shipped nightly file counts as OK: a row not yet classified is tomorrow's work.
NIGHTLY_OK = frozenset({"submitted", "already_submitted", "duplicate", "skipped", "not_ready"})
CRONJOB = REPO / "deploy" / "k8s" / "cronjob-nightly.yaml"


def _effective(argv: list[str]) -> RunConfig:
    """The config a ``run`` command line really runs with, its ``--job`` read from jobs/."""
    args = _parse_run(argv)
    if getattr(args, "job", None):
        args.job = str(JOBS / Path(args.job).name)  # type: ignore[attr-defined]
    config, _ = config_from(args)  # type: ignore[arg-type]
    return config


def _readme_nightly_command() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    (line,) = [ln for ln in text.splitlines() if ln.startswith("$ ") and "jobs/nightly.toml" in ln]
    return shlex.split(line[2:].partition("#")[0])[1:]


def _nightly_commands() -> dict[str, list[str]]:
    _, entries = _crontab_entries()
    words = shlex.split(entries[0][1])
    cron = next(s for s in _split(words, "&&") if Path(s[0]).name == "batch-override")
    service = _exec_argv(_unit(SERVICE))
    (cronjob,) = [d for d in yaml.safe_load_all(CRONJOB.read_text(encoding="utf-8")) if d]
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return {
        "jobs/nightly.toml": ["run", "--job", "nightly.toml"],
        "jobs/crontab.example": cron[1:],
        "jobs/batch-override-nightly.service": [a.replace("%d", "/run/credentials/x") for a in service[1:]],
        "deploy/k8s/cronjob-nightly.yaml": container["args"],
        "README.md": _readme_nightly_command(),
    }


@pytest.mark.parametrize("name", list(_nightly_commands()))
def test_every_shipped_nightly_run_counts_the_same_outcomes_as_ok(name: str) -> None:
    config = _effective(_nightly_commands()[name])
    assert config.ok_outcomes == NIGHTLY_OK, name
    assert config.give_up_after_days is not None, f"{name}: a row never classified is retried forever"


@pytest.mark.parametrize(
    "path",
    [JOBS / "nightly.toml", CRONTAB, SERVICE, TIMER, CRONJOB, REPO / "README.md"],
    ids=lambda p: p.name,
)
def test_every_list_of_ok_outcomes_the_nightly_files_spell_out_is_the_same(path: Path) -> None:
    # Comments too: a comment telling the reader to add not_ready where it already is misleads.
    text = path.read_text(encoding="utf-8")
    assert "add not_ready" not in text
    for listed in re.findall(r"submitted,already_submitted[a-z_,]*", text):
        assert frozenset(listed.split(",")) == NIGHTLY_OK, f"{path.name}: {listed}"


def test_the_nightly_job_file_allows_a_quiet_day() -> None:
    assert _effective(["run", "--job", "nightly.toml"]).allow_empty is True
    assert _effective(_nightly_commands()["deploy/k8s/cronjob-nightly.yaml"]).allow_empty is True
