"""tusd's error codes for ``tusd_errors_total{code}``: dashboards and alerts key on them.

pytusd's errors carry a status and a one-line reason, not tusd's codes, so the code is derived
here, in one place: from the status where it alone says what happened, else from the reason's
wording (tests/unit/test_metrics_codes.py pins each reason pytusd raises). An error tusd has no
code for gets ``ERR_`` and the status's name (``ERR_GONE``, ``ERR_INSUFFICIENT_STORAGE``): as
readable, and the label's values stay as few as the statuses.
"""

from __future__ import annotations

import http

from pytusd.hooks.translate import RejectedByHook
from pytusd.protocol.errors import MISMATCHING_OFFSET, HTTPError

#: status -> tusd's code, where the status alone decides
_BY_STATUS = {
    404: "ERR_UPLOAD_NOT_FOUND",
    412: "ERR_UNSUPPORTED_VERSION",
    415: "ERR_INVALID_CONTENT_TYPE",
    423: "ERR_UPLOAD_LOCKED",
    460: "ERR_CHECKSUM_MISMATCH",  # tusd 1.x's code for 460
    500: "ERR_INTERNAL_SERVER_ERROR",
    501: "ERR_NOT_IMPLEMENTED",
}

#: (words in the reason, tusd's code): the first match wins, so the more specific words come first
_BY_REASON = (
    ("origin is not allowed", "ERR_ORIGIN_NOT_ALLOWED"),
    ("final upload must not carry", "ERR_INVALID_CONCAT"),
    ("mutually exclusive", "ERR_AMBIGUOUS_UPLOAD_LENGTH"),
    ("missing Upload-Length or", "ERR_INVALID_UPLOAD_LENGTH"),
    ("Upload-Defer-Length", "ERR_INVALID_UPLOAD_LENGTH_DEFER"),
    ("deferred lengths", "ERR_INVALID_UPLOAD_LENGTH_DEFER"),
    ("Upload-Offset", "ERR_INVALID_OFFSET"),
    ("Upload-Length", "ERR_INVALID_UPLOAD_LENGTH"),
    ("concatenation is disabled", "ERR_CONCATENATION_UNSUPPORTED"),
    ("Upload-Concat", "ERR_INVALID_CONCAT"),
    ("Upload-Draft-Interop-Version", "ERR_UNSUPPORTED_VERSION"),
    ("final upload", "ERR_MODIFY_FINAL"),
    ("shutting down", "ERR_SERVER_SHUTDOWN"),
    ("newer request", "ERR_UPLOAD_INTERRUPTED"),
    ("lost the upload's lock", "ERR_UPLOAD_INTERRUPTED"),
    ("client disconnected", "ERR_UNEXPECTED_EOF"),
    ("does not match the", "ERR_CHECKSUM_MISMATCH"),  # Content-Digest / Repr-Digest
)

#: the words of a hook rejection's default reason -> tusd's code (see pytusd.hooks.translate)
_BY_HOOK = (
    ("pre-terminate", "ERR_UPLOAD_TERMINATION_REJECTED"),
    ("post-receive", "ERR_UPLOAD_STOPPED"),
    ("pre-access", "ERR_ACCESS_REJECTED"),  # pytusd's own hook, so its own code
)


def error_code(error: HTTPError) -> str:
    """tusd's code for ``error`` (see the module docstring)."""
    if isinstance(error, RejectedByHook):
        for words, code in _BY_HOOK:
            if words in error.cause:
                return code
        return "ERR_UPLOAD_REJECTED"
    if error.problem_type == MISMATCHING_OFFSET:
        return "ERR_MISMATCHED_OFFSET"
    by_status = _BY_STATUS.get(error.status)
    if by_status is not None:
        return by_status
    if error.status == 413:
        return (
            "ERR_MAX_SIZE_EXCEEDED" if "larger than the server allows" in error.reason else "ERR_UPLOAD_SIZE_EXCEEDED"
        )
    for words, code in _BY_REASON:
        if words in error.reason:
            return code
    try:
        return "ERR_" + http.HTTPStatus(error.status).name
    except ValueError:
        return f"ERR_HTTP_{error.status}"
