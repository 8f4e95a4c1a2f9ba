"""Several hook transports at once (tusd allows one): Python, then file, then HTTP, then gRPC.

For a blocking event (pre-create, pre-finish, pre-terminate, pre-access) the transports run one
after another, in that order:

- the first rejection (or failure) wins: later transports are not asked;
- changes compose: a later transport sees the metadata an earlier pre-create hook chose, and a
  later answer's ID, metadata (the whole map) and Storage replace an earlier one's; response
  headers merge (later wins per name), a later status or body replaces an earlier one.

Other events go to every transport at once (one slow transport does not delay another); for
post-receive, the first transport (in the order above) that stops the upload decides.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

from pytusd.hooks.base import BLOCKING_EVENTS, HookEvent, HookRequest, HookResponse, Hooks
from pytusd.info import UploadInfo
from pytusd.metrics.recorder import Recorder


def rejects(event: HookEvent, answer: HookResponse) -> bool:
    """Whether ``answer`` stops ``event``'s request (what the upload service acts on)."""
    if event == HookEvent.POST_RECEIVE:
        return answer.stop_upload
    if event not in BLOCKING_EVENTS:
        return False
    if answer.status is not None and answer.status >= 400:
        return True
    if event == HookEvent.PRE_TERMINATE:
        return answer.reject_termination
    if event == HookEvent.PRE_ACCESS:
        return answer.reject_access
    return answer.reject_upload


class HookChain(Hooks):
    """``transports`` in the order they run (see the module docstring)."""

    def __init__(self, transports: Sequence[Hooks]) -> None:
        if not transports:
            raise ValueError("a hook chain needs at least one transport")
        self.transports = tuple(transports)
        intervals = [t.progress_interval for t in self.transports if t.progress_interval > 0]
        self.progress_interval = min(intervals) if intervals else 0.0

    def enabled(self, event: HookEvent) -> bool:
        return any(t.enabled(event) for t in self.transports)

    def count_into(self, metrics: Recorder) -> None:
        """Each transport counts its own calls: an event sent to two transports is two invocations."""
        super().count_into(metrics)
        for transport in self.transports:
            transport.count_into(metrics)

    async def run(self, event: HookEvent, info: UploadInfo, request: HookRequest) -> HookResponse:
        active = [t for t in self.transports if t.enabled(event)]
        if event not in BLOCKING_EVENTS:
            answers = await asyncio.gather(*(t.run(event, info, request) for t in active))
            for answer in answers:
                if rejects(event, answer):
                    return answer
            return answers[0] if answers else HookResponse()
        combined = HookResponse()
        for transport in active:
            answer = await transport.run(event, info, request)
            if rejects(event, answer):
                return answer
            _merge(combined, answer)
            if answer.change_metadata is not None:
                info = replace(info, metadata=dict(answer.change_metadata))
        return combined

    async def aclose(self) -> None:
        for transport in self.transports:
            await transport.aclose()


def _merge(into: HookResponse, answer: HookResponse) -> None:
    into.status = answer.status if answer.status is not None else into.status
    into.body = answer.body if answer.body is not None else into.body
    into.headers.update(answer.headers)
    into.change_id = answer.change_id if answer.change_id is not None else into.change_id
    if answer.change_metadata is not None:
        into.change_metadata = dict(answer.change_metadata)
    if answer.change_storage is not None:
        into.change_storage = dict(answer.change_storage)
