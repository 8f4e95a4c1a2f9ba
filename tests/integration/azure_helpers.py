"""Helpers of the Azure tests: one real Azurite per test session, stores and servers on it.

tests/support/server.py uses :func:`shared_azurite`, :func:`azure_flags`, :func:`azure_env` and
:func:`unique_prefix` to run the whole integration and interop suites on Azure as well.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import threading
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.services import ServiceError
from tests.services.azurite import AzuriteServer

CONTAINER = "pytusd-azure-tests"

_azurite: AzuriteServer | None = None
_azurite_lock = threading.Lock()


def shared_azurite() -> AzuriteServer:
    """The session's Azurite, started on first use and stopped when the interpreter exits (a
    module-level singleton: fixtures defined outside conftest.py are per module)."""
    global _azurite
    with _azurite_lock:
        if _azurite is None:
            try:
                server = AzuriteServer().start()
            except ServiceError as exc:
                if "not found" in str(exc):
                    pytest.skip(f"Azurite is not installed: {exc}")
                raise
            atexit.register(server.stop)
            _azurite = server
        return _azurite


@pytest.fixture(scope="session", name="azurite")
def azurite_fixture() -> AzuriteServer:
    return shared_azurite()


def azure_env(azurite: AzuriteServer) -> dict[str, str]:
    """The credentials, as pytusd reads them: from the environment only."""
    return {"AZURE_STORAGE_ACCOUNT": azurite.account, "AZURE_STORAGE_KEY": azurite.key}


def unique_prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}/"


def azure_flags(azurite: AzuriteServer, prefix: str) -> list[str]:
    """The command-line flags of a pytusd server on the test container."""
    return ["--azure-storage", CONTAINER, "--azure-endpoint", azurite.endpoint, "--azure-object-prefix", prefix]


def client_for(azurite: AzuriteServer, container: str = CONTAINER, **kwargs: Any) -> Any:
    from pytusd.stores.azure.sdk import AzureClient

    return AzureClient(
        account_name=azurite.account, account_key=azurite.key, container=container, endpoint=azurite.endpoint, **kwargs
    )


@contextlib.asynccontextmanager
async def open_store(azurite: AzuriteServer, prefix: str | None = None, **kwargs: Any) -> AsyncIterator[Any]:
    """A started AzureStore on the test container."""
    from pytusd.stores.azure.store import AzureStore

    store = AzureStore(CONTAINER, client_for(azurite), object_prefix=prefix or unique_prefix(), **kwargs)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


def stored_upload(server_args: list[str], upload_id: str) -> tuple[bytes, dict[str, Any]]:
    """What the container holds of an upload of a server started with ``server_args``: the data
    blob's committed bytes (b"" if none) and the parsed ``.info`` (read with the SDK's sync client,
    not through the store, so a test checks the store against Azure itself)."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob import BlobServiceClient

    azurite = shared_azurite()
    # The last one counts, as for the command line (a test may override the pass's own prefix).
    at = len(server_args) - 1 - server_args[::-1].index("--azure-object-prefix")
    prefix = server_args[at + 1]
    credential = {"account_name": azurite.account, "account_key": azurite.key}
    with BlobServiceClient(azurite.endpoint, credential=credential) as service:
        container = service.get_container_client(CONTAINER)
        info = json.loads(container.download_blob(f"{prefix}{upload_id}.info").readall())
        try:
            data = container.download_blob(f"{prefix}{upload_id}").readall()
        except ResourceNotFoundError:
            data = b""
    return data, info
