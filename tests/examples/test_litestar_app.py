"""examples/litestar_app run for real: uvicorn in its own process, tus clients over TCP."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support import examples
from tests.support.examples import Example, run_example
from tests.support.server import ServerStartError

pytest.importorskip("litestar")

EXAMPLE = examples.ROOT / "examples" / "litestar_app"


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Example]:
    try:
        with run_example(EXAMPLE, tmp_path_factory.mktemp("litestar"), "/uploads/") as running:
            yield running
    except ServerStartError as exc:
        pytest.fail(str(exc))


def test_creating_needs_a_valid_token(example: Example) -> None:
    examples.check_creating_needs_a_valid_token(example)


def test_tuspy_is_refused_without_a_login(example: Example, tmp_path: Path) -> None:
    examples.check_tuspy_refused_without_a_login(example, tmp_path)


def test_tuspy_upload_is_byte_exact(example: Example, tmp_path: Path) -> None:
    examples.check_tuspy_upload_is_byte_exact(example, tmp_path)


def test_only_the_owner_has_access(example: Example) -> None:
    examples.check_only_the_owner_has_access(example)


def test_the_apps_own_routes(example: Example) -> None:
    with example.client("alice") as alice, example.client(None) as anonymous:
        assert alice.get("/me").json() == {"user": "alice", "uploads": "/uploads/"}
        assert anonymous.get("/me").status_code == 401


def test_bodies_above_litestars_request_size_limit(example: Example) -> None:
    """Litestar limits request bodies to 10 MB by default, but only those it reads itself: a mounted
    ASGI app receives the body untouched."""
    data = os.urandom(12 * 1024 * 1024)
    with example.client("alice") as alice:
        url = alice.post(example.prefix, headers={"Upload-Length": str(len(data))}).headers["location"]
        patched = alice.patch(url, content=data, headers={"Upload-Offset": "0", "Content-Type": examples.OCTET})
        assert patched.status_code == 204 and patched.headers["upload-offset"] == str(len(data))
        assert alice.get(url).content == data
