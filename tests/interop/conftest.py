"""Fixtures of the interop tests: the tus-js-client driver (Node)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = Path(__file__).resolve().parent / "node"
DRIVER = NODE_DIR / "driver.mjs"
INSTALL_SCRIPT = ROOT / "scripts" / "install-node-deps.sh"

TusJs = Callable[..., dict[str, Any]]


@pytest.fixture(scope="session")
def node_deps() -> str:
    """Path of ``node``, with tests/interop/node/node_modules installed exactly from the lock file."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the tus-js-client interop tests need Node.js >= 18 and npm")
    done = subprocess.run([str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        pytest.fail(f"scripts/install-node-deps.sh failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return node


def run_tusjs(node: str, config: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    """Run the driver once; returns its JSON result (``ok`` says whether the action succeeded)."""
    config = {"timeoutMs": int((timeout - 5) * 1000), **config}
    done = subprocess.run(
        [node, str(DRIVER), json.dumps(config)],
        cwd=NODE_DIR, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise AssertionError(f"driver printed no result (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["exitCode"] = done.returncode
    result["stderr"] = done.stderr
    return result


@pytest.fixture
def tusjs(node_deps: str) -> TusJs:
    """``tusjs(config, timeout=60)``: run tus-js-client through node/driver.mjs."""

    def run(config: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        return run_tusjs(node_deps, config, timeout)

    return run
