"""Shared fixtures: real pytusd servers on real TCP ports, on each store.

Every test module under tests/integration and tests/interop runs once per store in
``PYTUSD_TEST_STORES`` (default: file and s3): servers started by the module (through these
fixtures or ``ServerProcess`` directly) use that store. A module that is about one store only sets
``STORES = ("file",)``. On S3, a test that inspects the file store's files is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from tests.server import ServerProcess, set_backend

TUS = {"Tus-Resumable": "1.0.0"}
STORES = tuple(kind for kind in os.environ.get("PYTUSD_TEST_STORES", "file,s3").split(",") if kind)
PER_STORE_DIRS = ("integration", "interop")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_backend" not in metafunc.fixturenames:
        return
    path = str(metafunc.module.__file__)
    if not any(f"{os.sep}tests{os.sep}{d}{os.sep}" in path for d in PER_STORE_DIRS):
        return
    wanted = getattr(metafunc.module, "STORES", STORES)
    metafunc.parametrize("store_backend", [kind for kind in STORES if kind in wanted], indirect=True, scope="module")


@pytest.fixture(scope="module", autouse=True)
def store_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The store this module's servers use (parametrized for integration and interop tests)."""
    kind = getattr(request, "param", "file")
    set_backend(kind)
    yield kind
    set_backend("file")


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


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers=TUS, timeout=30.0) as c:
        yield c
