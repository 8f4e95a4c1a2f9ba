"""What a hook sees and may answer, in tusd's terms, and the interface the handler calls.

Transports (Python callables, HTTP, executables) all reduce to :class:`Hooks`, so the handler does
not know how a hook is run. The JSON forms mirror tusd's hook format field for field.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field
from typing import Any

from pytusd.info import UploadInfo


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


@dataclass(slots=True)
class HookRequest:
    """The HTTP request that caused the event (tusd's ``HTTPRequest``)."""

    method: str
    uri: str
    remote_addr: str
    headers: dict[str, list[str]]

    def to_json(self) -> dict[str, Any]:
        return {"Method": self.method, "URI": self.uri, "RemoteAddr": self.remote_addr, "Header": self.headers}


@dataclass(slots=True)
class HookResponse:
    """A hook's answer (tusd's ``HookResponse``); every field is optional."""

    status: int | None = None
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    reject_upload: bool = False
    reject_termination: bool = False
    #: pytusd's pre-access: refuse the request.
    reject_access: bool = False
    change_id: str | None = None
    change_metadata: dict[str, str] | None = None
    change_storage: dict[str, str] | None = None
    stop_upload: bool = False


def hook_input(event: HookEvent, info: UploadInfo, request: HookRequest) -> dict[str, Any]:
    """The JSON a hook receives, as tusd sends it."""
    return {
        "Type": str(event),
        "Event": {
            "Upload": {
                "ID": info.id,
                "Size": info.size if info.size is not None else 0,
                "SizeIsDeferred": info.size is None,
                "Offset": info.offset,
                "MetaData": dict(info.metadata),
                "IsPartial": info.is_partial,
                "IsFinal": info.is_final,
                "PartialUploads": list(info.partial_uploads) if info.is_final else None,
                "Storage": dict(info.storage) or None,
            },
            "HTTPRequest": request.to_json(),
        },
    }


class HookError(Exception):
    """A blocking hook failed, timed out or answered something unreadable."""


class Hooks(abc.ABC):
    """Runs hooks for the handler; :meth:`enabled` lets it skip building inputs for none."""

    @abc.abstractmethod
    def enabled(self, event: HookEvent) -> bool: ...

    @abc.abstractmethod
    async def run(self, event: HookEvent, info: UploadInfo, request: HookRequest) -> HookResponse:
        """Run the hook for ``event``; raise :class:`HookError` if a blocking hook fails."""


class NoHooks(Hooks):
    def enabled(self, event: HookEvent) -> bool:
        return False

    async def run(self, event: HookEvent, info: UploadInfo, request: HookRequest) -> HookResponse:
        return HookResponse()
