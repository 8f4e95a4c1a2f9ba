"""Writing bytes to a file descriptor, for the file store and the serving layer alike."""

from __future__ import annotations

import os


def write_all(fd: int, data: bytes) -> int:
    """Write all of ``data`` at ``fd``'s position (``os.write`` may write less); return its length."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    return len(data)
