"""--dir-perms/--file-perms over a real server: the upload directory and each upload's files."""

from __future__ import annotations

import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.integration.tus_helpers import create, data_file, info_file, patch, tus_client
from tests.support.server import ServerProcess
from tests.unit.test_file_perms import umask

STORES = ("file",)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_server_creates_with_the_modes(server_factory: Callable[..., ServerProcess], tmp_path: Path) -> None:
    upload_dir = tmp_path / "uploads"  # its parent holds the server log, so must exist
    srv = server_factory(["--dir-perms", "0750", "--file-perms", "640"], upload_dir=upload_dir)
    with tus_client(srv) as c:
        url = create(c, 2)
        assert patch(c, url, b"ok", 0).status_code == 204
    assert mode(upload_dir) == 0o750 & ~umask()
    assert mode(data_file(srv, url)) == 0o640 & ~umask()
    assert mode(info_file(srv, url)) == 0o640 & ~umask()


def test_defaults_are_tusds(server: ServerProcess) -> None:
    with tus_client(server) as c:
        url = create(c, 1)
    assert mode(data_file(server, url)) == 0o664 & ~umask()
    assert mode(info_file(server, url)) == 0o664 & ~umask()


@pytest.mark.parametrize("args", [["--dir-perms", "rwx"], ["--file-perms", "0888"], ["--file-perms", "17777"]])
def test_bad_modes_are_refused(args: list[str]) -> None:
    out = subprocess.run([sys.executable, "-m", "pytusd", *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, (args, out.stderr)
    assert args[0] in out.stderr
