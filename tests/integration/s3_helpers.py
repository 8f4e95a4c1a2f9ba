"""Helpers of the S3 tests: one real Swift (with s3api) per test session, stores and servers on it.

tests/support/server.py uses :func:`shared_swift`, :func:`s3_flags`, :func:`aws_env` and
:func:`unique_prefix` to run the whole integration and interop suites on S3 as well.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from tests.services import ServiceError
from tests.services.swift import SwiftS3Server
from tests.support.server import answers, free_port, kill_tree, launch, read_tail, track, untrack

from pytusd.stores.s3.layout import META_COMPLETE, META_MULTIPART, META_PARTS, META_PENDING, META_RUN

MiB = 1024 * 1024
BUCKET = "pytusd-s3-tests"
ROOT = Path(__file__).resolve().parents[2]

_swift: SwiftS3Server | None = None
_swift_lock = threading.Lock()


def shared_swift() -> SwiftS3Server:
    """The session's Swift, started on first use and stopped when the interpreter exits.

    A module-level singleton rather than only a session fixture: fixtures defined outside
    conftest.py are per module, and a Swift costs ~12 s to start.
    """
    global _swift
    with _swift_lock:
        if _swift is None:
            try:
                server = SwiftS3Server().start()
            except ServiceError as exc:
                if "not found" in str(exc):
                    pytest.skip(f"OpenStack Swift is not installed: {exc}")
                raise
            server.create_bucket(BUCKET)
            atexit.register(server.stop)
            _swift = server
        return _swift


# Fixtures are registered under their ``name``; test modules import the functions, whose own
# names then do not clash with the parameters that receive the fixtures.


@pytest.fixture(scope="session", name="swift")
def swift_fixture() -> SwiftS3Server:
    return shared_swift()


def aws_env(swift: SwiftS3Server, *, secret: str | None = None) -> dict[str, str]:
    """The standard AWS variables for Swift's tempauth user (no other credential source)."""
    return {
        "AWS_ACCESS_KEY_ID": swift.access_key,
        "AWS_SECRET_ACCESS_KEY": secret or swift.secret_key,
        "AWS_REGION": swift.region,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


@pytest.fixture(name="s3_env")
def s3_env_fixture(swift: SwiftS3Server, monkeypatch: pytest.MonkeyPatch) -> SwiftS3Server:
    """Credentials for in-process stores, from the environment as in production."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in aws_env(swift).items():
        monkeypatch.setenv(name, value)
    return swift


def unique_prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}/"


def s3_flags(swift: SwiftS3Server, prefix: str, *, part_size: int = 5 * MiB, concurrency: int = 4) -> list[str]:
    """The command-line flags of a pytusd server on the test bucket."""
    return [
        "--s3-bucket", BUCKET,
        "--s3-endpoint", swift.endpoint_url,
        "--s3-object-prefix", prefix,
        "--s3-part-size", str(part_size),
        "--s3-max-concurrent-parts", str(concurrency),
    ]  # fmt: skip


@contextlib.asynccontextmanager
async def open_store(swift: SwiftS3Server, prefix: str | None = None, **kwargs: Any) -> AsyncIterator[Any]:
    """A started S3Store on the test bucket (5 MiB parts unless told otherwise)."""
    from pytusd.stores.s3 import S3Store

    kwargs.setdefault("part_size", 5 * MiB)
    kwargs.setdefault("max_concurrent_parts", 4)
    store = S3Store(BUCKET, endpoint_url=swift.endpoint_url, object_prefix=prefix or unique_prefix(), **kwargs)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


def bucket_keys(swift: SwiftS3Server, prefix: str) -> list[str]:
    client = swift.client()
    try:
        listing = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        return sorted(item["Key"] for item in listing.get("Contents") or [])
    finally:
        client.close()


def multipart_uploads(swift: SwiftS3Server, prefix: str) -> list[str]:
    client = swift.client()
    try:
        listing = client.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix)
        return sorted(item["Key"] for item in listing.get("Uploads") or [])
    finally:
        client.close()


def parts_in_s3(swift: SwiftS3Server, key: str) -> list[int]:
    """Numbers of the parts S3 holds for the multipart upload in progress at ``key``."""
    client = swift.client()
    try:
        listing = client.list_multipart_uploads(Bucket=BUCKET, Prefix=key)
        (upload,) = [u for u in listing.get("Uploads") or [] if u["Key"] == key]
        parts = client.list_parts(Bucket=BUCKET, Key=key, UploadId=upload["UploadId"])
        return [int(p["PartNumber"]) for p in parts.get("Parts") or []]
    finally:
        client.close()


# -- what the bucket holds of an upload, read around the store ------------------------------------


def _last_flag(args: Sequence[str], name: str) -> str | None:
    """The value of the last ``name`` flag (the last one counts, as on the command line)."""
    at = [i for i, arg in enumerate(args) if arg == name]
    return args[at[-1] + 1] if at else None


def _as_prefix(prefix: str) -> str:
    prefix = prefix.lstrip("/")
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def _get_object(client: Any, key: str) -> tuple[bytes, dict[str, str]] | None:
    """An object's bytes and user metadata through the S3 API (None: no such object)."""
    try:
        response = client.get_object(Bucket=BUCKET, Key=key)
    except client.exceptions.NoSuchKey:
        return None
    with contextlib.closing(response["Body"]) as body:
        return body.read(), {k.lower(): v for k, v in (response.get("Metadata") or {}).items()}


def _listed_parts(client: Any, key: str, multipart: str) -> dict[int, dict[str, Any]] | None:
    """ListParts of the multipart upload, by part number (None: no such multipart upload)."""
    parts: dict[int, dict[str, Any]] = {}
    marker = 0
    while True:
        try:
            page = client.list_parts(Bucket=BUCKET, Key=key, UploadId=multipart, PartNumberMarker=marker)
        except client.exceptions.NoSuchUpload:
            return None
        for part in page.get("Parts") or []:
            parts[int(part["PartNumber"])] = part
        if not page.get("IsTruncated"):
            return parts
        marker = int(page["NextPartNumberMarker"])


def _md5_of_etag(etag: str) -> str:
    return etag.strip().strip('"').lower()


class _SwiftReader:
    """Objects read through Swift's own API (tempauth), which S3's cannot: the parts of an
    unfinished multipart upload, kept by s3api as ``<key>/<upload-id>/<n>`` in ``<bucket>+segments``."""

    def __init__(self, swift: SwiftS3Server) -> None:
        self.http = httpx.Client(timeout=30.0)
        auth = self.http.get(
            f"{swift.endpoint_url}/auth/v1.0", headers={"X-Auth-User": swift.access_key, "X-Auth-Key": swift.secret_key}
        )
        assert auth.status_code in (200, 204), f"Swift tempauth refused the test user: {auth.status_code} {auth.text}"
        self.storage_url = auth.headers["x-storage-url"]
        self.http.headers["X-Auth-Token"] = auth.headers["x-auth-token"]

    def close(self) -> None:
        self.http.close()

    def listing(self, container: str, prefix: str) -> dict[str, dict[str, Any]]:
        """The container's objects under ``prefix``, by name (name, bytes, hash...)."""
        found: dict[str, dict[str, Any]] = {}
        marker = ""
        while True:
            params = {"format": "json", "prefix": prefix, "marker": marker}
            response = self.http.get(f"{self.storage_url}/{quote(container, safe='')}", params=params)
            if response.status_code == 404:
                return found
            assert response.status_code in (200, 204), f"listing {container}: {response.status_code} {response.text}"
            page = response.json() if response.status_code == 200 else []
            if not page:
                return found
            for item in page:
                found[item["name"]] = item
            marker = page[-1]["name"]

    def read(self, container: str, name: str) -> bytes:
        response = self.http.get(f"{self.storage_url}/{quote(container, safe='')}/{quote(name, safe='/')}")
        assert response.status_code == 200, f"GET {container}/{name}: {response.status_code} {response.text}"
        return response.content


def _read_parts(
    swift: SwiftS3Server, key: str, multipart: str, numbers: Sequence[int], listed: dict[int, dict[str, Any]]
) -> bytes:
    """Parts ``numbers`` of the multipart upload, each checked against its ListParts size and ETag."""
    container = f"{BUCKET}+segments"
    reader = _SwiftReader(swift)
    try:
        objects = reader.listing(container, f"{key}/{multipart}/")
        data = bytearray()
        for number in numbers:
            name = f"{key}/{multipart}/{number}"
            part = listed[number]
            assert name in objects, (
                f"part {number} of {key} ({multipart}) is listed by S3 but not in {container}: {sorted(objects)}"
            )
            body = reader.read(container, name)
            md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
            assert len(body) == int(part["Size"]) and md5 == _md5_of_etag(part["ETag"]), (
                f"{container}/{name} is not part {number} as S3 lists it: {len(body)} bytes, MD5 {md5}; listed: {part}"
            )
            data += body
        return bytes(data)
    finally:
        reader.close()


def stored_upload(server_args: Sequence[str], upload_id: str) -> tuple[bytes, dict[str, Any]]:
    """What the bucket holds of an upload of a server started with ``server_args``: the bytes a
    restarted server would count, and the parsed ``.info``.

    Read after the layout in the S3 store's package docs, not through the store, so a test checks
    the store against the bucket itself: the parts the incomplete part (``<id>.part``) counts
    (``tus-parts``, and the ``tus-pending`` one if S3 lists it with that size and MD5, or the
    parts of the ``tus-run`` S3 lists one after another at its size), then the
    incomplete part's own bytes; or the finished object. S3 cannot read the parts of an unfinished
    multipart upload, so they are read through Swift's API from the container s3api keeps them in.
    """
    swift = shared_swift()
    object_prefix = _as_prefix(_last_flag(server_args, "--s3-object-prefix") or "")
    info_prefix = _as_prefix(_last_flag(server_args, "--s3-info-prefix") or object_prefix)
    client = swift.client()
    try:
        found = _get_object(client, f"{info_prefix}{upload_id}.info")
        assert found is not None, f"no {info_prefix}{upload_id}.info in the bucket"
        info = json.loads(found[0])
        storage = info.get("Storage") or {}
        key = storage.get("Key") or f"{object_prefix}{upload_id}"
        multipart = storage.get("MultipartUploadId") or ""

        def finished(why: str) -> bytes:
            obj = _get_object(client, key)
            assert obj is not None, f"upload {upload_id}: {why}, and there is no object at {key}"
            return obj[0]

        tail = _get_object(client, f"{info_prefix}{upload_id}.part")
        if tail is not None and tail[1].get(META_MULTIPART) != multipart:
            tail = None  # left over from another multipart upload under the same key
        if tail is None:
            # Nothing written yet, or a finished upload (a 0-byte one has no multipart upload).
            obj = _get_object(client, key)
            return (obj[0] if obj is not None else b""), info
        data, metadata = tail
        if metadata.get(META_COMPLETE):
            return finished("its incomplete part marks it complete"), info
        count = int(metadata.get(META_PARTS, "0"))
        # tus-pending = <number>:<size>:<md5 hex>, the part after the committed ones (the MD5 is
        # empty without content hashes: then its size alone tells it).
        number, _, rest = metadata.get(META_PENDING, "").partition(":")
        size, _, md5 = rest.partition(":")
        named = number.isdigit() and size.isdigit() and int(number) == count + 1
        pending = (int(size), md5.lower()) if named else None
        # tus-run = <first>:<size>: from the part after the committed ones, every part S3 lists one
        # after another at that size counts (beside an empty incomplete part only).
        first, _, run_size = metadata.get(META_RUN, "").partition(":")
        run = int(run_size) if first.isdigit() and run_size.isdigit() and int(first) == count + 1 else None
        if data or pending is not None:
            run = None
        if count == 0 and pending is None and run is None:
            return data, info
        listed = _listed_parts(client, key, multipart)
        if listed is None:
            # Completed (CompleteMultipartUpload) just before the marker replaced the incomplete part.
            return finished(f"its multipart upload {multipart} is gone"), info
        missing = [n for n in range(1, count + 1) if n not in listed]
        if missing:
            obj = _get_object(client, key)
            assert obj is not None, (
                f"upload {upload_id}: committed parts {missing} are not in its multipart upload; "
                f".part metadata {metadata}, ListParts {sorted(listed.values(), key=lambda p: p['PartNumber'])}"
            )
            return obj[0], info
        numbers = list(range(1, count + 1))
        landed = listed.get(count + 1)
        if (
            pending is not None
            and landed is not None
            and int(landed["Size"]) == pending[0]
            and (not pending[1] or _md5_of_etag(landed["ETag"]) == pending[1])
        ):
            numbers.append(count + 1)
            assert not data, f"upload {upload_id}: a pending part beside a non-empty incomplete part ({metadata})"
        while run is not None and (after := listed.get(len(numbers) + 1)) is not None and int(after["Size"]) == run:
            numbers.append(len(numbers) + 1)
        return _read_parts(swift, key, multipart, numbers, listed) + data, info
    finally:
        client.close()


async def chunks_of(data: bytes, step: int = 64 * 1024, *, fail_at: int | None = None) -> AsyncIterator[bytes]:
    """``data`` as a request body would arrive; raises after ``fail_at`` bytes if asked.

    Like a socket it gives the event loop a turn per chunk, and before failing it waits a moment,
    so that parts the store started uploading are really in S3 when the body breaks.
    """
    for start in range(0, len(data), step):
        if fail_at is not None and start >= fail_at:
            break
        await asyncio.sleep(0)
        yield data[start : start + step]
    if fail_at is not None:
        await asyncio.sleep(0.5)
        raise ConnectionResetError("client went away")


# -- a pytusd server on S3, in its own process ----------------------------------------------------


class S3ServerProcess:
    """``pytusd`` on S3 with the given flags and AWS credentials from the environment only."""

    def __init__(self, swift: SwiftS3Server, args: Sequence[str], log_dir: Path, *, secret: str | None = None) -> None:
        self.args = list(args)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTUSD_", "AWS_"))}
        self.env.update(aws_env(swift, secret=secret))
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        self.log_dir = log_dir
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/files/"

    def start(self, timeout: float = 30.0) -> S3ServerProcess:
        self.port = free_port()
        self.starts += 1
        log_path = self.log_dir / f"s3-server-{self.port}-{self.starts}.log"
        cmd = [sys.executable, "-m", "pytusd", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--upload-dir", str(self.log_dir / "locks")]  # with S3 it holds only lock files
        self.log_path = log_path
        self.proc = launch(
            [*cmd, *self.args], log_path=log_path, env=self.env, cwd=ROOT, ready=answers(self.url), what="S3 server",
            timeout=timeout,
        )  # fmt: skip
        track(self)
        return self

    def log(self) -> str:
        return read_tail(self.log_path) if hasattr(self, "log_path") else ""

    def kill(self) -> None:
        """SIGKILL: a crash, nothing saved on the way out."""
        if self.proc is None:
            return
        untrack(self)
        kill_tree(self.proc.pid)
        self.proc.wait()
        self.proc = None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM: a graceful shutdown; returns the exit status."""
        assert self.proc is not None
        untrack(self)
        self.proc.terminate()
        status = self.proc.wait(timeout)
        self.proc = None
        return status

    def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)


@pytest.fixture(name="s3_server_factory")
def s3_server_factory_fixture(swift: SwiftS3Server, tmp_path: Path) -> Iterator[Any]:
    """``start(args, secret=None)``: S3 servers that are all killed at the end of the test."""
    started: list[S3ServerProcess] = []

    def start(args: Sequence[str], *, secret: str | None = None, wait: bool = True) -> S3ServerProcess:
        server = S3ServerProcess(swift, args, tmp_path, secret=secret)
        started.append(server)
        return server.start() if wait else server

    yield start
    for server in started:
        server.kill()


def run(coro: Any) -> Any:
    """Run a test's coroutine in a fresh event loop."""
    return asyncio.run(coro)
