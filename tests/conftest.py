"""Shared fixtures: real pytusd servers on real TCP ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from tests.server import ServerProcess

TUS = {"Tus-Resumable": "1.0.0"}


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
