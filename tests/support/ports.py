"""Free TCP ports for the servers the tests start, without clashes between test runs.

scripts/test runs the object-store passes side by side. Ports picked with ``bind(port 0)`` come from
the kernel's ephemeral range, which every pass (and every outgoing connection) draws from, so a port
one pass found free could be taken by another before its server binds it. Instead each store's
pass gets its own band below the ephemeral range (32768 and up on Linux), and hands out its ports
in turn: no other pass, and no client socket, ever picks from it.
"""

from __future__ import annotations

import os
import random
import socket
import threading

#: Ports 10000-31999 in four bands, one per value of PYTUSD_TEST_STORE.
FIRST, BAND = 10000, 5500
BANDS = {"file": 0, "s3": 1, "gcs": 2, "azure": 3}

_lock = threading.Lock()
_band = BANDS.get(os.environ.get("PYTUSD_TEST_STORE", "file"), 0)
# A random start, so that a run right after another does not meet its ports in TIME_WAIT.
_next = random.randrange(BAND)


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now and that no other test run will pick."""
    global _next
    with _lock:
        for _ in range(BAND):
            port = FIRST + _band * BAND + _next
            _next = (_next + 1) % BAND
            if _free(port):
                return port
    raise OSError("no free port left in this test run's band")
