"""The upload page in a real browser: Playwright (PyPI) driving Debian's Chromium, never a downloaded one.

One browser per module, a fresh context (so a fresh localStorage) per test. A failing test leaves a
screenshot of each of its pages under ``test-artifacts/browser/`` (gitignored).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytusd.page import available

CHROMIUM = os.environ.get("PYTUSD_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
#: The machine's network is closed: nothing in the background, no QUIC probes.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


# Per module, not per session: while Playwright's sync API is open, its event loop counts as running in
# this thread, and later tests' asyncio.run() would refuse to start.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra)")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)) and shutil.which(CHROMIUM) is None:
        pytest.skip(f"Chromium is not installed at {CHROMIUM}: run scripts/install-system-deps.sh as root")
    if not available():
        pytest.skip("the upload page has no Uppy files: install with npm available (pip install -e .)")
    with sync_api.sync_playwright() as playwright:
        # launch() gives every browser a fresh, temporary user-data-dir.
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    ctx = browser.new_context()
    ctx.set_default_timeout(30_000)  # a bound on hangs, not an expectation of speed
    request.node._browser_context = ctx
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: Any) -> Any:
    return context.new_page()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    ctx = getattr(item, "_browser_context", None)
    if not report.failed or ctx is None or call.when == "teardown":
        return
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid)
    for number, open_page in enumerate(ctx.pages):
        path = ARTIFACTS / f"{name}-{number}.png"
        try:
            open_page.screenshot(path=str(path), full_page=True)
        except Exception as exc:  # a crashed page must not hide the test's own failure
            report.sections.append(("screenshot", f"could not take {path}: {exc}"))
        else:
            report.sections.append(("screenshot", str(path)))
