"""``--dir-perms``/``--file-perms``: the modes of what the file store and the file locks create.

tusd's flags and defaults (0775, 0664). As in tusd, the mode is handed to mkdir(2)/open(2), so the
process umask still takes bits away (the usual 022 turns 0775/0664 into 0755/0644): run the server
with ``umask 002`` for group-writable uploads. Only the permission bits count (tusd masks the same).
Private temporary files (staged chunks, S3 spool parts) stay 0600: they hold bytes not yet
acknowledged to anyone, and nobody else has reason to read them.
"""

from __future__ import annotations

import os
from typing import Any

from pytusd.flags import Flag

DEFAULT_DIR_PERMS = 0o775
DEFAULT_FILE_PERMS = 0o664

PERM_FLAGS: tuple[Flag, ...] = (
    Flag("dir-perms", "str", "0775", "octal mode of the directories created for uploads and locks (umask applies)"),
    Flag("file-perms", "str", "0664", "octal mode of the upload, info and lock files created (umask applies)"),
)


def parse_perms(text: str, flag: str) -> int:
    try:
        mode = int(text.strip(), 8)
    except ValueError:
        raise ValueError(f"--{flag} must be an octal mode such as 0775, not {text!r}") from None
    if not 0 <= mode <= 0o7777:
        raise ValueError(f"--{flag} must be an octal mode such as 0775, not {text!r}")
    return mode & 0o777


def perms_from_settings(settings: dict[str, Any]) -> tuple[int, int]:
    """(directory mode, file mode) from the flags; ValueError for a value that is no mode."""
    return parse_perms(str(settings["dir_perms"]), "dir-perms"), parse_perms(str(settings["file_perms"]), "file-perms")


def makedirs(path: str, mode: int) -> None:
    """``os.makedirs(path, mode, exist_ok=True)``, but ``mode`` for every directory it creates
    (Python's gives it only the last; Go's MkdirAll, tusd's, gives it all)."""
    head = os.path.dirname(path)
    if head and head != path and not os.path.exists(head):
        makedirs(head, mode)
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
