"""Files and descriptors: what the file store, the file locker and the serving layer share."""

from __future__ import annotations

import os

#: What opening an upload's path raises when there is nothing there: no such file, or a file where
#: a directory would be (an ID nested below another upload, ``ID/x``, leads through ``ID``'s data file).
MISSING: tuple[type[OSError], ...] = (FileNotFoundError, NotADirectoryError)


def write_all(fd: int, data: bytes) -> int:
    """Write all of ``data`` at ``fd``'s position (``os.write`` may write less); return its length."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    return len(data)
