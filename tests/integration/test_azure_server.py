"""pytusd on Azure over HTTP: real ``pytusd --azure-storage ...`` processes on a real Azurite,
sharing uploads between instances, with credentials from the environment only, and an outage.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from tests.integration.azure_helpers import (
    azurite_fixture,  # noqa: F401 - fixture
    stored_upload,
    unique_prefix,
)
from tests.services.azurite import AzuriteServer
from tests.support.server import ServerProcess

pytestmark = pytest.mark.services
#: Azure only (see tests/conftest.py): the servers here are on Azurite whatever they are given.
STORES = ("azure",)

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Content-Type": "application/offset+octet-stream"}
MiB = 1024 * 1024
Factory = Callable[..., ServerProcess]


def patch(url: str, data: bytes, offset: int) -> httpx.Response:
    return httpx.patch(url, content=data, headers={**TUS, **OCTET, "Upload-Offset": str(offset)}, timeout=60)


def test_two_instances_share_uploads(server_factory: Factory, azurite: AzuriteServer) -> None:
    """The offset lives in Azure only: an upload begun on one instance goes on on another."""
    prefix = unique_prefix()
    one = server_factory(["--azure-object-prefix", prefix])
    two = server_factory(["--azure-object-prefix", prefix])
    data = os.urandom(3 * MiB + 123)
    created = httpx.post(one.url, headers={**TUS, "Upload-Length": str(len(data))}, timeout=30)
    assert created.status_code == 201, created.text
    path = httpx.URL(created.headers["location"]).path
    assert patch(one.base_url + path, data[: MiB + 7], 0).status_code == 204
    head = httpx.head(two.base_url + path, headers=TUS, timeout=30)
    assert head.headers["upload-offset"] == str(MiB + 7)
    assert patch(two.base_url + path, data[MiB + 7 :], MiB + 7).status_code == 204
    assert httpx.get(one.base_url + path, timeout=60).content == data
    stored, info = stored_upload(one.args, path.rsplit("/", 1)[1])
    assert stored == data
    assert info["Storage"]["Type"] == "azurestore" and info["Storage"]["Key"].startswith(prefix)


def test_credentials_come_from_the_environment_only(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTUSD_", "AZURE_"))}
    cmd = [sys.executable, "-m", "pytusd", "--upload-dir", str(tmp_path), "--azure-storage", "c"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "AZURE_STORAGE_ACCOUNT" in result.stderr


def test_azure_down_is_503_with_retry_after(server_factory: Factory) -> None:
    """A private Azurite, stopped under a server: requests get 503 + Retry-After, never a 500."""
    private = AzuriteServer().start()
    try:
        server = server_factory(["--azure-endpoint", private.endpoint])
        created = httpx.post(server.url, headers={**TUS, "Upload-Length": "10"}, timeout=30)
        assert created.status_code == 201, created.text
        url = server.base_url + httpx.URL(created.headers["location"]).path
        assert patch(url, b"12345", 0).status_code == 204
    finally:
        private.stop()
    for response in (httpx.head(url, headers=TUS, timeout=60), patch(url, b"67890", 5)):
        assert response.status_code == 503, response.text
        assert response.headers.get("retry-after")
