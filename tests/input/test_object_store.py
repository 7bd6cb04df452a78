"""s3:// and gs:// inputs, against moto's S3 server and the GCS emulator on loopback: the same
ledger as the local file, the object's version in the run log, a replaced object stopping the run
before anything is sent, and one-line errors with no secret in them."""

from __future__ import annotations

import asyncio
import functools
import gzip
import io
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch_override.apikey import ApiKey
from batch_override.config import Rate, RunConfig
from batch_override.emulator import DEMO_API_KEY, Emulator
from batch_override.errors import ExitCode, InputError
from batch_override.input.batch import InputOptions
from batch_override.input.file_input import CorrectionsFile
from batch_override.job.parts import Parts
from batch_override.job.runner import run_job_async
from tests.object_stores import AWS_ENV, GcsServer, S3Server, aws_env, gcs_server, s3_server
from tests.support import cli_env, read_ledger, run_against, run_cli, sha

__all__ = ["aws_env", "gcs_server", "s3_server"]  # fixtures, used by name

#: The columns that say what happened to each row (run ids and times differ between runs).
SAME = ["row", "media", "hash", "classification", "outcome", "error_code", "http_status", "note"]


def corrections(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "hash": [sha(i) for i in range(start, start + n)],
            "classification": ["human" if i % 3 else "artificial" for i in range(start, start + n)],
            "note": [f"n{i}" for i in range(start, start + n)],
        }
    )


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), out)
    return out.getvalue()


def gzip_csv_bytes(frame: pd.DataFrame) -> bytes:
    return gzip.compress(frame.to_csv(index=False).encode(), mtime=0)


def s3_env() -> dict[str, str]:
    return cli_env(extra=AWS_ENV)


def outcomes(ledger: Path) -> pd.DataFrame:
    return read_ledger(ledger)[SAME].sort_values("row").reset_index(drop=True)


@pytest.fixture
def bucket(s3_server: S3Server, request: pytest.FixtureRequest) -> str:
    name = "b-" + request.node.name.lower().replace("_", "-")[:50].strip("-")
    s3_server.bucket(name)
    return name


async def test_an_s3_parquet_object_gives_the_ledger_the_local_file_gives_and_logs_its_etag(
    s3_server: S3Server, bucket: str, emulator_factory: object, tmp_path: Path
) -> None:
    data = parquet_bytes(corrections(40))
    local = tmp_path / "corrections.parquet"
    local.write_bytes(data)
    etag = s3_server.put(bucket, "nightly/corrections.parquet", data)
    uri = f"s3://{bucket}/nightly/corrections.parquet"

    first, second = await emulator_factory(), await emulator_factory()  # type: ignore[operator]
    from_file = await run_against(first.url, local, tmp_path / "file.csv", env=s3_env())
    temp = tmp_path / "tmp"  # where the copy goes, to see it removed
    temp.mkdir()
    from_s3 = await run_cli(
        "run", uri, "--ledger", str(tmp_path / "s3.csv"), "--api-url", second.url,
        "--s3-endpoint", s3_server.url, "--s3-region", "us-east-1", "--rate", "1000/s",
        env={**s3_env(), "TMPDIR": str(temp)},
    )  # fmt: skip

    assert from_s3.returncode == from_file.returncode == 1, from_s3.stderr  # unknown hashes: not_ready
    pd.testing.assert_frame_equal(outcomes(tmp_path / "file.csv"), outcomes(tmp_path / "s3.csv"))
    assert len(second.overrides()) == len(first.overrides())
    started = json.loads((tmp_path / "s3.csv.runs.jsonl").read_text().splitlines()[0])
    assert started["input"] == uri
    assert started["input_object"] == {"etag": etag}
    assert list(temp.iterdir()) == []


async def test_a_gs_gzip_csv_object_gives_the_ledger_the_local_file_gives_and_logs_its_generation(
    gcs_server: GcsServer, emulator_factory: object, tmp_path: Path
) -> None:
    data = gzip_csv_bytes(corrections(30))
    local = tmp_path / "corrections.csv.gz"
    local.write_bytes(data)
    gcs_server.put("corrections/backfill/corrections.csv.gz", data)
    uri = "gs://corrections/backfill/corrections.csv.gz"

    first, second = await emulator_factory(), await emulator_factory()  # type: ignore[operator]
    from_file = await run_against(first.url, local, tmp_path / "file.csv")
    from_gs = await run_against(
        second.url, uri, tmp_path / "gs.csv", "--gcs-endpoint", gcs_server.url, "--anonymous"
    )  # type: ignore[arg-type]

    assert from_gs.returncode == from_file.returncode == 1, from_gs.stderr
    pd.testing.assert_frame_equal(outcomes(tmp_path / "file.csv"), outcomes(tmp_path / "gs.csv"))
    started = json.loads((tmp_path / "gs.csv.runs.jsonl").read_text().splitlines()[0])
    assert started["input"] == uri
    assert started["input_object"]["generation"].isdigit()


async def test_validate_reads_a_200k_row_s3_object_once_copied(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    s3_server.put(bucket, "big.csv.gz", gzip_csv_bytes(corrections(200_000)))
    result = await run_cli(
        "validate", f"s3://{bucket}/big.csv.gz", "--s3-endpoint", s3_server.url, env=s3_env()
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("200000 rows: 200000 to send, 0 invalid, 0 duplicate, 0 conflict")


class ReplacedAfterPassOne(CorrectionsFile):
    """The object, replaced in the store (by ``replace``) the moment pass one has read the copy."""

    replace: Callable[[], None]

    def batches(self):  # type: ignore[no-untyped-def]
        yield from super().batches()
        if getattr(self, "replaced", False) is False:
            self.replaced = True
            self.replace()


@pytest.mark.parametrize("store", ["s3", "gs"])
async def test_an_object_replaced_between_the_passes_stops_the_run_with_exit_2_before_sending(
    s3_server: S3Server, gcs_server: GcsServer, bucket: str, emulator_factory: object, aws_env: object,
    tmp_path: Path, store: str, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    old, new = parquet_bytes(corrections(20)), parquet_bytes(corrections(20, 100))
    if store == "s3":
        s3_server.put(bucket, "c.parquet", old)
        uri, where = f"s3://{bucket}/c.parquet", {"s3_endpoint": s3_server.url}
        replace = functools.partial(s3_server.put, bucket, "c.parquet", new)
    else:
        gcs_server.put("corrections/replaced.parquet", old)
        uri, where = "gs://corrections/replaced.parquet", {"gcs_endpoint": gcs_server.url, "anonymous": True}
        replace = functools.partial(gcs_server.put, "corrections/replaced.parquet", new)
    emulator: Emulator = await emulator_factory()  # type: ignore[operator]

    def source(config: RunConfig, halted: threading.Event) -> CorrectionsFile:
        assert isinstance(config.input, str)
        opened = ReplacedAfterPassOne(config.input, InputOptions.of(config), halted)
        opened.replace = replace
        return opened

    config = RunConfig(
        input=uri, ledger=tmp_path / "l.csv", api_url=emulator.url, rate=Rate(1000, 1.0), **where
    )  # type: ignore[arg-type]
    summary = await asyncio.wait_for(run_job_async(config, ApiKey(DEMO_API_KEY), Parts(source=source)), 30)

    assert summary.exit_code == ExitCode.USAGE
    assert "changed" in (summary.stop_reason or "")
    assert emulator.overrides() == []
    said = "etag" if store == "s3" else "generation"
    assert any("replaced in the store" in r.message and said in r.message for r in caplog.records)


@pytest.mark.parametrize(
    ("target", "flags", "expected"),
    [
        ("s3://{bucket}/missing.csv", (), "no such object"),
        ("s3://no-such-bucket-here/c.csv", (), "no such object"),
        ("s3://{bucket}/c.csv", ("--anonymous",), "access denied without credentials"),
    ],
    ids=["missing-key", "missing-bucket", "denied-bucket"],
)
async def test_an_unreadable_object_is_one_line_exit_2_without_a_secret(
    s3_server: S3Server, bucket: str, tmp_path: Path, target: str, flags: tuple[str, ...], expected: str
) -> None:
    s3_server.put(bucket, "c.csv", b"hash,classification\n")
    uri = target.format(bucket=bucket)
    temp = tmp_path / "tmp"
    temp.mkdir()
    result = await run_cli(
        "run", uri, "--ledger", str(tmp_path / "l.csv"), "--s3-endpoint", s3_server.url, *flags,
        env={**s3_env(), "TMPDIR": str(temp)},
    )  # fmt: skip
    assert result.returncode == ExitCode.USAGE
    assert result.stderr.count("\n") == 1 and uri in result.stderr and expected in result.stderr
    assert AWS_ENV["AWS_SECRET_ACCESS_KEY"] not in result.stderr + result.stdout
    assert not (tmp_path / "l.csv").exists() and list(temp.iterdir()) == []  # the copy removed too


async def test_an_unreachable_store_is_one_line_exit_2(tmp_path: Path) -> None:
    import socket

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = await run_cli(
        "validate", "s3://bucket/c.csv", "--s3-endpoint", f"http://127.0.0.1:{port}", env=s3_env()
    )
    assert result.returncode == ExitCode.USAGE
    assert result.stderr.count("\n") == 1 and "cannot reach the object store" in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("s3://AKIAEXAMPLE:s3cr3t-in-uri@bucket/c.csv",), "must not carry credentials"),
        (("s3://bucket/c.csv", "--s3-endpoint", "http://s3.example.com"), "only for loopback"),
        (("s3://bucket/c.xlsx",), "unknown extension"),
    ],
    ids=["credentials-in-uri", "plain-http-endpoint", "extension"],
)
async def test_a_bad_object_uri_or_endpoint_is_refused_before_any_request(
    tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    result = await run_cli("run", *args[:1], "--ledger", str(tmp_path / "l.csv"), *args[1:], env=s3_env())
    assert result.returncode == ExitCode.USAGE
    assert expected in result.stderr and "s3cr3t" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # said before the ledger's lock: no lock file, no run log


def test_an_object_uri_of_an_unknown_extension_is_refused_by_the_config_as_a_file_would_be(
    tmp_path: Path,
) -> None:
    with pytest.raises(InputError, match=r"^s3://bucket/c\.xlsx: unknown extension; expected \.csv, "):
        RunConfig(input="s3://bucket/c.xlsx", ledger=tmp_path / "l.csv")
    RunConfig(input="gs://bucket/nightly/c.CSV.gz", ledger=tmp_path / "l.csv")  # the names a file may have


async def test_hash_reads_its_path_list_from_s3_and_resolves_paths_against_the_working_directory(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    (tmp_path / "clip.mp4").write_bytes(b"media bytes")
    s3_server.put(bucket, "paths.csv", b"path\nclip.mp4\n")
    result = await run_cli(
        "hash", f"s3://{bucket}/paths.csv", "-o", str(tmp_path / "out.csv"), "--s3-endpoint", s3_server.url,
        env=s3_env(), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    import hashlib

    assert read_ledger(tmp_path / "out.csv")["hash"].tolist() == [hashlib.sha256(b"media bytes").hexdigest()]


async def test_a_versioned_bucket_pins_the_version_id_in_the_run_log(
    s3_server: S3Server, bucket: str, emulator_factory: object, tmp_path: Path
) -> None:
    s3_server.client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3_server.put(bucket, "c.csv", b"hash,classification\n" + f"{sha(1)},human\n".encode())
    version = s3_server.client.head_object(Bucket=bucket, Key="c.csv")["VersionId"]
    emulator: Emulator = await emulator_factory(unknown="classified")  # type: ignore[operator]
    result = await run_against(
        emulator.url, f"s3://{bucket}/c.csv", tmp_path / "l.csv", "--s3-endpoint", s3_server.url, env=s3_env()
    )  # type: ignore[arg-type]
    assert result.returncode == 0, result.stderr
    started = json.loads((tmp_path / "l.csv.runs.jsonl").read_text().splitlines()[0])
    assert started["input_object"]["version_id"] == version


async def test_a_missing_gs_object_is_one_line_exit_2(gcs_server: GcsServer, tmp_path: Path) -> None:
    uri = "gs://corrections/no/such/object.parquet"
    result = await run_cli("validate", uri, "--gcs-endpoint", gcs_server.url, "--anonymous")
    assert result.returncode == ExitCode.USAGE
    assert result.stderr == f"batch-override: error: {uri}: no such object (or no such bucket)\n"


@pytest.fixture
def no_google_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No credentials file, and the metadata server asked on a loopback port nothing listens on."""
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GCE_METADATA_ROOT", f"127.0.0.1:{port}")


@pytest.mark.usefixtures("no_google_credentials")
def test_gs_without_credentials_is_one_short_line_at_once(gcs_server: GcsServer) -> None:
    gcs_server.put("corrections/c.csv", b"hash,classification\n")
    started = time.monotonic()
    with pytest.raises(InputError) as caught:
        CorrectionsFile("gs://corrections/c.csv", InputOptions(gcs_endpoint=gcs_server.url))
    assert time.monotonic() - started < 20  # the store's own retries took 45 s
    message = str(caught.value)
    assert message == (
        "gs://corrections/c.csv: no usable Google credentials (no credentials file, and no metadata "
        "server (not on Google Cloud)); set GOOGLE_APPLICATION_CREDENTIALS or run 'gcloud auth "
        "application-default login', or use --anonymous for a public bucket"
    )


def test_gs_with_an_unusable_credentials_file_names_the_cause_in_one_line(
    gcs_server: GcsServer, no_google_credentials: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    gcs_server.put("corrections/c.csv", b"hash,classification\n")
    with pytest.raises(
        InputError, match=r"^gs://corrections/c\.csv: no usable Google credentials \("
    ) as caught:
        CorrectionsFile("gs://corrections/c.csv", InputOptions(gcs_endpoint=gcs_server.url))
    assert "missing.json" in str(caught.value) and "google::cloud" not in str(caught.value)
