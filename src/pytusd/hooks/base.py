"""What a hook sees and may answer, in tusd's terms, and the interface the handler calls.

Transports (Python callables, HTTP, executables) all reduce to :class:`Hooks`, so the handler does
not know how a hook is run. The JSON forms mirror tusd's hook format field for field: a hook
program or endpoint written for tusd reads and answers the same documents here.
"""

from __future__ import annotations

import abc
import enum
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pytusd.info import UploadInfo
from pytusd.metrics.recorder import NO_METRICS, Recorder
from pytusd.protocol.urls import is_valid_upload_id

logger = logging.getLogger("pytusd.hooks")


class HookEvent(enum.StrEnum):
    PRE_CREATE = "pre-create"
    POST_CREATE = "post-create"
    POST_RECEIVE = "post-receive"
    PRE_FINISH = "pre-finish"
    POST_FINISH = "post-finish"
    PRE_TERMINATE = "pre-terminate"
    POST_TERMINATE = "post-terminate"
    #: pytusd's own: runs before every HEAD, PATCH, GET and DELETE (tusd has no such hook).
    PRE_ACCESS = "pre-access"


#: Events whose answer can stop the request.
BLOCKING_EVENTS = frozenset({HookEvent.PRE_CREATE, HookEvent.PRE_FINISH, HookEvent.PRE_TERMINATE, HookEvent.PRE_ACCESS})
#: tusd's events, in tusd's order (pre-access is pytusd's and never enabled implicitly).
TUSD_EVENTS: tuple[HookEvent, ...] = (
    HookEvent.PRE_CREATE,
    HookEvent.POST_CREATE,
    HookEvent.POST_RECEIVE,
    HookEvent.PRE_FINISH,
    HookEvent.POST_FINISH,
    HookEvent.PRE_TERMINATE,
    HookEvent.POST_TERMINATE,
)
#: tusd's default for ``-hooks-enabled-events``: pre-finish, pre-terminate (and pre-access) are opt-in.
DEFAULT_EVENTS: frozenset[HookEvent] = frozenset(
    {HookEvent.PRE_CREATE, HookEvent.POST_CREATE, HookEvent.POST_RECEIVE, HookEvent.POST_TERMINATE,
     HookEvent.POST_FINISH}
)  # fmt: skip

_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def parse_events(text: str) -> frozenset[HookEvent]:
    """Events from a comma- or space-separated list; ``""`` means every tusd event (not pre-access)."""
    names = [name for name in re.split(r"[\s,]+", text.strip()) if name]
    if not names:
        return frozenset(TUSD_EVENTS)
    events = set()
    for name in names:
        try:
            events.add(HookEvent(name.lower()))
        except ValueError:
            known = ", ".join(e.value for e in HookEvent)
            raise ValueError(f"unknown hook event {name!r} (known: {known})") from None
    return frozenset(events)


class HookRequest:
    """The HTTP request that caused the event (tusd's ``HTTPRequest``).

    ``headers`` has Go's canonical names (``Upload-Length``) and a list of values per name. Built
    from ``raw`` header pairs, it is grouped only when a hook reads it: every request makes one of
    these, most run no hook.
    """

    __slots__ = ("_headers", "_raw", "method", "remote_addr", "uri")

    def __init__(
        self,
        method: str,
        uri: str,
        remote_addr: str,
        headers: dict[str, list[str]] | None = None,
        *,
        raw: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.method = method
        self.uri = uri
        self.remote_addr = remote_addr
        self._headers = headers
        self._raw = raw

    @property
    def headers(self) -> dict[str, list[str]]:
        if self._headers is None:
            grouped: dict[str, list[str]] = {}
            for name, value in self._raw or ():
                grouped.setdefault(_canonical(name.decode("latin-1")), []).append(value.decode("latin-1"))
            self._headers = grouped
        return self._headers

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HookRequest):
            return NotImplemented
        return (self.method, self.uri, self.remote_addr, self.headers) == (
            other.method, other.uri, other.remote_addr, other.headers,
        )  # fmt: skip

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaces

    def __repr__(self) -> str:
        return f"HookRequest({self.method!r}, {self.uri!r}, {self.remote_addr!r}, {self.headers!r})"

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        wanted = name.lower()
        for key, values in self.headers.items():
            if key.lower() == wanted and values:
                return values[0]
        return None

    def to_json(self) -> dict[str, Any]:
        return {"Method": self.method, "URI": self.uri, "RemoteAddr": self.remote_addr, "Header": self.headers}


def _canonical(name: str) -> str:
    """Go's canonical header name (``upload-length`` -> ``Upload-Length``), as tusd's hooks see it."""
    return "-".join(part.capitalize() for part in name.split("-"))


@dataclass(slots=True)
class HookResponse:
    """A hook's answer (tusd's ``HookResponse``); every field is optional.

    ``status``, ``body`` and ``headers`` are tusd's ``HTTPResponse``. A rejection that names no
    status gets the handler's default (400, or 403 for pre-access).
    """

    status: int | None = None
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    reject_upload: bool = False
    reject_termination: bool = False
    #: pytusd's pre-access: refuse the request (JSON ``RejectAccess``).
    reject_access: bool = False
    change_id: str | None = None
    change_metadata: dict[str, str] | None = None
    change_storage: dict[str, str] | None = None
    stop_upload: bool = False

    @classmethod
    def reject(
        cls, status: int | None = None, body: str | None = None, headers: Mapping[str, str] | None = None
    ) -> HookResponse:
        """Refuse whatever the hook guards: creation, termination, access (pre-finish: the finish)."""
        return cls(
            status=status,
            body=body,
            headers=dict(headers or {}),
            reject_upload=True,
            reject_termination=True,
            reject_access=True,
        )

    @classmethod
    def stop(
        cls, status: int | None = None, body: str | None = None, headers: Mapping[str, str] | None = None
    ) -> HookResponse:
        """post-receive: stop the upload (the client gets ``status``, 400 by default)."""
        return cls(status=status, body=body, headers=dict(headers or {}), stop_upload=True)

    def to_json(self) -> dict[str, Any]:
        """tusd's JSON form; fields at their default are left out."""
        out: dict[str, Any] = {}
        http: dict[str, Any] = {}
        if self.status is not None:
            http["StatusCode"] = self.status
        if self.body is not None:
            http["Body"] = self.body
        if self.headers:
            http["Header"] = dict(self.headers)
        if http:
            out["HTTPResponse"] = http
        if self.reject_upload:
            out["RejectUpload"] = True
        if self.reject_termination:
            out["RejectTermination"] = True
        if self.reject_access:
            out["RejectAccess"] = True
        changes: dict[str, Any] = {}
        if self.change_id is not None:
            changes["ID"] = self.change_id
        if self.change_metadata is not None:
            changes["MetaData"] = dict(self.change_metadata)
        if self.change_storage is not None:
            changes["Storage"] = dict(self.change_storage)
        if changes:
            out["ChangeFileInfo"] = changes
        if self.stop_upload:
            out["StopUpload"] = True
        return out

    @classmethod
    def from_json(cls, data: Any) -> HookResponse:
        """Read tusd's JSON hook response; raises :class:`InvalidHookResponse` for anything else.

        Like Go's ``encoding/json`` (what tusd uses), field names match in any case and unknown
        fields are ignored; a value of the wrong type is an error. ``HTTPResponse.Headers`` (the
        name in tusd 2.0-2.4) is read when ``Header`` is absent.
        """
        obj = _object(data, "hook response")
        response = cls()
        http = _field(obj, "HTTPResponse")
        if http is not None:
            http_obj = _object(http, "HTTPResponse")
            status = _field(http_obj, "StatusCode")
            if status is not None:
                if isinstance(status, bool) or not isinstance(status, int):
                    raise InvalidHookResponse("HTTPResponse.StatusCode must be an integer")
                if status != 0:  # Go's zero value: not set
                    response.status = status
            body = _field(http_obj, "Body")
            if body is not None:
                response.body = _string(body, "HTTPResponse.Body") or None
            headers = _field(http_obj, "Header")
            if headers is None:
                headers = _field(http_obj, "Headers")
            if headers is not None:
                response.headers = _string_map(headers, "HTTPResponse.Header")
        response.reject_upload = _bool(_field(obj, "RejectUpload"), "RejectUpload")
        response.reject_termination = _bool(_field(obj, "RejectTermination"), "RejectTermination")
        response.reject_access = _bool(_field(obj, "RejectAccess"), "RejectAccess")
        response.stop_upload = _bool(_field(obj, "StopUpload"), "StopUpload")
        changes = _field(obj, "ChangeFileInfo")
        if changes is not None:
            changes_obj = _object(changes, "ChangeFileInfo")
            new_id = _field(changes_obj, "ID")
            if new_id is not None:
                response.change_id = _string(new_id, "ChangeFileInfo.ID") or None  # "": keep the ID
            metadata = _field(changes_obj, "MetaData")
            if metadata is not None:
                response.change_metadata = _string_map(metadata, "ChangeFileInfo.MetaData")
            storage = _field(changes_obj, "Storage")
            if storage is not None:
                response.change_storage = _string_map(storage, "ChangeFileInfo.Storage")
        return response


def validate_response(response: HookResponse) -> None:
    """Check what the handler will act on; raises :class:`InvalidHookResponse`."""
    if response.status is not None and not 100 <= response.status <= 599:
        raise InvalidHookResponse("HTTPResponse.StatusCode must be between 100 and 599")
    for name, value in response.headers.items():
        if not _HEADER_NAME.fullmatch(name) or not all(0x20 <= ord(c) < 0x7F or c == "\t" for c in value):
            raise InvalidHookResponse("HTTPResponse.Header has a name or value that cannot be sent")
    if response.change_id is not None and not is_safe_upload_id(response.change_id):
        # The value goes to the log only: the client's message never repeats a hook's output.
        logger.warning("a hook chose an invalid upload ID: %r", response.change_id[:300])
        raise InvalidChange("ChangeFileInfo.ID is not a valid upload ID")


def is_safe_upload_id(upload_id: str) -> bool:
    """tusd's rules for hook-chosen IDs, and nothing that collides with a store's own files.

    The same rules as for any ID (one definition, in :mod:`pytusd.protocol.urls`).
    """
    return is_valid_upload_id(upload_id)


def hook_input(event: HookEvent, info: UploadInfo, request: HookRequest) -> dict[str, Any]:
    """The JSON a hook receives, as tusd sends it.

    As in tusd, a pre-create hook sees an empty ``ID`` (the upload does not exist yet) and no
    ``Storage``.
    """
    return {
        "Type": str(event),
        "Event": {
            "Upload": {
                "ID": "" if event == HookEvent.PRE_CREATE else info.id,
                "Size": info.size if info.size is not None else 0,
                "SizeIsDeferred": info.size is None,
                "Offset": info.offset,
                "MetaData": dict(info.metadata),
                "IsPartial": info.is_partial,
                "IsFinal": info.is_final,
                "PartialUploads": list(info.partial_uploads) if info.is_final else None,
                "Storage": (dict(info.storage) or None) if event != HookEvent.PRE_CREATE else None,
            },
            "HTTPRequest": request.to_json(),
        },
    }


class HookError(Exception):
    """A blocking hook failed, timed out or answered something unreadable.

    ``status`` is what the client should get: 500 (the hook failed), 502 (an HTTP hook endpoint
    answered an error or garbage, or could not be reached), 504 (the hook timed out). The message
    is one line, safe to show to a client (it never repeats what the hook printed).
    """

    def __init__(self, reason: str, status: int = 500) -> None:
        super().__init__(reason)
        self.status = status


class InvalidHookResponse(ValueError):
    """A hook answered something that is not a valid tusd hook response."""


class InvalidChange(InvalidHookResponse):
    """A readable answer whose ChangeFileInfo cannot be applied (an ID or Storage that could escape).

    The client gets a 400, not a 5xx: the hook decides from the request, so a retry would get the
    same answer, and tus clients retry 5xx answers.
    """


class Hooks(abc.ABC):
    """Runs hooks for the handler; :meth:`enabled` lets it skip building inputs for none."""

    #: Seconds between post-receive hooks of one upload (``--progress-hooks-interval``).
    progress_interval: float = 1.0
    #: Counts invocations and failures per hook type (see :meth:`count_into`).
    metrics: Recorder = NO_METRICS

    @abc.abstractmethod
    def enabled(self, event: HookEvent) -> bool: ...

    @abc.abstractmethod
    async def run(self, event: HookEvent, info: UploadInfo, request: HookRequest) -> HookResponse:
        """Run the hook for ``event``; raise :class:`HookError` if a blocking hook fails."""

    async def aclose(self) -> None:
        """Release connections and the like (at shutdown)."""
        return None

    def count_into(self, metrics: Recorder) -> None:
        """Count invocations and failures into ``metrics`` (the upload service calls it).

        Hooks that delegate to other hooks pass it on: the runners count, per transport.
        """
        self.metrics = metrics


class NoHooks(Hooks):
    def enabled(self, event: HookEvent) -> bool:
        return False

    async def run(self, event: HookEvent, info: UploadInfo, request: HookRequest) -> HookResponse:
        return HookResponse()


# -- reading JSON like Go's encoding/json ---------------------------------------------------------


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidHookResponse(f"{what} must be a JSON object")
    return value


def _field(obj: Mapping[str, Any], name: str) -> Any:
    """Go matches JSON keys to struct fields exactly first, then case-insensitively."""
    if name in obj:
        return obj[name]
    lowered = name.lower()
    for key, value in obj.items():
        if isinstance(key, str) and key.lower() == lowered:
            return value
    return None


def _bool(value: Any, what: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidHookResponse(f"{what} must be true or false")
    return value


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidHookResponse(f"{what} must be a string")
    return value


def _string_map(value: Any, what: str) -> dict[str, str]:
    obj = _object(value, what)
    result = {}
    for key, item in obj.items():
        if not isinstance(item, str):
            raise InvalidHookResponse(f"{what} values must be strings")
        result[str(key)] = item
    return result
