"""The upload page's ASGI wrapper in process: what it answers, with which headers, and what it passes on."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from pytusd import Config, TusApp
from pytusd.page import CSP, STATIC_DIR, UploadPage, available, page_paths
from pytusd.stores.memory import MemoryStore

pytestmark = pytest.mark.skipif(not available(), reason="Uppy's files were not built in (pip install -e .)")


class Inner:
    """Stands for TusApp: records what reached it."""

    metrics = "inner metrics"

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.seen.append((scope["method"], scope["path"]))
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"inner"})


Answer = tuple[int, dict[str, str], bytes]


def call(app: UploadPage, method: str, path: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> Answer:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": list(headers), "query_string": b""}
    asyncio.run(app(scope, receive, send))
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body


@pytest.mark.parametrize(
    ("base", "paths"),
    [("/files/", ["/"]), ("/", ["/"]), ("/prefix/files/", ["/", "/prefix/"]), ("/a/b/up/", ["/", "/a/b/"])],
)
def test_page_paths(base: str, paths: list[str]) -> None:
    assert page_paths(base) == paths


@pytest.mark.parametrize(
    ("base", "path", "endpoint"),
    [("/files/", "/", "./files/"), ("/", "/", "./"), ("/prefix/files/", "/prefix/", "./files/"),
     ("/prefix/files/", "/", "./prefix/files/")],
)  # fmt: skip
def test_the_endpoint_is_relative_to_the_page(base: str, path: str, endpoint: str) -> None:
    status, _, body = call(UploadPage(Inner(), base), "GET", path)
    assert status == 200
    assert f'data-endpoint="{endpoint}"' in body.decode()
    # No absolute URL anywhere: the page works under any prefix a proxy adds.
    assert not re.search(r'(src|href)="(/|https?:)', body.decode())


def test_page_headers() -> None:
    status, headers, body = call(UploadPage(Inner(), "/files/"), "GET", "/")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["content-security-policy"] == CSP
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-cache"
    assert headers["content-length"] == str(len(body))
    assert headers["etag"].startswith('"')


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/_page/uppy/uppy.min.js", "text/javascript; charset=utf-8"),
     ("/_page/page.js", "text/javascript; charset=utf-8"),
     ("/_page/uppy/uppy.min.css", "text/css; charset=utf-8"),
     ("/_page/page.css", "text/css; charset=utf-8")],
)  # fmt: skip
def test_assets(path: str, content_type: str) -> None:
    app = UploadPage(Inner(), "/files/")
    status, headers, body = call(app, "GET", path)
    assert (status, headers["content-type"], headers["x-content-type-options"]) == (200, content_type, "nosniff")
    assert body
    status, head_headers, head_body = call(app, "HEAD", path)
    assert (status, head_body, head_headers["content-length"]) == (200, b"", str(len(body)))
    status, again, body = call(app, "GET", path, ((b"if-none-match", headers["etag"].encode()),))
    assert (status, body, "content-length" in again) == (304, b"", False)


def test_everything_else_goes_to_the_app() -> None:
    inner = Inner()
    app = UploadPage(inner, "/files/")
    for method, path in [("POST", "/"), ("PUT", "/"), ("OPTIONS", "/"), ("GET", "/files/"), ("GET", "/_page/"),
                         ("GET", "/_page/nothing.js"), ("GET", "/index.html"), ("GET", "/_page/../_page/page.js"),
                         ("GET", "/files/_page/page.js")]:  # fmt: skip
        status, _, body = call(app, method, path)
        assert (status, body) == (404, b"inner"), (method, path)
    assert len(inner.seen) == 9
    assert app.metrics == "inner metrics"  # what pytusd's serving layer counts connections in


def test_in_front_of_a_real_tus_app() -> None:
    """What an embedding application does to get the page: wrap its TusApp."""
    tus = TusApp(MemoryStore(), Config(base_path="/uploads/"))
    app = UploadPage(tus, tus.config.base_path)
    assert call(app, "GET", "/")[0] == 200
    tus_headers = ((b"host", b"example.com"), (b"tus-resumable", b"1.0.0"), (b"upload-length", b"3"))
    status, headers, _ = call(app, "POST", "/uploads/", tus_headers)
    assert (status, headers["location"].startswith("http://example.com/uploads/")) == (201, True)


def test_without_uppy_the_page_says_so(tmp_path: Path) -> None:
    static = tmp_path / "static"
    shutil.copytree(STATIC_DIR, static, ignore=shutil.ignore_patterns("uppy"))
    app = UploadPage(Inner(), "/files/", static_dir=static)
    status, headers, body = call(app, "GET", "/")
    assert status == 503
    assert b"not built with Uppy's files" in body
    assert headers["x-content-type-options"] == "nosniff"
    assert call(app, "GET", "/_page/page.js")[0] == 404  # nothing half-working
