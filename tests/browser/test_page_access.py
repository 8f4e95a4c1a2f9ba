"""The upload page against servers that refuse it: a CORS origin not allowed, hooks that want a token."""

from __future__ import annotations

import http.server
import json
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.browser.uppy_page import (
    CHUNK,
    click_upload,
    files,
    make_file,
    open_page,
    pick,
    pump_until,
    stored_uploads,
    wait_all_complete,
)
from tests.support.server import ServerProcess

STORES = ("file",)
TOKEN = "s3cret-token"
NO_RETRY = f"?chunkSize={CHUNK}&retryDelays="

# A file hook (tusd's JSON on stdin) that lets only requests with the right bearer token through.
HOOK = f"""#!{sys.executable}
import json, sys
event = json.load(sys.stdin)
header = event["Event"]["HTTPRequest"]["Header"].get("Authorization", [""])[0]
if header != "Bearer {TOKEN}":
    json.dump({{"RejectUpload": True, "RejectAccess": True,
               "HTTPResponse": {{"StatusCode": 401, "Body": "a valid token is required"}}}}, sys.stdout)
"""


class OtherSite:
    """A site on another loopback port (another origin) that serves one page.

    Loopback, because Chromium keeps pages of other address spaces from reaching loopback at all.
    """

    def __init__(self) -> None:
        self.html = b""
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(site.html)))
                self.end_headers()
                self.wfile.write(site.html)

            def log_message(self, format: str, *args: Any) -> None:
                """No access log: it would only clutter the test output."""

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def other_site() -> Iterator[OtherSite]:
    site = OtherSite()
    yield site
    site.close()


def wait_for_error(page: Any) -> str:
    """Uppy shows the failure: the status bar turns to its error state; returns the file's error."""
    page.locator(".uppy-StatusBar.is-error").wait_for()
    failed = pump_until(page, lambda: [f for f in files(page) if f["error"]], message="a file with an error")
    return str(failed[0]["error"])


@pytest.mark.parametrize("where", ["own origin", "other origin"])
def test_origin_not_allowed_fails_visibly_and_stores_nothing(
    where: str, page: Any, server_factory: Callable[..., ServerProcess], other_site: OtherSite, tmp_path: Path
) -> None:
    server = server_factory(["--cors-allow-origin", r"https://uploads\.example\.com"])
    a = make_file(tmp_path, "a.bin", 100_000)
    if where == "own origin":
        # Browsers send Origin on same-origin POSTs too, so a pattern without the page's origin refuses it.
        url = f"{server.base_url}/{NO_RETRY}"
    else:
        # The page as another site would serve it: its own origin, pytusd's files and endpoint.
        html = httpx.get(f"{server.base_url}/", timeout=10.0).text
        other_site.html = html.replace("<head>", f'<head>\n<base href="{server.base_url}/">').encode()
        url = f"{other_site.url}/{NO_RETRY}"
    open_page(page, url)
    pick(page, a)
    click_upload(page)
    error = wait_for_error(page)
    if where == "own origin":
        assert "response code: 403, response text: request origin is not allowed" in error
    else:
        assert "network error" in error  # the preflight got a 403, which the browser keeps from the page
    assert stored_uploads(server.upload_dir) == {}
    metrics = httpx.get(f"{server.base_url}/metrics", timeout=10.0).text
    assert 'code="ERR_ORIGIN_NOT_ALLOWED"' in metrics  # refused by pytusd, not lost on the way


def test_token_is_sent_to_the_hooks_and_remembered(
    page: Any, server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for event in ("pre-create", "pre-access"):
        script = hooks / event
        script.write_text(HOOK)
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    server = server_factory(["--hooks-dir", str(hooks), "--hooks-enabled-events", "pre-create,pre-access"])
    a = make_file(tmp_path, "a.bin", 2 * CHUNK + 1000)  # three PATCHes, each checked by pre-access
    open_page(page, f"{server.base_url}/{NO_RETRY}")

    pick(page, a)
    click_upload(page)
    assert "response code: 401" in wait_for_error(page)
    assert stored_uploads(server.upload_dir) == {}

    page.locator("#token").fill(TOKEN)
    page.locator(".uppy-StatusBar-actionBtn--retry").click()
    wait_all_complete(page, 1)
    assert list(stored_uploads(server.upload_dir).values()) == [a.read_bytes()]

    page.reload()
    page.locator(".uppy-Dashboard").wait_for()
    assert page.locator("#token").input_value() == TOKEN  # kept in sessionStorage for this tab
    upload = json.loads((next(server.upload_dir.glob("*.info"))).read_text())
    assert upload["MetaData"]["filename"] == "a.bin"
