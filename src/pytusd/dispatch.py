"""One request in, one response out: pick the protocol, turn errors into answers, add CORS.

A request that carries ``Upload-Draft-Interop-Version`` follows the IETF draft (:mod:`pytusd.ietf`),
and so does one that carries neither it nor ``Tus-Resumable`` but is plainly a resumable upload
request of the coming RFC (:func:`~pytusd.protocol.ietf.unversioned_is_draft`: the latest draft's
rules, without 104s); every other one is tus 1.0.0 (:mod:`pytusd.tus`). Both front ends raise
:class:`~pytusd.protocol.errors.HTTPError`; here it becomes plain text, or an RFC 9457 problem
document for draft clients that understand one. The web server is not known here either: the ASGI
app builds the :class:`~pytusd.messages.Request` and writes the :class:`~pytusd.messages.Response`.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from pytusd.faults import answer_storage_failure
from pytusd.hooks.base import HookError
from pytusd.hooks.translate import RejectedByHook
from pytusd.ietf import IetfProtocol
from pytusd.locks.base import LockTimeout, LockUnavailable
from pytusd.messages import Request, Response
from pytusd.protocol import ietf
from pytusd.protocol.cors import ORIGIN_NOT_ALLOWED, policy_from_config
from pytusd.protocol.errors import HTTPError, not_found
from pytusd.protocol.tus import TUS_VERSION
from pytusd.protocol.urls import id_from_path
from pytusd.stores.base import StoreError, UploadNotFound
from pytusd.tus import TusProtocol
from pytusd.uploads import UploadService

logger = logging.getLogger("pytusd")


class Dispatcher:
    """Serves both protocols on one base path, for one upload service."""

    def __init__(self, service: UploadService) -> None:
        self.service = service
        self.config = service.config
        self.tus = TusProtocol(service)
        self.ietf = IetfProtocol(service)
        self.cors = policy_from_config(self.config)

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        metrics = self.service.metrics
        method = _method(request)
        metrics.request(method)
        origin = request.headers.get("origin")
        cors_ok = self.cors.allowed(origin)
        draft_version = None
        error: HTTPError | None = None
        try:
            draft_version = ietf.parse_version(request.headers.get("upload-draft-interop-version"))
            if self.cors.refuses(origin):
                # As tusd, before anything else: no hook runs, nothing is read or stored.
                raise HTTPError(403, ORIGIN_NOT_ALLOWED)
            if draft_version is None and ietf.unversioned_is_draft(method, request.headers):
                draft_version = ietf.LATEST_VERSION
                # The draft: no 104 to a request whose interop version is missing.
                request = dataclasses.replace(request, send_interim=None)
            response = await self._route(request, method, draft_version, cors_ok)
        except HTTPError as exc:
            error = exc
        except UploadNotFound:
            error = not_found()
        except LockTimeout:
            error = HTTPError(423, "upload is locked by another request that did not let go")
        except LockUnavailable as exc:
            logger.warning("lock service unavailable: %s", exc)
            error = HTTPError(503, "lock service unavailable, retry shortly", [("retry-after", "1")])
        except HookError as exc:  # the hooks layer logged it
            status = getattr(exc, "status", 500)
            status = status if 400 <= status <= 599 else 500  # 400: an unusable change (InvalidChange)
            error = HTTPError(status, f"hook failed: {_one_line(str(exc))}")
        except (StoreError, OSError) as exc:
            error = answer_storage_failure(exc)
        except Exception:
            # A bug of ours or of a store. Answered here rather than by the web server: counted,
            # plain text, and with the CORS headers a browser needs to read even a 500.
            logger.exception("unexpected error answering %r %r", method[:20], request.path[:200])
            error = HTTPError(500, "internal server error")
        if error is not None:
            metrics.failed(error)
            if draft_version is not None and error.problem_type and ietf.uses_problem_types(draft_version):
                problem = [*error.headers, ("content-type", "application/problem+json")]
                response = Response(error.status, problem, ietf.problem_body(error))
            else:
                response = error_response(error)
        if draft_version is None and (request.method != "OPTIONS" or response.status >= 400):
            response.headers.append(("tus-resumable", TUS_VERSION))
        if cors_ok and origin is not None:
            preflight = request.method == "OPTIONS" and "access-control-request-method" in request.headers
            response.headers += self.cors.headers(origin, preflight=preflight)
        metrics.responded(method, time.perf_counter() - started)
        return response

    async def _route(self, request: Request, method: str, version: int | None, cors_ok: bool) -> Response:
        upload_id = id_from_path(self.config.base_path, request.path)
        if upload_id is None:
            raise not_found("not found")
        if method == "OPTIONS":
            if "access-control-request-method" in request.headers and cors_ok:
                # 200 rather than 204: some browsers reject a 204 preflight (tusd does the same).
                response = Response(200, [("content-length", "0")])
            else:
                response = self.tus.options(request)
                if version is None:
                    # The coming RFC's clients send no version, and the editors' copy says an OPTIONS
                    # answer MUST carry Upload-Limit; tus clients ignore it.
                    limits = self.ietf.options_headers(ietf.LATEST_VERSION)
                    response.headers += [(name, value) for name, value in limits if name == "upload-limit"]
            if version is not None:
                response.headers += self.ietf.options_headers(version)
            return response
        if version is not None and (method != "GET" or ietf.retrieves_offset_with_get(version)):
            return await self.ietf.handle(request, method, upload_id, version)
        return await self.tus.handle(request, method, upload_id)


def _method(request: Request) -> str:
    """The method, or what ``X-HTTP-Method-Override`` says it is."""
    override = request.headers.get("x-http-method-override")
    return override.strip().upper() if override else request.method


def error_response(exc: HTTPError) -> Response:
    """An error as plain text, one line; a hook's own rejection as the hook wrote it (as tusd)."""
    if isinstance(exc, RejectedByHook) and exc.body is not None:
        headers = list(exc.headers)
        if not any(name == "content-type" for name, _ in headers):
            headers.append(("content-type", "text/plain; charset=utf-8"))
        return Response(exc.status, headers, exc.body)
    headers = [(n, v) for n, v in exc.headers if n != "content-type"]
    headers.append(("content-type", "text/plain; charset=utf-8"))
    return Response(exc.status, headers, (_one_line(exc.reason) + "\n").encode())


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]
