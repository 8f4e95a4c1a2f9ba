"""The upload page as the pytusd command serves it: on by default, off by flag or environment, and
nothing else changes (uploads, metrics, unknown paths)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from tests.support.server import ServerProcess

from pytusd.page import available

STORES = ("file",)  # the command's page, not the store, is under test
TUS = {"Tus-Resumable": "1.0.0"}

pytestmark = pytest.mark.skipif(not available(), reason="Uppy's files were not built in (pip install -e .)")


def test_on_by_default(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory()
    page = httpx.get(f"{server.base_url}/", timeout=10.0)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert httpx.get(f"{server.base_url}/_page/uppy/uppy.min.js", timeout=10.0).status_code == 200
    # The tus endpoint and everything else answer as without the page.
    created = httpx.post(server.url, headers={**TUS, "Upload-Length": "3"}, timeout=10.0)
    assert created.status_code == 201
    assert httpx.post(f"{server.base_url}/", headers={**TUS, "Upload-Length": "3"}, timeout=10.0).status_code == 404
    assert httpx.get(f"{server.base_url}/elsewhere", timeout=10.0).status_code == 404
    assert httpx.get(f"{server.base_url}/metrics", timeout=10.0).status_code == 200


@pytest.mark.parametrize(("args", "env"), [(["--no-upload-page"], {}), ([], {"PYTUSD_UPLOAD_PAGE": "0"})])
def test_turned_off(args: list[str], env: dict[str, str], server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(args, env=env)
    assert httpx.get(f"{server.base_url}/", timeout=10.0).status_code == 404
    assert httpx.get(f"{server.base_url}/_page/page.js", timeout=10.0).status_code == 404
    assert "upload page" not in server.log()


def test_base_path_at_the_root(server_factory: Callable[..., ServerProcess]) -> None:
    """``--base-path /``: GET / is the page, POST / still creates uploads."""
    server = server_factory(["--base-path", "/"])
    assert 'data-endpoint="./"' in httpx.get(f"{server.base_url}/", timeout=10.0).text
    created = httpx.post(f"{server.base_url}/", headers={**TUS, "Upload-Length": "3"}, timeout=10.0)
    assert created.status_code == 201
    assert httpx.head(created.headers["location"], headers=TUS, timeout=10.0).status_code == 200
