"""The shipped alert rules: valid for Prometheus, and each one seen firing and not firing.

``promtool`` (Debian's ``prometheus``, installed by ``.ci/run``) checks ``deploy/prometheus/alerts.yml``
and runs its unit tests, ``tests/cli/data/alerts_test.yml`` (samples one minute apart).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from batch_override.errors import ExitCode, end_reason
from tests.binaries import debian_binary
from tests.support import REPO

RULES = REPO / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = Path(__file__).parent / "data" / "alerts_test.yml"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = debian_binary("promtool", "prometheus")
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120)


def _alert_names() -> list[str]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_check_rules_accepts_every_rule() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alert_names())} rules found" in result.stdout


def test_promtool_test_rules_passes_with_one_minute_samples() -> None:
    result = _promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_rule_tests_see_each_alert_both_firing_and_not_firing() -> None:
    spec = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    assert [(RULE_TESTS.parent / p).resolve() for p in spec["rule_files"]] == [RULES.resolve()]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in spec["tests"]:
        assert case["interval"] == "1m"
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    names = set(_alert_names())
    assert len(names) == 6
    assert firing == names and quiet == names


def readme_alerts_by_exit_code() -> dict[int, set[str]]:
    """Exit code -> the alerts the README's exit codes table says it fires ("—": none)."""
    text = REPO.joinpath("README.md").read_text(encoding="utf-8")
    table = text.split("**Exit codes**", 1)[1].split("\n\n", 2)[1]
    out: dict[int, set[str]] = {}
    for row in table.splitlines()[2:]:
        codes, _, alert = (cell.strip() for cell in row.strip("|").split(" | "))
        for code in codes.split(" / "):
            out[int(code)] = set(re.findall(r"`(BatchOverride\w+)`", alert))
    return out


def test_the_readme_names_the_alert_of_every_exit_code() -> None:
    documented = readme_alerts_by_exit_code()
    assert set(documented) == {int(code) for code in ExitCode}
    assert set().union(*documented.values()) <= set(_alert_names())
    # Every code that needs a person pages: bad input or options (2) included.
    needs_a_person = {
        ExitCode.USAGE,
        ExitCode.ABORTED,
        ExitCode.OUTAGE,
        ExitCode.LEDGER_WRITE,
        ExitCode.INTERNAL,
    }
    assert {
        code for code, alerts in documented.items() if "BatchOverrideRunFailed" in alerts
    } == needs_a_person


def test_promtool_fires_for_each_exit_code_exactly_the_alerts_the_readme_names(tmp_path: Path) -> None:
    """One rule test per exit code: a run's last metrics say that code (with the reason the job
    writes for it), and ALERTS holds exactly the alerts the README's table names."""
    cases = []
    for code, alerts in sorted(readme_alerts_by_exit_code().items()):
        labels = 'alertstate="firing",job="nightly"'
        firing = [
            {"labels": f'ALERTS{{alertname="{name}",{labels},severity="{_severity(name)}"}}', "value": 1}
            for name in sorted(alerts)
        ]
        reason = end_reason(code) if code != ExitCode.LOCKED else None
        series = [{"series": 'batch_override_exit_code{job="nightly"}', "values": f"{code}x5"}]
        if reason is not None:
            series.append(
                {"series": f'batch_override_exit_reason{{job="nightly",reason="{reason}"}}', "values": "1x5"}
            )
        check = {"expr": 'ALERTS{alertstate="firing"}', "eval_time": "2m", "exp_samples": firing}
        cases.append({"interval": "1m", "input_series": series, "promql_expr_test": [check]})
    spec = {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": cases}
    path = tmp_path / "exit_codes_test.yml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    result = _promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def _severity(alert: str) -> str:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    (rule,) = [r for g in groups for r in g["rules"] if r.get("alert") == alert]
    return str(rule["labels"]["severity"])
