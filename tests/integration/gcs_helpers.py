"""Helpers of the GCS tests: one GCS emulator per test session, stores and servers on it.

tests/support/server.py uses :func:`backend_args_and_env` to run the whole integration and interop
suites on GCS (``PYTUSD_TEST_STORE=gcs``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.services import ServiceError
from tests.services.gcs_emulator import GCSEmulator

BUCKET = "pytusd-gcs-tests"

_emulator: GCSEmulator | None = None
_lock = threading.Lock()


def shared_emulator() -> GCSEmulator:
    """The session's emulator, started on first use and stopped when the interpreter exits (a
    module-level singleton, like tests/integration/s3_helpers.shared_swift)."""
    global _emulator
    with _lock:
        if _emulator is None:
            try:
                emulator = GCSEmulator().start()
            except ServiceError as exc:
                if "No module named" in str(exc):
                    pytest.skip(f"gcp-storage-emulator is not installed: {exc}")
                raise
            emulator.create_bucket(BUCKET)
            atexit.register(emulator.stop)
            _emulator = emulator
        return _emulator


@pytest.fixture(scope="session", name="gcs_emulator")
def gcs_emulator_fixture() -> GCSEmulator:
    return shared_emulator()


def unique_prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}/"


def gcs_flags(prefix: str) -> list[str]:
    """The command-line flags of a pytusd server on the test bucket (the emulator comes from the
    environment, :func:`gcs_env`, as in production)."""
    return ["--gcs-bucket", BUCKET, "--gcs-object-prefix", prefix]


def gcs_env(emulator: GCSEmulator) -> dict[str, str]:
    return {"STORAGE_EMULATOR_HOST": emulator.endpoint}


def backend_args_and_env() -> tuple[list[str], dict[str, str]]:
    """Flags and environment of a server whose uploads go to the session's emulator."""
    emulator = shared_emulator()
    return gcs_flags(unique_prefix()), gcs_env(emulator)


@contextlib.asynccontextmanager
async def open_store(emulator: GCSEmulator, prefix: str | None = None, **kwargs: Any) -> AsyncIterator[Any]:
    """A started GCSStore on the test bucket (the endpoint given as --gcs-endpoint would)."""
    from pytusd.stores.gcs import GCSStore

    store = GCSStore(BUCKET, endpoint=emulator.endpoint, object_prefix=prefix or unique_prefix(), **kwargs)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def _media(emulator: GCSEmulator, name: str) -> bytes | None:
    """An object's bytes through the JSON API (None: no such object)."""
    url = f"{emulator.endpoint}/download/storage/v1/b/{BUCKET}/o/{urllib.parse.quote(name, safe='')}?alt=media"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def stored_upload(server_args: list[str], upload_id: str) -> tuple[bytes, dict[str, Any]]:
    """What the bucket holds of an upload of a server started with ``server_args``: the data
    object's bytes followed by the chunks that continue it, and the parsed ``.info``. Read through
    the emulator's JSON API after the layout in docs/gcs.md, not through the store, so a test
    checks the store against the bucket itself."""
    emulator = shared_emulator()
    # The last one counts, as for the command line (a test may override the pass's own prefix).
    at = len(server_args) - 1 - server_args[::-1].index("--gcs-object-prefix")
    base = f"{server_args[at + 1]}{upload_id}"
    info = _media(emulator, f"{base}.info")
    assert info is not None, f"no {base}.info in the bucket"
    data = _media(emulator, base) or b""
    # Chunks are named by the offset they start at; one starting below the data's end is composed.
    chunks = {
        int(start): name
        for name in emulator.objects(BUCKET, f"{base}.part/")
        if (start := name.rsplit("/", 1)[1]).isdigit()
    }
    while len(data) in chunks:
        data += _media(emulator, chunks[len(data)]) or b""
    return data, json.loads(info)
