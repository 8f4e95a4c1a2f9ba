"""Several transports at once (HookChain): order, first rejection wins, changes compose, all get events."""

from __future__ import annotations

import asyncio
from typing import Any

from pytusd.hooks import HookCall, HookEvent, HookRequest, HookResponse, PythonHooks
from pytusd.hooks.chain import HookChain
from pytusd.info import UploadInfo

REQUEST = HookRequest("POST", "/files/", "127.0.0.1:5000", {})
INFO = UploadInfo(id="", size=10, offset=0, metadata={"name": "a.txt"})
EVENTS = [e.value for e in HookEvent]


def run(hooks: HookChain, event: HookEvent) -> HookResponse:
    return asyncio.run(hooks.run(event, INFO, REQUEST))


def recording(log: list[tuple[str, str, dict[str, str]]], name: str, answer: Any = None) -> PythonHooks:
    def hook(call: HookCall) -> Any:
        log.append((name, str(call.event), dict(call.upload.metadata)))
        return answer

    return PythonHooks(dict.fromkeys(EVENTS, hook), progress_interval=0)


def test_changes_compose_in_order() -> None:
    log: list[tuple[str, str, dict[str, str]]] = []
    first = recording(
        log, "first", HookResponse(change_id="one", change_metadata={"name": "b"}, headers={"X-A": "1", "X-B": "1"})
    )
    second = recording(log, "second", HookResponse(change_id="two", change_storage={"Path": "p"}, headers={"X-B": "2"}))
    answer = run(HookChain([first, second]), HookEvent.PRE_CREATE)
    # The second sees the first's metadata; its ID wins; headers merge.
    assert log == [("first", "pre-create", {"name": "a.txt"}), ("second", "pre-create", {"name": "b"})]
    assert (answer.change_id, answer.change_metadata, answer.change_storage) == ("two", {"name": "b"}, {"Path": "p"})
    assert answer.headers == {"X-A": "1", "X-B": "2"}


def test_first_rejection_wins() -> None:
    log: list[tuple[str, str, dict[str, str]]] = []
    refusing = recording(log, "first", HookResponse.reject(403, "no"))
    answer = run(HookChain([refusing, recording(log, "second")]), HookEvent.PRE_CREATE)
    assert answer.reject_upload and answer.status == 403
    assert [name for name, _, _ in log] == ["first"]


def test_non_blocking_events_go_to_all_and_a_stop_wins() -> None:
    log: list[tuple[str, str, dict[str, str]]] = []
    chain = HookChain([recording(log, "first"), recording(log, "second", HookResponse.stop(409))])
    assert run(chain, HookEvent.POST_FINISH) == HookResponse()
    assert sorted(name for name, _, _ in log) == ["first", "second"]
    assert run(chain, HookEvent.POST_RECEIVE).stop_upload


def test_enabled_if_any_transport_is() -> None:
    only_create = PythonHooks(pre_create=lambda call: None)
    only_finish = PythonHooks(post_finish=lambda call: None)
    chain = HookChain([only_create, only_finish])
    assert chain.enabled(HookEvent.PRE_CREATE) and chain.enabled(HookEvent.POST_FINISH)
    assert not chain.enabled(HookEvent.PRE_TERMINATE)
