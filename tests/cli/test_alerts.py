"""The shipped alert rules: valid for Prometheus, and each one seen firing and not firing.

``promtool`` (Debian's ``prometheus``, installed by ``.ci/run``) checks ``deploy/prometheus/alerts.yml``
and runs its unit tests, ``tests/cli/data/alerts_test.yml`` (samples one minute apart).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

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
    assert len(names) == 5
    assert firing == names and quiet == names
