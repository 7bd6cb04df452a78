"""The OCI image run for real, under runc, the way a restricted Kubernetes pod runs it: read-only
root, UID 65532, no capabilities, no new privileges, the ledger on a bind mount, the key from a
mounted file, a tmpfs /tmp.  The container shares the host's network namespace, so 127.0.0.1
reaches the emulator the test serves (no other address is ever used).

The image is built (``deploy/image/build.sh``, as ``make image``) when out/image holds none for
the checked-out commit; that takes about a minute.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batch_override.emulator import DEMO_API_KEY, load_state_csv
from tests.binaries import debian_binary, unavailable
from tests.support import REPO, accounted_rows, latest, read_ledger, sha, write_csv

#: The first test may build the image (about 100 s here) before it runs.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

IMAGE_DIR = REPO / "out" / "image"
UID = 65532
#: The job's flags in every run: a pace no test reaches, short retry delays, JSON logs.
FLAGS = ("--rate", "1000/s", "--backoff-base", "0.01", "--log-format", "json", "--no-progress")


def _head() -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def _built_revision() -> str | None:
    """The revision label of the image in out/image, or None when there is none."""
    try:
        index = json.loads((IMAGE_DIR / "oci" / "index.json").read_text())
        blobs = IMAGE_DIR / "oci" / "blobs" / "sha256"
        manifest = json.loads((blobs / index["manifests"][0]["digest"].split(":")[1]).read_text())
        config = json.loads((blobs / manifest["config"]["digest"].split(":")[1]).read_text())
        return str(config["config"]["Labels"]["org.opencontainers.image.revision"])
    except (OSError, KeyError, IndexError, ValueError):
        return None


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The image unpacked (its rootfs and runtime config), built first if out/image lacks it."""
    runc = debian_binary("runc", "runc")
    umoci = debian_binary("umoci", "umoci")
    debian_binary("mmdebstrap", "mmdebstrap")
    del runc
    if os.geteuid() != 0:
        unavailable("runc needs root here (the CI runs as root)")
    if (_built_revision() or "").removesuffix("-dirty") != _head():
        build = subprocess.run(
            ["bash", str(REPO / "deploy" / "image" / "build.sh"), str(IMAGE_DIR)],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert build.returncode == 0, build.stderr[-3000:]
    bundle = tmp_path_factory.mktemp("bundle") / "image"
    tag = (IMAGE_DIR / "tag").read_text().strip()
    subprocess.run(
        [umoci, "unpack", "--image", f"{IMAGE_DIR / 'oci'}:{tag}", str(bundle)],
        capture_output=True,
        check=True,
    )
    config = json.loads((bundle / "config.json").read_text())
    try:
        yield bundle / "rootfs", config
    finally:
        shutil.rmtree(bundle, ignore_errors=True)


def _bind(source: Path, destination: str, *, writable: bool = False) -> dict[str, Any]:
    options = ["rbind", "nosuid", "nodev", "noexec", "rw" if writable else "ro"]
    return {"destination": destination, "type": "bind", "source": str(source), "options": options}


class Pod:
    """One container of the image, configured as the restricted pod of deploy/k8s/."""

    def __init__(self, rootfs: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
        self.root, self.template = rootfs
        self.tmp = tmp_path
        self.ledger_dir = tmp_path / "ledger"
        self.ledger_dir.mkdir()
        os.chown(self.ledger_dir, UID, UID)  # the volume, as fsGroup makes it writable
        secrets = tmp_path / "secrets"
        secrets.mkdir()
        key = secrets / "api-key"
        key.write_text(DEMO_API_KEY + "\n")
        os.chown(key, UID, UID)
        key.chmod(0o400)
        self.secrets = secrets
        self.data = tmp_path / "data"
        self.data.mkdir()

    def ledger(self) -> Path:
        return self.ledger_dir / "run.ledger.csv"

    def bundle(self, args: list[str]) -> Path:
        config = json.loads(json.dumps(self.template))
        process = config["process"]
        process["terminal"] = False
        process["args"] = ["/usr/local/bin/batch-override", *args]
        process["user"] = {"uid": UID, "gid": UID}
        process["capabilities"] = {kind: [] for kind in process["capabilities"]}
        process["noNewPrivileges"] = True
        config["root"] = {"path": str(self.root), "readonly": True}
        # The host's network namespace: 127.0.0.1 is the test's emulator.
        config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"] if n["type"] != "network"]
        config["mounts"] += [
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "noexec", "mode=1777", "size=256m"]},
            _bind(self.ledger_dir, "/var/lib/batch-override", writable=True),
            _bind(self.secrets, "/var/run/secrets/identifai"),
            _bind(self.data, "/data"),
        ]  # fmt: skip
        bundle = self.tmp / f"bundle-{uuid.uuid4().hex[:8]}"
        bundle.mkdir()
        (bundle / "config.json").write_text(json.dumps(config))
        return bundle

    def run_args(self, input_name: str, api_url: str, *extra: str) -> list[str]:
        return [
            "run", f"/data/{input_name}", "--ledger", "/var/lib/batch-override/run.ledger.csv",
            "--api-key-file", "/var/run/secrets/identifai/api-key", "--api-url", api_url, *FLAGS, *extra,
        ]  # fmt: skip


async def _runc(bundle: Path, name: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "runc", "run", "--bundle", str(bundle), name,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _runc_call(*args: str) -> int:
    """``runc ARGS`` (kill, delete) to its end; its exit code."""
    proc = await asyncio.create_subprocess_exec(
        "runc", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    return await proc.wait()


async def _finish(proc: asyncio.subprocess.Process, name: str, wait_s: float = 120) -> tuple[int, str, str]:
    try:
        out, err = await asyncio.wait_for(proc.communicate(), wait_s)
    except TimeoutError:
        await _runc_call("kill", name, "KILL")
        await proc.wait()
        raise
    finally:
        await _runc_call("delete", "--force", name)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_the_image_runs_the_sample_data_as_a_restricted_pod_and_exits_1(
    rootfs: tuple[Path, dict[str, Any]], tmp_path: Path, emulator_factory: Any
) -> None:
    pod = Pod(rootfs, tmp_path)
    shutil.copy(REPO / "sample_data" / "corrections.csv", pod.data / "corrections.csv")
    states = load_state_csv(REPO / "sample_data" / "emulator_state.csv")
    emulator = await emulator_factory(states=states)
    name = f"bo-test-{uuid.uuid4().hex[:8]}"
    proc = await _runc(pod.bundle(pod.run_args("corrections.csv", emulator.url)), name)
    code, out, err = await _finish(proc, name)

    assert code == 1, err[-2000:]  # the sample data has invalid rows, conflicts and unknown hashes
    ledger = read_ledger(pod.ledger())
    assert list(latest(ledger)["row"]) == list(range(len(latest(ledger)))) and len(ledger) > 100
    assert {"submitted", "invalid", "conflict"} <= set(ledger["outcome"])
    assert pod.ledger().stat().st_uid == UID  # written by the image's user
    assert DEMO_API_KEY not in out + err + pod.ledger().read_text()


async def test_sigterm_gives_143_with_the_rest_not_attempted_and_a_rerun_resumes(
    rootfs: tuple[Path, dict[str, Any]], tmp_path: Path, emulator_factory: Any
) -> None:
    pod = Pod(rootfs, tmp_path)
    rows = 400
    write_csv(pod.data / "c.csv", [(sha(i), "human") for i in range(rows)])
    emulator = await emulator_factory(unknown="classified", latency_ms=100)
    name = f"bo-test-{uuid.uuid4().hex[:8]}"
    slow = pod.run_args("c.csv", emulator.url, "--concurrency", "2", "--grace", "5")
    proc = await _runc(pod.bundle(slow), name)
    try:
        for _ in range(600):  # until some rows are in (at most 30 s)
            if len(emulator.overrides()) >= 10:
                break
            await asyncio.sleep(0.05)
        # What the kubelet does first on eviction or at activeDeadlineSeconds.
        assert await _runc_call("kill", name, "TERM") == 0
    finally:
        code, _, err = await _finish(proc, name)
    assert code == 143, err[-2000:]
    # Rows in flight finish (or get aborted lines); the rows never reached get no line, counted
    # not_attempted in the run log (issue 25): every row is accounted for once.
    outcomes, not_attempted = accounted_rows(pod.ledger(), rows)
    assert not_attempted > 0 and set(outcomes) <= {"submitted", "aborted"}
    first = latest(read_ledger(pod.ledger()))
    submitted = set(first.loc[first["outcome"] == "submitted", "hash"])
    assert submitted
    before = emulator.stats()["requests"]

    name = f"bo-test-{uuid.uuid4().hex[:8]}"
    proc = await _runc(pod.bundle(pod.run_args("c.csv", emulator.url, "--concurrency", "32")), name)
    code, _, err = await _finish(proc, name)

    assert code == 0, err[-2000:]
    final = latest(read_ledger(pod.ledger()))
    # The rows done in the first run are counted skipped, not written again: every row has its
    # line from one run or the other, none of the first run's submitted rows twice.
    assert sorted(final["row"]) == list(range(rows))
    assert set(final.loc[final["hash"].isin(submitted), "run_id"]) == set(first["run_id"])
    assert set(final["outcome"]) <= {"submitted", "already_submitted"}
    # Only the rows the first run did not finish were sent again (and one preflight).
    resent = emulator.stats()["requests"] - before
    assert resent <= rows - len(submitted) + 1
    assert len(emulator.overrides()) == rows


def test_the_image_holds_no_build_tools_runs_as_65532_and_is_labelled(
    rootfs: tuple[Path, dict[str, Any]],
) -> None:
    root, config = rootfs
    for tool in ("gcc", "cc", "make", "pip", "pip3", "apt", "apt-get", "perl"):
        assert not (root / "usr" / "bin" / tool).exists(), tool
    assert not list((root / "opt" / "batch-override" / "site").glob("pip*"))
    assert config["process"]["user"]["uid"] == UID
    assert config["process"]["args"] == ["/usr/local/bin/batch-override"]
    labels = config["annotations"]
    assert labels["org.opencontainers.image.revision"].removesuffix("-dirty") == _head()
    assert labels["org.opencontainers.image.version"] == (IMAGE_DIR / "tag").read_text().strip()
    assert "nonroot:x:65532:65532:" in (root / "etc" / "passwd").read_text()
