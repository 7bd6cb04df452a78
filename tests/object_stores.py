"""Real object stores on loopback for the tests: moto's S3 server and the GCS emulator.

Both are Python packages (dev dependencies) serving real HTTP on 127.0.0.1 at an ephemeral port;
pyarrow talks to them as it talks to AWS or Google, given the endpoint.  Objects are put with
pyarrow itself (S3 with boto3, which moto brings, for versioning and ETags).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http import server
from typing import Any

import pyarrow.fs as pafs
import pytest

#: Credentials moto accepts; the environment is the first link of AWS's usual chain.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing-key-id",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-never-shown",
    "AWS_DEFAULT_REGION": "us-east-1",
    # Never ask an instance-metadata address (the tests reach loopback only), nor read ~/.aws.
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}


@dataclass
class S3Server:
    url: str
    client: Any  # a boto3 S3 client

    def put(self, bucket: str, key: str, data: bytes) -> str:
        """Store ``data``; returns its ETag (unquoted)."""
        return str(self.client.put_object(Bucket=bucket, Key=key, Body=data)["ETag"]).strip('"')

    def bucket(self, name: str) -> None:
        self.client.create_bucket(Bucket=name)


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1 (one per test module: it takes a second to start)."""
    import boto3
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as mp:
        for name, value in AWS_ENV.items():
            mp.setenv(name, value)
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        try:
            host, port = moto.get_host_and_port()
            url = f"http://{host}:{port}"
            client = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
            yield S3Server(url, client)
        finally:
            moto.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    return AWS_ENV


class GcsServer:
    """The GCS emulator's request handler behind a threading HTTP server.

    The trap: the package's own server is single-threaded, and pyarrow keeps a connection open
    while it opens another, so it would wait for ever; one thread per connection avoids that.
    """

    def __init__(self, bucket: str) -> None:
        from gcp_storage_emulator.handlers import buckets
        from gcp_storage_emulator.server import RequestHandler
        from gcp_storage_emulator.storage import Storage

        self.storage = Storage(use_memory_fs=True)
        buckets.create_bucket(bucket, self.storage)
        self.httpd = server.ThreadingHTTPServer(("127.0.0.1", 0), partial(RequestHandler, self.storage))
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        self.fs = pafs.GcsFileSystem(
            anonymous=True, endpoint_override=self.url.removeprefix("http://"), scheme="http"
        )

    def put(self, path: str, data: bytes) -> None:
        with self.fs.open_output_stream(path, compression=None) as out:  # else it gzips a .gz again
            out.write(data)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)


@pytest.fixture(scope="module")
def gcs_server() -> Iterator[GcsServer]:
    gcs = GcsServer("corrections")
    try:
        yield gcs
    finally:
        gcs.stop()
