"""tusd's error codes for ``tusd_errors_total{code}``, from the errors pytusd really raises.

Where a rule function raises the error, it is called; errors raised inline are written as raised
(their reasons are what the mapping reads, so a reworded reason shows up here).
"""

from __future__ import annotations

import errno
from collections.abc import Callable

import pytest

from pytusd.config import Config
from pytusd.faults import storage_failure
from pytusd.handover import STOPPED_BY_REQUEST, STOPPED_LOCK_LOST
from pytusd.hooks.base import HookResponse
from pytusd.hooks.translate import rejection
from pytusd.info import UploadInfo
from pytusd.metrics.codes import error_code
from pytusd.protocol import ietf, tus
from pytusd.protocol.cors import ORIGIN_NOT_ALLOWED
from pytusd.protocol.errors import HTTPError, not_found
from pytusd.protocol.headers import parse_non_negative_int
from pytusd.protocol.urls import parse_concat
from pytusd.stores.base import StoreUnavailable
from pytusd.stores.memory import MemoryStore
from pytusd.uploads import STOPPED_BY_SHUTDOWN, UploadService


def raised(action: Callable[[], object]) -> HTTPError:
    with pytest.raises(HTTPError) as info:
        action()
    return info.value


CASES: list[tuple[str, Callable[[], HTTPError], str]] = [
    ("not found", lambda: not_found(), "ERR_UPLOAD_NOT_FOUND"),
    ("no Tus-Resumable", lambda: raised(lambda: tus.check_version("POST", {})), "ERR_UNSUPPORTED_VERSION"),
    (
        "unknown draft version",
        lambda: raised(lambda: ietf.parse_version("99")),
        "ERR_UNSUPPORTED_VERSION",
    ),
    (
        "mismatched offset",
        lambda: raised(lambda: UploadService.expect_offset(UploadInfo(id="a", size=5, offset=2), 0)),
        "ERR_MISMATCHED_OFFSET",
    ),
    (
        "missing Upload-Offset",
        lambda: raised(lambda: parse_non_negative_int(None, "Upload-Offset")),
        "ERR_INVALID_OFFSET",
    ),
    (
        "bad Upload-Length",
        lambda: raised(lambda: tus.creation_length({"upload-length": "x"}, can_defer=True)),
        "ERR_INVALID_UPLOAD_LENGTH",
    ),
    (
        "no length at all",
        lambda: raised(lambda: tus.creation_length({}, can_defer=True)),
        "ERR_INVALID_UPLOAD_LENGTH",
    ),
    (
        "both lengths",
        lambda: raised(lambda: tus.creation_length({"upload-length": "1", "upload-defer-length": "1"}, can_defer=True)),
        "ERR_AMBIGUOUS_UPLOAD_LENGTH",
    ),
    (
        "bad Upload-Defer-Length",
        lambda: raised(lambda: tus.creation_length({"upload-defer-length": "2"}, can_defer=True)),
        "ERR_INVALID_UPLOAD_LENGTH_DEFER",
    ),
    (
        "bad Upload-Concat",
        lambda: raised(lambda: parse_concat("final;", "/files/", "http://h")),
        "ERR_INVALID_CONCAT",
    ),
    ("concatenation off", lambda: HTTPError(400, "concatenation is disabled"), "ERR_CONCATENATION_UNSUPPORTED"),
    (
        "final with a length",
        lambda: HTTPError(400, "a final upload must not carry Upload-Length or Upload-Defer-Length"),
        "ERR_INVALID_CONCAT",
    ),
    ("final with data", lambda: HTTPError(403, "a final upload cannot carry data"), "ERR_MODIFY_FINAL"),
    ("PATCH of a final", lambda: HTTPError(403, "a final upload cannot be modified"), "ERR_MODIFY_FINAL"),
    ("wrong content type", lambda: HTTPError(415, "Content-Type must be x"), "ERR_INVALID_CONTENT_TYPE"),
    ("origin not allowed", lambda: HTTPError(403, ORIGIN_NOT_ALLOWED), "ERR_ORIGIN_NOT_ALLOWED"),
    (
        "over --max-size",
        lambda: raised(lambda: UploadService(MemoryStore(), Config(max_size=1)).check_size(2)),
        "ERR_MAX_SIZE_EXCEEDED",
    ),
    ("body too long", lambda: HTTPError(413, "body is longer than Upload-Length"), "ERR_UPLOAD_SIZE_EXCEEDED"),
    ("store's own limit", lambda: HTTPError(413, "too large for S3"), "ERR_UPLOAD_SIZE_EXCEEDED"),
    ("locked", lambda: HTTPError(423, "upload is locked by another request"), "ERR_UPLOAD_LOCKED"),
    ("checksum", lambda: HTTPError(460, "checksum mismatch"), "ERR_CHECKSUM_MISMATCH"),
    ("digest", lambda: HTTPError(400, "Content-Digest does not match the content"), "ERR_CHECKSUM_MISMATCH"),
    ("disconnected", lambda: HTTPError(400, "client disconnected"), "ERR_UNEXPECTED_EOF"),
    ("shutdown", lambda: HTTPError(503, f"upload {STOPPED_BY_SHUTDOWN}"), "ERR_SERVER_SHUTDOWN"),
    ("newer request", lambda: HTTPError(400, f"upload {STOPPED_BY_REQUEST}"), "ERR_UPLOAD_INTERRUPTED"),
    ("lock lost", lambda: HTTPError(503, f"upload {STOPPED_LOCK_LOST}"), "ERR_UPLOAD_INTERRUPTED"),
    ("internal", lambda: HTTPError(500, "pre-create hook chose an invalid upload ID"), "ERR_INTERNAL_SERVER_ERROR"),
    (
        "pre-create rejection",
        lambda: rejection(HookResponse(body="no"), 400, "upload rejected by a pre-create hook"),
        "ERR_UPLOAD_REJECTED",
    ),
    (
        "pre-finish rejection",
        lambda: rejection(HookResponse(status=422), 400, "upload rejected by a pre-finish hook"),
        "ERR_UPLOAD_REJECTED",
    ),
    (
        "pre-terminate rejection",
        lambda: rejection(HookResponse(body="keep it"), 400, "termination rejected by a pre-terminate hook"),
        "ERR_UPLOAD_TERMINATION_REJECTED",
    ),
    (
        "post-receive stop",
        lambda: rejection(HookResponse(), 400, "upload stopped by a post-receive hook"),
        "ERR_UPLOAD_STOPPED",
    ),
    (
        "pre-access rejection",
        lambda: rejection(HookResponse(), 403, "access denied by a pre-access hook"),
        "ERR_ACCESS_REJECTED",
    ),
    # Without a tusd code: ERR_ and the status's name.
    ("full disk", lambda: storage_failure(OSError(errno.ENOSPC, "full")), "ERR_INSUFFICIENT_STORAGE"),
    ("store down", lambda: storage_failure(StoreUnavailable("S3 down")), "ERR_SERVICE_UNAVAILABLE"),
    ("expired", lambda: HTTPError(410, "upload expired"), "ERR_GONE"),
    ("method", lambda: HTTPError(405, "method not allowed"), "ERR_METHOD_NOT_ALLOWED"),
    ("hook gateway", lambda: HTTPError(502, "hook failed: bad answer"), "ERR_BAD_GATEWAY"),
    ("bad metadata", lambda: HTTPError(400, "Upload-Metadata header is too large"), "ERR_BAD_REQUEST"),
    ("no phrase", lambda: HTTPError(499, "odd"), "ERR_HTTP_499"),
]


@pytest.mark.parametrize(("make", "code"), [(make, code) for _, make, code in CASES], ids=[c[0] for c in CASES])
def test_error_code(make: Callable[[], HTTPError], code: str) -> None:
    assert error_code(make()) == code
