#!/usr/bin/env python3
"""Run pytusd instances and nginx in front of them as ONE process tree (bench/servers.py).

    python bench/cluster_launcher.py PLAN.json

The harness measures a server by its process tree (CPU, RSS from /proc), so the
servers behind a proxy and the proxy itself must all descend from one process:
this one. PLAN (written by servers.PytusdNginx)::

    {"backends": [{"name": "pytusd#1", "cmd": [...], "port": 41001}, ...],
     "front": {"name": "nginx", "cmd": [...], "log": "/tmp/.../nginx/error.log"}}

Starts every backend, waits until each answers HTTP on its port, then starts the
front, so that when the front answers (the harness's readiness check) everything
behind it is up. Then it sleeps until a signal: on SIGTERM or SIGINT it stops
all children (front first) and exits 0; if any child exits on its own, it stops
the others and exits 1, so the harness sees the server as dead. Children inherit
stdout/stderr (the harness's log of this server). Standard library only.
"""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
STOP_TIMEOUT = 8.0  # the harness SIGKILLs the process group after 10 s
READY_TIMEOUT = 60.0


def say(msg: str) -> None:
    print(f"[cluster_launcher] {msg}", flush=True)


def answers(port: int) -> bool:
    """Does an HTTP server answer on 127.0.0.1:port (any status)?"""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("OPTIONS", "/files/", headers={"Tus-Resumable": "1.0.0"})
        conn.getresponse().read()
        return True
    except OSError:
        return False
    finally:
        conn.close()


def tail(path: str | None, n: int = 15) -> str:
    if not path:
        return ""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError as e:
        return f"(cannot read {path}: {e})"


class Child:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.name: str = spec["name"]
        self.cmd: list[str] = spec["cmd"]
        self.port: int | None = spec.get("port")
        self.log: str | None = spec.get("log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL)
        say(f"started {self.name} (pid {self.proc.pid}): {' '.join(self.cmd)}")

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def died(self) -> str:
        extra = tail(self.log)
        return f"{self.name} exited with code {self.exited()}" + (f"; {self.log}:\n{extra}" if extra else "")


def stop_all(children: list[Child]) -> None:
    """SIGTERM to every running child (front first), then SIGKILL whoever is left after STOP_TIMEOUT."""
    live = [c.proc for c in reversed(children) if c.proc is not None and c.proc.poll() is None]
    for proc in live:
        proc.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    for proc in live:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_ready(children: list[Child], backend: Child, stopping: Callable[[], bool]) -> str | None:
    """Wait until backend answers on its port; an error message if a child died or time ran out."""
    assert backend.port is not None
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline and not stopping():
        for c in children:
            if c.exited() is not None:
                return c.died()
        if answers(backend.port):
            return None
        time.sleep(0.1)
    return None if stopping() else f"{backend.name} did not answer on port {backend.port} within {READY_TIMEOUT:.0f} s"


def main() -> int:
    plan = json.loads(Path(sys.argv[1]).read_text())
    backends = [Child(b) for b in plan["backends"]]
    children = [*backends, Child(plan["front"])]
    stop = {"requested": False}

    def on_stop(signum: int, _frame: object) -> None:
        stop["requested"] = True

    # While starting, a stop signal only sets the flag (checked between steps).
    for sig in STOP_SIGNALS:
        signal.signal(sig, on_stop)
    error = None
    for b in backends:
        b.start()
    for b in backends:
        if stop["requested"] or (error := wait_ready(children, b, lambda: stop["requested"])):
            break
    if not (stop["requested"] or error):
        children[-1].start()

    # Then sleep until a stop signal or a child's exit: blocked, they queue up for sigtimedwait
    # (its timeout only guards against a missed SIGCHLD). A signal mask is inherited through
    # fork and exec, so it is blocked only now that every child runs.
    signal.pthread_sigmask(signal.SIG_BLOCK, {*STOP_SIGNALS, signal.SIGCHLD})
    while not (stop["requested"] or error):
        for c in children:
            if c.proc is not None and c.exited() is not None:
                error = c.died()
                break
        else:
            info = signal.sigtimedwait({*STOP_SIGNALS, signal.SIGCHLD}, 1.0)
            stop["requested"] = info is not None and info.si_signo in STOP_SIGNALS
    if error:
        say(error)
    say("stopping")
    stop_all(children)
    return 1 if error else 0


if __name__ == "__main__":
    sys.exit(main())
