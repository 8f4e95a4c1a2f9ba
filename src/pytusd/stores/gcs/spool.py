"""Local files on the way to GCS: a request body is spooled to disk, then uploaded as one object.

GCS wants an object whole (an upload is atomic), and a PATCH body may be large, so it waits in a
file, never in memory. The files live in a directory of this process below the upload directory;
a process that died (SIGKILL) leaves its directory behind, and the next store to start there
removes it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

_DIR_PREFIX = "spool-"


def open_spool_dir(parent: str) -> str:
    """A fresh spool directory of this process in ``parent``, after removing those of dead ones."""
    os.makedirs(parent, exist_ok=True)
    for entry in os.listdir(parent):
        pid = entry[len(_DIR_PREFIX) :].split("-", 1)[0] if entry.startswith(_DIR_PREFIX) else ""
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{_DIR_PREFIX}{os.getpid()}-", dir=parent)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Spool:
    """One request body in a temporary file; :meth:`remove` deletes it (on every path)."""

    __slots__ = ("fd", "path", "size")

    def __init__(self, directory: str) -> None:
        self.fd, self.path = tempfile.mkstemp(dir=directory, suffix=".spool")
        self.size = 0

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            self.size += written
            view = view[written:]

    def remove(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
