"""The wheel carries the upload page: built as README says, installed elsewhere, served without Node.

The wheel is built with the project's build command (``pip wheel . --no-deps``, which runs
hatch_build.py), installed into a fresh venv without its dependencies (those come from the test
venv through a path file, so nothing is downloaded), and started with only that venv on PATH.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import httpx
from tests.support.server import answers, free_port, kill_tree, launch

ROOT = Path(__file__).resolve().parents[2]
UPPY = ("pytusd/page/static/uppy/uppy.min.js", "pytusd/page/static/uppy/uppy.min.css")


def run(*cmd: str | Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_wheel_serves_the_page_without_node(tmp_path: Path) -> None:
    run(sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "-q", "-w", tmp_path / "dist")
    (wheel,) = (tmp_path / "dist").glob("pytusd-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert set(UPPY) <= names
    assert not [n for n in names if "node_modules" in n or n.startswith("web/")]

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q", "--no-deps", wheel)
    site = Path(run(venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    # The dependencies from the test venv (its .pth files, the editable pytusd among them, are not read).
    (site / "test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTUSD_") and k != "PYTHONPATH"}
    env["PATH"] = str(venv / "bin")  # no node, no npm
    where = run(venv / "bin" / "python", "-c", "import pytusd.page; print(pytusd.page.__file__)", env=env)
    assert where.startswith(str(site))

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [str(venv / "bin" / "pytusd"), "--host", "127.0.0.1", "--port", str(port),
           "--upload-dir", str(tmp_path / "d")]  # fmt: skip
    proc = launch(cmd, log_path=tmp_path / "server.log", ready=answers(f"{base}/files/"), what="pytusd from the wheel",
                  timeout=30.0, env=env, cwd=tmp_path)  # fmt: skip
    try:
        page = httpx.get(f"{base}/", timeout=10.0)
        assert page.status_code == 200
        assert 'src="_page/uppy/uppy.min.js"' in page.text
        uppy = httpx.get(f"{base}/_page/uppy/uppy.min.js", timeout=10.0)
        assert uppy.status_code == 200
        assert uppy.content == (ROOT / "web" / "node_modules" / "uppy" / "dist" / "uppy.min.js").read_bytes()
    finally:
        kill_tree(proc.pid)
        proc.wait()
