"""Storage failures as answers: the one place that decides what a store error or an OS error becomes.

A full disk is 507 and a store that is down (S3 unreachable, too many open files here) is 503 with
``Retry-After``: the client keeps its bytes and tries again. A name the file system cannot hold
(an over-long or nested ID) names no upload: 404. A 500 is left for what only an operator can fix
(permissions, a read-only or failing disk, a store that misbehaves), and only a 500 is logged
with its traceback: an outage would otherwise flood the log with identical ones.
"""

from __future__ import annotations

import errno
import logging

from pytusd.protocol.errors import HTTPError
from pytusd.stores.base import StoreError, StoreUnavailable

logger = logging.getLogger("pytusd")

#: Seconds a client is asked to wait before it retries after a 503 of the store.
RETRY_AFTER = "5"

INSUFFICIENT_STORAGE = (507, "insufficient storage")
OUT_OF_DESCRIPTORS = (503, "server is out of file descriptors, retry shortly")
NO_SUCH_NAME = (404, "upload not found")
STORAGE_ERROR = (500, "storage error")

_BY_ERRNO: dict[int, tuple[int, str]] = {
    errno.ENOSPC: INSUFFICIENT_STORAGE,
    errno.EDQUOT: INSUFFICIENT_STORAGE,
    errno.EMFILE: OUT_OF_DESCRIPTORS,
    errno.ENFILE: OUT_OF_DESCRIPTORS,
    errno.ENOBUFS: (503, "server is out of buffer space, retry shortly"),
    errno.ENOMEM: (503, "server is out of memory, retry shortly"),
    # Only a name from the request (an upload ID) can be too long, lead through a file or end at
    # a directory: there is no such upload.
    errno.ENAMETOOLONG: NO_SUCH_NAME,
    errno.ENOTDIR: NO_SUCH_NAME,
    errno.EISDIR: NO_SUCH_NAME,
    errno.ENOENT: NO_SUCH_NAME,
}

#: Errors that mean the server is set up wrongly (worth a clearer log line than the errno's).
_MISCONFIGURED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def errno_answer(code: int | None) -> tuple[int, str]:
    """The status and one-line reason for an OS error of number ``code`` (None: unknown)."""
    return _BY_ERRNO.get(code, STORAGE_ERROR) if code is not None else STORAGE_ERROR


def storage_failure(exc: StoreError | OSError) -> HTTPError:
    """What the client is told when a store (or the OS below it) failed; see the module docstring."""
    if isinstance(exc, StoreUnavailable):
        status, reason = 503, "storage is unavailable, retry shortly"
    elif isinstance(exc, OSError):
        status, reason = errno_answer(exc.errno)
    else:
        status, reason = STORAGE_ERROR
    headers = [("retry-after", RETRY_AFTER)] if status == 503 else []
    return HTTPError(status, reason, headers)


def answer_storage_failure(exc: StoreError | OSError) -> HTTPError:
    """:func:`storage_failure`, logged: a 500 with its traceback, anything else in one line."""
    error = storage_failure(exc)
    if error.status == 500:
        if isinstance(exc, OSError) and exc.errno in _MISCONFIGURED:
            logger.error("store failure: the server may not use its storage (check owner, mode, mount)", exc_info=exc)
        else:
            logger.error("store failure", exc_info=exc)
    elif error.status != 404:
        logger.warning("store failure (answered %d): %s", error.status, exc)
    return error
