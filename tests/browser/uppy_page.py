"""Driving pytusd's upload page as a user would (pick files, click Upload, pause), and holding requests.

Mid-upload states are made, never waited for by time: :class:`PatchGate` intercepts the page's tus
requests (Playwright routing) and holds the n-th PATCH of each upload, so an upload stands still at
exactly ``(n - 1) * chunkSize`` bytes on the server until the test lets the request go or drops it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tests.support.wait import wait_until

CHUNK = 256 * 1024
TUS = {"Tus-Resumable": "1.0.0"}


def make_file(directory: Path, name: str, size: int) -> Path:
    path = directory / name
    path.write_bytes(os.urandom(size))
    return path


def pump_until(page: Any, predicate: Callable[[], Any], *, timeout: float = 30.0, message: str = "") -> Any:
    """``wait_until`` that lets Playwright deliver events (routes, requests) while it waits."""
    return wait_until(
        predicate, timeout=timeout, interval=0.05, message=message, sleep=lambda s: page.wait_for_timeout(s * 1000)
    )


@dataclass
class Sent:
    method: str
    url: str
    offset: int | None


@dataclass
class PatchGate:
    """Holds the ``hold_at``-th PATCH of every upload while ``closed``; logs every tus request."""

    hold_at: int = 3
    closed: bool = True
    held: dict[str, Any] = field(default_factory=dict)  # upload URL -> held route
    patches: dict[str, int] = field(default_factory=dict)
    log: list[Sent] = field(default_factory=list)

    def install(self, page: Any, pattern: str = "**/files/**") -> PatchGate:
        page.route(pattern, self._route)
        return self

    def _route(self, route: Any) -> None:
        request = route.request
        method = request.method
        offset = request.headers.get("upload-offset")
        self.log.append(Sent(method, request.url, int(offset) if offset is not None else None))
        if method == "PATCH":
            count = self.patches[request.url] = self.patches.get(request.url, 0) + 1
            if self.closed and count == self.hold_at:
                self.held[request.url] = route
                return
        route.continue_()

    def wait_held(self, page: Any, count: int) -> list[str]:
        pump_until(page, lambda: len(self.held) >= count, message=f"{count} PATCH requests held")
        return list(self.held)

    def release(self, url: str) -> None:
        """Let a held request go on to the server."""
        self.held.pop(url).continue_()

    def drop(self, url: str) -> None:
        """Drop a held request (it never reaches the server), e.g. one the page already cancelled."""
        route = self.held.pop(url)
        with suppress(Exception):  # cancelled by the page (pause, reload): nothing left to abort
            route.abort()

    def mark(self) -> int:
        return len(self.log)

    def since(self, mark: int, url: str | None = None) -> list[Sent]:
        return [s for s in self.log[mark:] if url is None or s.url == url]


def open_page(page: Any, url: str) -> None:
    page.goto(url)
    page.locator(".uppy-Dashboard").wait_for()


def pick(page: Any, *paths: Path) -> None:
    page.locator("input.uppy-Dashboard-input[type=file]:not([webkitdirectory])").first.set_input_files(
        [str(p) for p in paths]
    )


def click_upload(page: Any) -> None:
    page.locator(".uppy-StatusBar-actionBtn--upload").click()


def files(page: Any) -> list[dict[str, Any]]:
    """Uppy's view of its files: name, id, upload URL, paused, complete, error."""
    return page.evaluate(  # type: ignore[no-any-return]
        """() => window.pytusdUppy.getFiles().map(f => ({
            name: f.name, id: f.id, url: (f.tus && f.tus.uploadUrl) || f.uploadURL || null,
            paused: !!f.isPaused, complete: !!f.progress.uploadComplete, error: f.error || null}))"""
    )


def file_named(page: Any, name: str) -> dict[str, Any]:
    return next(f for f in files(page) if f["name"] == name)


def item_button(page: Any, name: str) -> Any:
    """The pause/resume/retry button on a file's tile in the Dashboard."""
    item = page.locator(f'[id="uppy_{file_named(page, name)["id"]}"]')
    return item.locator("button.uppy-Dashboard-Item-progressIndicator")


def wait_all_complete(page: Any, count: int) -> None:
    pump_until(
        page,
        lambda: len(done := [f for f in files(page) if f["complete"]]) == count and done,
        timeout=60.0,
        message=f"{count} uploads complete in the page (files: {files(page)})",
    )


def finished_links(page: Any) -> dict[str, str]:
    links = page.locator("#finished a")
    return {links.nth(i).inner_text(): links.nth(i).get_attribute("href") for i in range(links.count())}


def server_offset(url: str) -> int:
    response = httpx.head(url, headers=TUS, timeout=10.0)
    assert response.status_code == 200, response
    return int(response.headers["upload-offset"])


def stored_uploads(upload_dir: Path) -> dict[str, bytes]:
    """upload ID -> stored bytes, from the file store's data files."""
    return {p.stem: (upload_dir / p.stem).read_bytes() for p in upload_dir.glob("*.info")}
