"""Shared fixtures: real pytusd servers on real TCP ports.

The store the servers use is chosen per session by ``PYTUSD_TEST_STORE`` (``file``, the default,
``s3``, ``gcs`` or ``azure``): scripts/test runs the whole suite on the file store, then
tests/integration and tests/interop again on S3, GCS and Azure (real servers or emulators). There, a
test that inspects the file store's files is skipped. A module about some stores only lists them in
``STORES`` (e.g. ``STORES = ("file",)``); it is skipped on the others.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, settings

from tests.services.redis_server import RedisServer
from tests.support.server import ServerProcess, begin_test, current_backend, logs_of_current_test

TUS = {"Tus-Resumable": "1.0.0"}

# Property tests (tests/unit/test_properties_*.py) are deterministic: the same examples every run,
# no example database, no deadline (a loaded CI machine must not fail them). PYTUSD_HYPOTHESIS=long
# explores ten times as many random examples by hand (e.g. before a release).
settings.register_profile(
    "pytusd", derandomize=True, database=None, deadline=None, max_examples=200,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip
settings.register_profile(
    "long", derandomize=False, database=None, deadline=None, max_examples=2000,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip
settings.load_profile("long" if os.environ.get("PYTUSD_HYPOTHESIS") == "long" else "pytusd")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    store = current_backend()
    for item in items:
        stores = getattr(item.module, "STORES", None) if item.module is not None else None
        if stores is not None and store not in stores:
            item.add_marker(pytest.mark.skip(reason=f"not a test of the {store} store"))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    begin_test()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing test's report ends with the log tails of the servers it met (see tests/support/server.py)."""
    excinfo = call.excinfo
    if excinfo is not None and not excinfo.errisinstance((pytest.skip.Exception, pytest.xfail.Exception)):
        for name, tail in logs_of_current_test():
            item.add_report_section(call.when, f"log tail of {name}", tail or "(empty)")
    yield


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One default server per test module (tests create their own uploads, so they can share)."""
    proc = ServerProcess(tmp_path_factory.mktemp("srv") / "data").start()
    yield proc
    proc.stop()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start servers with custom flags; all are stopped at the end of the test."""
    started: list[ServerProcess] = []

    def start(args: Sequence[str] = (), *, upload_dir: Path | None = None, **kwargs: object) -> ServerProcess:
        directory = upload_dir or tmp_path / f"data{len(started)}"
        proc = ServerProcess(directory, args, **kwargs).start()  # type: ignore[arg-type]
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    """One client per module: creating one costs ~90 ms (verify=False: plain HTTP needs no CA bundle)."""
    with httpx.Client(base_url=server.base_url, headers=TUS, timeout=30.0, verify=False) as c:
        yield c


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private redis-server for the session; tests keep apart by key prefix (see ``redis_prefix``)."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_prefix(request: pytest.FixtureRequest) -> str:
    """Keys and channels of this test only."""
    return f"t{abs(hash(request.node.nodeid)):x}:"
