"""Errors that carry the HTTP status and the one-line reason a client sees."""

from __future__ import annotations

from collections.abc import Sequence

#: RFC 9457 problem types (IANA's HTTP problem types registry) the resumable-upload draft defines;
#: an error may carry one, and only draft clients of interop version 6+ see it as a document.
PROBLEM_BASE = "https://iana.org/assignments/http-problem-types#"
MISMATCHING_OFFSET = PROBLEM_BASE + "mismatching-upload-offset"
COMPLETED_UPLOAD = PROBLEM_BASE + "completed-upload"
INCONSISTENT_LENGTH = PROBLEM_BASE + "inconsistent-upload-length"


class HTTPError(Exception):
    """A request that must end with ``status`` and a plain-text, one-line ``reason``.

    Raised by the rules, the upload service and the front ends; the dispatcher turns it into a
    response (plain text, or a problem document for draft clients), so no rule needs to know how
    responses are written.
    """

    def __init__(
        self,
        status: int,
        reason: str,
        headers: Sequence[tuple[str, str]] = (),
        *,
        problem_type: str | None = None,
        extra: dict[str, int] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = list(headers)
        #: RFC 9457 problem type for IETF draft clients (None: plain text only).
        self.problem_type = problem_type
        #: Extension members of the problem document (e.g. expected-offset).
        self.extra = extra or {}


def bad_request(reason: str) -> HTTPError:
    return HTTPError(400, reason)


def not_found(reason: str = "upload not found") -> HTTPError:
    return HTTPError(404, reason)
