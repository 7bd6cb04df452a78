"""deploy/k8s/: schema-valid for two Kubernetes versions, every convention the README promises,
and a command line the job itself accepts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from batch_override.cli.main import build_parser
from batch_override.cli.options import config_from
from batch_override.errors import ExitCode
from tests.support import REPO

K8S = REPO / "deploy" / "k8s"
#: Two supported Kubernetes versions the manifests must validate against, strictly.
VERSIONS = ("1.36.0", "1.37.0")
MANIFESTS = sorted(K8S.glob("*.yaml"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def jobs() -> list[tuple[str, dict[str, Any]]]:
    """(file name, Job spec) of the CronJob's template and of the Job."""
    out = []
    for path in MANIFESTS:
        for doc in documents(path):
            if doc["kind"] == "CronJob":
                out.append((path.name, doc["spec"]["jobTemplate"]["spec"]))
            elif doc["kind"] == "Job":
                out.append((path.name, doc["spec"]))
    return out


def flag(args: list[str], name: str) -> str:
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    assert len(values) == 1, f"--{name}= given {len(values)} times"
    return values[0]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_validates_strictly(path: Path, version: str) -> None:
    for doc in documents(path):
        kubernetes_validate.validate(doc, version, strict=True)  # raises on any error


def test_there_are_a_nightly_cronjob_and_a_backfill_job() -> None:
    kinds = {doc["kind"] for path in MANIFESTS for doc in documents(path)}
    assert {"CronJob", "Job", "PersistentVolumeClaim", "ServiceAccount"} <= kinds
    cron = next(d for p in MANIFESTS for d in documents(p) if d["kind"] == "CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"


@pytest.mark.parametrize(("name", "spec"), jobs(), ids=[n for n, _ in jobs()])
def test_each_job_follows_the_conventions(name: str, spec: dict[str, Any]) -> None:
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert pod["restartPolicy"] == "Never" and spec["podReplacementPolicy"] == "Failed"
    assert pod["terminationGracePeriodSeconds"] >= float(flag(args, "grace")) + 20
    assert spec["activeDeadlineSeconds"] > float(flag(args, "max-outage")) + float(flag(args, "max-wait"))
    assert pod["automountServiceAccountToken"] is False
    security = pod["securityContext"]
    assert security["runAsNonRoot"] and security["runAsUser"] == 65532
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }  # fmt: skip
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert flag(args, "api-key-file").startswith(mounts["api-key"] + "/")
    assert "secret" in volumes["api-key"] and "env" not in container
    assert flag(args, "ledger").startswith(mounts["ledger"] + "/")
    assert "persistentVolumeClaim" in volumes["ledger"] and mounts["tmp"] == "/tmp"
    assert flag(args, "pushgateway").startswith("http")


@pytest.mark.parametrize(("name", "spec"), jobs(), ids=[n for n, _ in jobs()])
def test_each_job_command_line_is_one_the_job_accepts(name: str, spec: dict[str, Any]) -> None:
    (container,) = spec["template"]["spec"]["containers"]
    args = build_parser().parse_args(container["args"])
    config, output = config_from(args)
    assert str(config.input).startswith(("s3://", "gs://"))
    assert output.api_key_file and output.pushgateway and output.log_format == "json"


def readme_rules() -> dict[int, str]:
    """Exit code -> podFailurePolicy action, from the README's Kubernetes table."""
    section = REPO.joinpath("README.md").read_text(encoding="utf-8").split("## Kubernetes", 1)[1]
    section = section.split("\n## ", 1)[0]
    rows = re.findall(r"^\s*\| (\d+) \| [^|]+ \| `(\w+)`", section, flags=re.MULTILINE)
    return {int(code): action for code, action in rows}


@pytest.mark.parametrize(("name", "spec"), jobs(), ids=[n for n, _ in jobs()])
def test_the_failure_policy_is_the_readme_table_and_covers_every_exit_code(
    name: str, spec: dict[str, Any]
) -> None:
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    by_code = {
        code: rule["action"]
        for rule in rules
        if "onExitCodes" in rule
        for code in rule["onExitCodes"]["values"]
    }
    assert all(rule["onExitCodes"]["containerName"] == "batch-override" for rule in rules[1:])
    documented = readme_rules()
    assert documented.pop(ExitCode.SIGTERM) == "Ignore"
    assert by_code == documented
    codes = {v for k, v in vars(ExitCode).items() if k.isupper()}
    assert codes - set(by_code) == {ExitCode.OK, ExitCode.SIGINT, ExitCode.SIGTERM}
