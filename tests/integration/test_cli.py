"""The pytusd command: flags, environment, URL printed on start, Unix socket, JSON logs."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.services.redis_server import RedisServer
from tests.support.server import ServerProcess, answers, exited, free_port, wait_for_start

from pytusd import __version__
from pytusd.cli import build_parser
from pytusd.flags import parse_duration, parse_size

TUS = {"Tus-Resumable": "1.0.0"}
STORES = ("file",)  # the command line, not the store, is under test


def test_version_flag() -> None:
    out = subprocess.run([sys.executable, "-m", "pytusd", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"pytusd {__version__}"


@pytest.mark.parametrize("text,seconds", [("90", 90), ("90s", 90), ("30m", 1800), ("24h", 86400), ("1h30m", 5400),
                                          ("500ms", 0.5), ("0", 0)])  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "5x", "-5s", "5 s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(Exception, match="invalid duration"):
        parse_duration(text)


def test_sizes() -> None:
    assert parse_size("1048576") == 1048576
    assert parse_size("512K") == 512 * 1024
    assert parse_size("2G") == 2 * 1024**3
    assert parse_size("10MiB") == 10 * 1024**2


def test_environment_sets_defaults_and_flags_win() -> None:
    env = {"PYTUSD_PORT": "1234", "PYTUSD_MAX_SIZE": "1M", "PYTUSD_BEHIND_PROXY": "true"}
    args = build_parser(env).parse_args([])
    assert (args.port, args.max_size, args.behind_proxy) == (1234, 1024 * 1024, True)
    args = build_parser(env).parse_args(["--port", "99", "--no-behind-proxy"])
    assert (args.port, args.behind_proxy) == (99, False)


def test_environment_configures_a_real_server(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "data", env={"PYTUSD_MAX_SIZE": "100", "PYTUSD_BASE_PATH": "/files/"}).start()
    try:
        options = httpx.options(proc.url)
        assert options.headers["tus-max-size"] == "100"
        assert httpx.post(proc.url, headers={**TUS, "Upload-Length": "101"}).status_code == 413
    finally:
        proc.stop()


def test_redis_url_from_the_environment(tmp_path: Path) -> None:
    """PYTUSD_REDIS_URL puts the locks in Redis: with that Redis gone, a PATCH is 503 (file locks need none)."""
    with RedisServer() as redis_server:
        proc = ServerProcess(tmp_path / "data", env={"PYTUSD_REDIS_URL": redis_server.url}).start()
        try:
            with httpx.Client(headers=TUS) as client:
                location = client.post(proc.url, headers={"Upload-Length": "4"}).headers["location"]
                patch = {"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
                assert client.patch(location, content=b"ab", headers=patch).status_code == 204
                redis_server.kill()
                response = client.patch(location, content=b"cd", headers={**patch, "Upload-Offset": "2"})
                assert response.status_code == 503
                assert response.headers["retry-after"] == "1"
        finally:
            proc.stop()


def test_prints_url_and_serves_a_custom_base_path(tmp_path: Path) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "pytusd", "--host", "127.0.0.1", "--port", str(port),
           "--upload-dir", str(tmp_path / "d"), "--base-path", "uploads"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/uploads/" in line
        _wait_http(f"http://127.0.0.1:{port}/uploads/", proc)
        created = httpx.post(f"http://127.0.0.1:{port}/uploads/", headers={**TUS, "Upload-Length": "1"})
        assert created.status_code == 201
        assert created.headers["location"].startswith(f"http://127.0.0.1:{port}/uploads/")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_unix_socket(tmp_path: Path) -> None:
    sock_path = tmp_path / "pytusd.sock"
    cmd = [sys.executable, "-m", "pytusd", "--unix-sock", str(sock_path), "--upload-dir", str(tmp_path / "d")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_start(sock_path.exists, what=f"the socket {sock_path}", timeout=20, alive=exited(proc))
        transport = httpx.HTTPTransport(uds=str(sock_path))
        with httpx.Client(transport=transport, base_url="http://localhost", headers=TUS) as client:
            created = client.post("/files/", headers={"Upload-Length": "3"})
            assert created.status_code == 201
            path = httpx.URL(created.headers["location"]).path
            patched = client.patch(
                path, content=b"abc", headers={"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
            )
            assert patched.headers["upload-offset"] == "3"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_json_logs(tmp_path: Path) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "pytusd", "--host", "127.0.0.1", "--port", str(port),
           "--upload-dir", str(tmp_path / "d"), "--log-format", "json"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_http(f"http://127.0.0.1:{port}/files/", proc)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "no log output"
    for line in lines:
        entry = json.loads(line)
        assert {"time", "level", "logger", "msg"} <= entry.keys()


def test_bad_flag_values_are_refused() -> None:
    bad = (
        ["--log-format", "xml"],
        ["--workers", "0"],
        ["--max-size", "lots"],
        ["--expire-after", "soon"],
        ["--redis-url", "http://127.0.0.1:6379/0"],
        ["--redis-url", "redis://x", "--redis-lock-ttl", "0.5s"],
    )
    for args in bad:
        out = subprocess.run([sys.executable, "-m", "pytusd", *args], capture_output=True, text=True)
        assert out.returncode == 2, args
        assert "error" in out.stderr


def _wait_http(url: str, proc: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    wait_for_start(answers(url), what=f"server at {url}", timeout=timeout, alive=exited(proc))


def test_no_stray_listeners_left(tmp_path: Path) -> None:
    """A stopped server frees its port (the next start on it works)."""
    port = free_port()
    for _ in range(2):
        proc = ServerProcess(tmp_path / "data")
        proc.port = port
        proc.start()
        assert proc.stop() == 0
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
    assert os.path.isdir(tmp_path / "data")


def test_lifts_its_open_file_limit_to_the_hard_limit(tmp_path: Path) -> None:
    """As Go programs do (tusd too): a soft limit of 1024 would cap a server at a few hundred uploads."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 256:
        pytest.skip(f"hard limit {hard}: nothing to lift")
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # the server inherits this
    try:
        server = ServerProcess(tmp_path / "data").start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        assert server.proc is not None
        limits = Path(f"/proc/{server.proc.pid}/limits").read_text()
        line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
        assert line.split()[3:5] == [str(hard), str(hard)], line
    finally:
        server.stop()
