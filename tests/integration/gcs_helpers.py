"""Helpers of the GCS tests: one GCS emulator per test session, stores and servers on it.

tests/support/server.py uses :func:`backend_args_and_env` to run the whole integration and interop
suites on GCS (``PYTUSD_TEST_STORE=gcs``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading
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
