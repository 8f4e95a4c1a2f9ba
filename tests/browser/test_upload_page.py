"""pytusd's upload page (Uppy Dashboard + Tus) in Chromium: several files, pause/resume, reload, restart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from tests.browser.uppy_page import (
    CHUNK,
    PatchGate,
    click_upload,
    file_named,
    files,
    finished_links,
    item_button,
    make_file,
    open_page,
    pick,
    pump_until,
    server_offset,
    stored_uploads,
    wait_all_complete,
)
from tests.services.nginx import NginxProxy
from tests.support.server import ServerProcess

STORES = ("file",)

# Every CSP violation the page causes is recorded (the policy must allow what Uppy does).
RECORD_CSP = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
"""


def page_url(server: ServerProcess, path: str = "/") -> str:
    return f"{server.base_url}{path}?chunkSize={CHUNK}"


def test_two_files_pause_and_resume_one(
    page: Any, server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = server_factory()
    a = make_file(tmp_path, "a.bin", 3 * 1024 * 1024 + 5)
    b = make_file(tmp_path, "b.bin", 2 * 1024 * 1024 + 7)
    page.add_init_script(RECORD_CSP)
    gate = PatchGate(hold_at=3).install(page)
    open_page(page, page_url(server))
    pick(page, a, b)
    click_upload(page)
    gate.wait_held(page, 2)  # both uploads stand at exactly 2 chunks
    url_a = file_named(page, "a.bin")["url"]
    url_b = file_named(page, "b.bin")["url"]
    assert {url_a, url_b} == set(gate.held)

    item_button(page, "a.bin").click()  # pause a.bin
    pump_until(page, lambda: file_named(page, "a.bin")["paused"], message="a.bin paused")
    gate.drop(url_a)
    gate.closed = False
    gate.release(url_b)
    pump_until(page, lambda: file_named(page, "b.bin")["complete"], message="b.bin complete")
    assert server_offset(url_a) == 2 * CHUNK
    assert not file_named(page, "a.bin")["complete"]

    mark = gate.mark()
    item_button(page, "a.bin").click()  # resume a.bin
    wait_all_complete(page, 2)
    resumed = [s for s in gate.since(mark, url_a) if s.method == "PATCH"]
    assert resumed[0].offset == 2 * CHUNK  # from the server's offset, not from 0
    assert not [s for s in gate.since(mark) if s.method == "POST"]

    stored = stored_uploads(server.upload_dir)
    assert sorted(stored.values()) == sorted([a.read_bytes(), b.read_bytes()])
    links = pump_until(page, lambda: len(found := finished_links(page)) == 2 and found, message="two links")
    assert links == {"a.bin": url_a, "b.bin": url_b}
    assert httpx.get(links["b.bin"], timeout=10.0).content == b.read_bytes()  # the link downloads the file
    assert page.evaluate("window.__csp") == []


def test_reload_mid_upload_resumes_at_the_servers_offset(
    page: Any, server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = server_factory()
    a = make_file(tmp_path, "a.bin", 3 * 1024 * 1024 + 11)
    gate = PatchGate(hold_at=3).install(page)
    open_page(page, page_url(server))
    pick(page, a)
    click_upload(page)
    (url,) = gate.wait_held(page, 1)

    page.reload()  # the held PATCH dies with the page; the server has 2 chunks
    gate.drop(url)
    gate.closed = False
    page.locator(".uppy-Dashboard").wait_for()
    assert server_offset(url) == 2 * CHUNK
    mark = gate.mark()
    pick(page, a)  # the same file again: its stored upload URL is found
    click_upload(page)
    wait_all_complete(page, 1)

    after = gate.since(mark)
    assert not [s for s in after if s.method == "POST"], "a new upload was created"
    assert next(s for s in after if s.method == "PATCH").offset == 2 * CHUNK
    assert list(stored_uploads(server.upload_dir).values()) == [a.read_bytes()]
    assert file_named(page, "a.bin")["url"] == url


def test_server_restart_mid_upload_resumes(
    page: Any, server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = server_factory()
    a = make_file(tmp_path, "a.bin", 3 * 1024 * 1024 + 13)
    gate = PatchGate(hold_at=3).install(page)
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.method))
    open_page(page, page_url(server))
    pick(page, a)
    click_upload(page)
    (url,) = gate.wait_held(page, 1)

    server.kill()  # SIGKILL: nothing saved on the way out
    gate.closed = False
    mark = gate.mark()
    gate.release(url)  # the PATCH meets a dead server
    pump_until(page, lambda: "PATCH" in failed, message="the PATCH failed against the stopped server")
    server.start()  # same port, same upload directory
    wait_all_complete(page, 1)

    after = [s for s in gate.since(mark) if s.url == url and s.method == "PATCH"]
    assert after[0].offset == 2 * CHUNK  # the held PATCH, which never arrived
    assert after[-1].offset is not None and after[-1].offset > 2 * CHUNK
    assert not [s for s in gate.since(mark) if s.method == "POST"]
    assert list(stored_uploads(server.upload_dir).values()) == [a.read_bytes()]


def test_page_above_a_custom_base_path(page: Any, server_factory: Callable[..., ServerProcess], tmp_path: Path) -> None:
    """``--base-path /prefix/files/``: the page at /prefix/ (what a proxy that passes /prefix/ on reaches)
    uploads to /prefix/files/ through relative URLs."""
    server = server_factory(["--base-path", "/prefix/files/"])
    a = make_file(tmp_path, "a.bin", 300_000)
    gate = PatchGate().install(page, "**/prefix/files/**")
    gate.closed = False
    open_page(page, f"{server.base_url}/prefix/")
    assert page.locator("#endpoint").inner_text() == f"{server.base_url}/prefix/files/"
    pick(page, a)
    click_upload(page)
    wait_all_complete(page, 1)
    assert file_named(page, "a.bin")["url"].startswith(f"{server.base_url}/prefix/files/")
    assert list(stored_uploads(server.upload_dir).values()) == [a.read_bytes()]


def test_behind_nginx_under_a_prefix(page: Any, server_factory: Callable[..., ServerProcess], tmp_path: Path) -> None:
    """A real reverse proxy in front: nginx passes /tools/ on to pytusd (``--base-path /tools/uploads/``,
    ``--behind-proxy``); the page, its assets, its uploads and their links all go through nginx."""
    server = server_factory(["--base-path", "/tools/uploads/", "--behind-proxy"])
    a = make_file(tmp_path, "a.bin", 3 * CHUNK + 17)
    with NginxProxy([("127.0.0.1", server.port)]) as proxy:
        gate = PatchGate().install(page, "**/tools/uploads/**")
        gate.closed = False
        open_page(page, f"{proxy.url}/tools/?chunkSize={CHUNK}")
        pick(page, a)
        click_upload(page)
        wait_all_complete(page, 1)
        link = pump_until(page, lambda: finished_links(page).get("a.bin"), message="the link to a.bin")
        assert link.startswith(f"{proxy.url}/tools/uploads/")
        assert all(s.url.startswith(proxy.url) for s in gate.log)
        assert httpx.get(link, timeout=10.0).content == a.read_bytes()
    assert list(stored_uploads(server.upload_dir).values()) == [a.read_bytes()]


def test_page_loads_without_errors(page: Any, server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda message: message.type == "error" and problems.append(f"console: {message.text}"))
    page.add_init_script(RECORD_CSP)
    open_page(page, page_url(server))
    assert page.locator("#endpoint").inner_text() == server.url
    assert files(page) == []
    assert finished_links(page) == {}
    assert page.evaluate("window.__csp") == []
    assert problems == []
