"""``run s3://bucket/key.parquet`` and ``gs://...``: an object-store input, copied once to a file.

Both passes of a run read the input, and an object can be replaced between two reads.  So the
object is read once, through :mod:`pyarrow.fs`, into a private temporary file that both passes
read, and its identity (S3 ETag and version id, GCS generation) is taken from the same read.
:meth:`ObjectCopy.changed` asks the store again: the job does so before pass two, and stops
(exit 2, nothing sent) when the object was replaced meanwhile, as it does for a changed file.

Credentials come from the provider's usual chain (AWS: environment, profile, web identity, the
instance's role; Google: application default credentials), or none with ``anonymous``; never from
the command line, so a URI with ``user:secret@`` is refused without being echoed.  pyarrow 26
ignores ``AWS_ENDPOINT_URL``: a store other than the provider's (MinIO, a test server) is named
with ``s3_endpoint`` / ``gcs_endpoint``.

Traps:
- The copy holds the whole input and is removed by :meth:`ObjectCopy.close`, at the latest when
  collected or at exit (as :mod:`.stdin_copy`); only SIGKILL leaves a ``batch-override-object-*``
  folder behind in the temporary directory.
- pyarrow cannot cancel a read: given ``halted``, the copy runs in a daemon thread and is
  abandoned once ``halted`` is set (:class:`~batch_override.stopping.Halted`, the copy removed),
  so a store that stops answering holds the run no longer than the run's own stop.
- Every error is one line naming the URI (no such object, access denied, unreachable store), exit
  2; the store's own text is cut to its first line, with any credential of the environment
  masked in it.  Google credentials that cannot be had are said by their cause, and outside
  Google Cloud within about a second (:func:`check_google_credentials`), not after 45 s of retries.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from ..errors import InputError, first_line
from ..stopping import unless_halted
from ..urls import OBJECT_SCHEMES as SCHEMES
from ..urls import is_object_uri, object_parts, where
from .batch import InputOptions
from .table import kind_of

log = logging.getLogger("batch_override")

#: Seconds to connect, and per request (a stalled read ends there); S3 then retries twice.
CONNECT_TIMEOUT, REQUEST_TIMEOUT = 10.0, 60.0
#: GCS retries a failing request until this much time has passed (its default is 15 minutes).
GCS_RETRY_LIMIT = timedelta(seconds=30)
#: Without --anonymous, a GCS read first asks for the object's details with this much retrying:
#: outside Google Cloud with no credentials, the store's own retries take ~45 s to say so.
GCS_CREDENTIALS_PROBE = timedelta(seconds=1)
#: The whole copy's deadline: a store that trickles bytes must not hold a nightly run for ever.
COPY_DEADLINE = 3600.0
_CHUNK = 1 << 20
#: Environment variables whose values must never appear in a message.
_SECRET_VARIABLES = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "GOOGLE_OAUTH_ACCESS_TOKEN",
)


@dataclass(frozen=True, slots=True)
class ObjectURI:
    """``scheme://bucket/key`` taken apart; :meth:`parse` refuses anything else."""

    scheme: str
    bucket: str
    key: str

    @classmethod
    def parse(cls, text: str) -> ObjectURI:
        """``text`` taken apart by :func:`~..urls.object_parts` (credentials refused unechoed)."""
        return cls(*object_parts(text))

    @property
    def path(self) -> str:
        """The object as pyarrow's file systems name it: ``bucket/key``."""
        return f"{self.bucket}/{self.key}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.path}"


def _endpoint(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    return {"endpoint_override": parts.netloc, "scheme": parts.scheme}


def filesystem(uri: ObjectURI, options: InputOptions) -> pafs.FileSystem:
    """The pyarrow file system that reads ``uri``, with the deadlines above."""
    if uri.scheme == "s3":
        s3: dict[str, Any] = {
            "anonymous": options.anonymous,
            "connect_timeout": CONNECT_TIMEOUT,
            "request_timeout": REQUEST_TIMEOUT,
            "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=3),
        }
        if options.s3_endpoint:
            s3.update(_endpoint(options.s3_endpoint))
        region = options.s3_region
        if region is None and not options.s3_endpoint:
            # AWS answers a request to the wrong region with a redirect pyarrow does not follow.
            region = pafs.resolve_s3_region(uri.bucket)
        if region is not None:
            s3["region"] = region
        return pafs.S3FileSystem(**s3)
    return _gcs(options, GCS_RETRY_LIMIT)


def _gcs(options: InputOptions, retry: timedelta) -> pafs.GcsFileSystem:
    gcs: dict[str, Any] = {"anonymous": options.anonymous, "retry_time_limit": retry}
    if options.gcs_endpoint:
        gcs.update(_endpoint(options.gcs_endpoint))
    return pafs.GcsFileSystem(**gcs)


def check_google_credentials(uri: ObjectURI, options: InputOptions) -> None:
    """:class:`InputError` at once when ``uri`` is a ``gs://`` object and no Google credentials can
    be had because nothing answers for them: no credentials file, and no metadata server (its name
    does not resolve or nothing listens: not on Google Cloud).  Otherwise nothing, whatever the
    store says: the copy asks again with its full retries.

    The trap: the store retries a token it cannot make as it retries a failed read, for
    ``GCS_RETRY_LIMIT`` and more (45 s), before one ~900-character line; a short retry limit on
    one first question tells the same in about a second.  A metadata server that is there but
    slow (on Google Cloud) is not taken for an absent one."""
    if uri.scheme != "gs" or options.anonymous:
        return
    try:
        _gcs(options, GCS_CREDENTIALS_PROBE).get_file_info(uri.path)
    except (OSError, pa.ArrowException) as exc:
        text = first_line(exc)
        if _TOKEN_FAILED in text and any(error in text for error in _NOBODY_THERE):
            raise describe_error(uri, exc, options) from None


#: How the Google client says it could not make a credential (its text, the cause follows).
_TOKEN_FAILED = "Could not create a OAuth2 access token"
_CAUSE = "The underlying error message was: "
#: curl's "could not resolve" and "could not connect": no metadata server there at all.
_NOBODY_THERE = ("CURL error [6]", "CURL error [7]")


def _google_credentials_error(uri: ObjectURI, text: str) -> InputError:
    """One line for a token the Google client could not make: the cause, not its 900 characters."""
    cause = text.partition(_CAUSE)[2].partition(" error_info=")[0].strip() or "no cause given"
    if any(error in cause for error in _NOBODY_THERE):  # the chain's last link, the metadata server
        cause = "no credentials file, and no metadata server (not on Google Cloud)"
    return InputError(
        f"{uri}: no usable Google credentials ({cause}); set GOOGLE_APPLICATION_CREDENTIALS or run "
        "'gcloud auth application-default login', or use --anonymous for a public bucket"
    )


def identity(uri: ObjectURI, metadata: dict[bytes | str, bytes | str]) -> dict[str, str]:
    """What names this version of the object: S3's ETag (and version id, in a versioned bucket),
    GCS's generation (and ETag).  Recorded in the run log; compared by :meth:`ObjectCopy.changed`."""
    text = {
        (k.decode() if isinstance(k, bytes) else k).lower(): (v.decode() if isinstance(v, bytes) else v)
        for k, v in metadata.items()
    }
    wanted = {"s3": ("etag", "versionid"), "gs": ("generation", "etag")}[uri.scheme]
    names = {"versionid": "version_id"}
    return {names.get(k, k): text[k].strip('"') for k in wanted if text.get(k)}


def _masked(text: str) -> str:
    for name in _SECRET_VARIABLES:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def describe_error(uri: ObjectURI, exc: BaseException, options: InputOptions) -> InputError:
    """One line for a failed read of ``uri``: what went wrong, in words a person can act on."""
    text = _masked(first_line(exc))
    if _TOKEN_FAILED in text:
        return _google_credentials_error(uri, text)
    text = text.partition(" error_info=")[0]  # google::cloud::Status' metadata: the message again
    upper = text.upper()
    if isinstance(exc, FileNotFoundError) or "NO_SUCH" in upper or "NOT FOUND" in upper:
        return InputError(f"{uri}: no such object (or no such bucket)")
    if "ACCESS_DENIED" in upper or "ACCESSDENIED" in upper or "PERMISSION" in upper or "403" in upper:
        how = "without credentials (--anonymous)" if options.anonymous else "with the credentials found"
        return InputError(f"{uri}: access denied {how}; check the role or key and the bucket's policy")
    endpoint = options.s3_endpoint if uri.scheme == "s3" else options.gcs_endpoint
    if "NETWORK_CONNECTION" in upper or "COULD NOT CONNECT" in upper or "COULDN'T CONNECT" in upper:
        at = where(endpoint) if endpoint else "the provider's endpoint"
        return InputError(f"{uri}: cannot reach the object store at {at} ({text})")
    return InputError(f"{uri}: cannot read the object ({text})")


class ObjectCopy:
    """The object ``uri`` names, copied now to ``path`` (its own file name, in a private folder).

    ``identity`` is the version copied (see :func:`identity`).  Raises :class:`InputError` (one
    line, exit 2) when it cannot be read, or when it was replaced while being copied.
    """

    def __init__(
        self, text: str, options: InputOptions, *, extensions: str, halted: threading.Event | None = None
    ) -> None:
        self.uri = ObjectURI.parse(text)
        self._options = options
        name = self.uri.key.rsplit("/", 1)[-1]
        if kind_of(Path(name)) is None:  # known before a byte is fetched
            raise InputError(f"{text}: unknown extension; expected {extensions}")
        folder = tempfile.mkdtemp(prefix="batch-override-object-")
        self._remove = weakref.finalize(self, shutil.rmtree, folder, True)
        self.path = Path(folder) / name
        try:
            self.identity = self._fetch() if halted is None else unless_halted(self._fetch, halted)
        except (OSError, pa.ArrowException) as exc:
            self.close()
            raise describe_error(self.uri, exc, options) from None
        except BaseException:
            self.close()
            raise

    def _fetch(self) -> dict[str, str]:
        """The object copied, unchanged meanwhile: its identity."""
        check_google_credentials(self.uri, self._options)
        self._fs = filesystem(self.uri, self._options)
        self.identity = self._copy()
        if self.changed():
            raise InputError(f"{self.uri}: the object was replaced while it was copied; rerun")
        return self.identity

    def _copy(self) -> dict[str, str]:
        deadline = time.monotonic() + COPY_DEADLINE
        # compression=None: pyarrow would otherwise gunzip a .gz on the way, and the copy must be
        # the object's bytes (its SHA-256 goes to the run log; the reader detects gzip itself).
        stream = self._fs.open_input_stream(self.uri.path, compression=None)
        with stream as source, open(self.path, "wb") as out:
            found = identity(self.uri, source.metadata())
            while chunk := source.read(_CHUNK):
                out.write(chunk)
                if time.monotonic() > deadline:
                    raise InputError(f"{self.uri}: not copied within {COPY_DEADLINE:g} s; is the store slow?")
        return found

    def changed(self) -> str | None:
        """How the object differs now from the version copied (``"etag a -> b"``), else None.

        The trap: a store that cannot be asked (down, a credential expired) counts as unchanged,
        with a warning: the run reads its copy either way, so the question only guards the plan.
        """
        try:
            with self._fs.open_input_stream(self.uri.path, compression=None) as source:
                now = identity(self.uri, source.metadata())
        except FileNotFoundError:
            return "deleted"
        except (OSError, pa.ArrowException) as exc:
            log.warning("%s", describe_error(self.uri, exc, self._options))
            return None
        diff = [f"{k} {self.identity.get(k)} -> {v}" for k, v in now.items() if self.identity.get(k) != v]
        return ", ".join(diff) or None

    def close(self) -> None:
        """Remove the copy (again: a no-op)."""
        self._remove()


__all__ = ["SCHEMES", "ObjectCopy", "ObjectURI", "describe_error", "filesystem", "identity", "is_object_uri"]
