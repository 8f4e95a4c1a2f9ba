"""Errors that carry the HTTP status and the one-line reason a client sees."""

from __future__ import annotations

from collections.abc import Sequence


class HTTPError(Exception):
    """A request that must end with ``status`` and a plain-text, one-line ``reason``.

    Raised anywhere below the handler; the handler turns it into a response, so no
    rule needs to know how responses are written.
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
