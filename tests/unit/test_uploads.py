"""The upload service's shared steps, in process: creation with hooks, receiving, finishing, finals.

Driven through the dispatcher where a request shape matters, and through the service itself where
only the step does. Orderings that matter (a progress response while a body is held back, a newer
request while one writes) are made with events, never with sleeps.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid
from collections.abc import Awaitable, Callable

from pytusd.handover import STOPPED_BY_REQUEST
from pytusd.hooks.base import HookEvent, HookRequest, HookResponse, Hooks
from pytusd.hooks.python import HookCall, PythonHooks
from pytusd.info import UploadInfo
from pytusd.locks.memory import MemoryLocker
from pytusd.protocol.errors import HTTPError
from pytusd.receiving import follow_offset
from pytusd.stores.memory import MemoryStore
from pytusd.uploads import UploadService
from tests.support.inprocess import HOST, ListBody, Server, header, path_of

NO_REQUEST = HookRequest("PATCH", "/files/x", "", {})


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 20))


async def read_all(srv: Server, path: str) -> bytes:
    response = await srv.call("GET", path)
    assert response.status == 200, response.status
    return b"".join([chunk async for chunk in response.body])  # type: ignore[union-attr]


# -- creation -----------------------------------------------------------------------------------


def test_ids_are_random_version_4_uuids() -> None:
    """An ID is the only secret between a client and its upload (without a pre-access hook): 122
    random bits from the OS's generator (uuid4), never a counter or a time."""

    async def scenario() -> None:
        srv = Server()
        ids = [(await srv.create(1)).removeprefix("/files/") for _ in range(200)]
        parsed = [uuid.UUID(hex=upload_id) for upload_id in ids]
        assert all(u.version == 4 and u.hex == i for u, i in zip(parsed, ids, strict=True))
        assert len(set(ids)) == len(ids)

    run(scenario)


def test_pre_create_chooses_id_metadata_and_success_headers() -> None:
    def pre_create(call: HookCall) -> HookResponse:
        assert call.upload.metadata == {"name": "a.txt"}
        return HookResponse(
            change_id="chosen/one", change_metadata={"name": "b.txt"}, headers={"X-Seen": "yes", "Upload-Offset": "9"}
        )

    async def scenario() -> None:
        srv = Server(hooks=PythonHooks(pre_create=pre_create))
        created = await srv.call("POST", "/files/", upload_length="3", upload_metadata="name YS50eHQ=")
        assert created.status == 201
        assert path_of(created) == "/files/chosen/one"
        assert header(created, "x-seen") == "yes"
        assert [v for k, v in created.headers if k == "upload-offset"] == ["0"]  # a hook cannot set it
        assert (await srv.store.get_info("chosen/one")).metadata == {"name": "b.txt"}

    run(scenario)


def test_pre_create_rejection_reaches_the_client_and_creates_nothing() -> None:
    async def scenario() -> None:
        hooks = PythonHooks(pre_create=lambda call: HookResponse.reject(402, "pay first", {"X-Why": "quota"}))
        srv = Server(hooks=hooks)
        response = await srv.call("POST", "/files/", upload_length="3")
        assert (response.status, response.body, header(response, "x-why")) == (402, b"pay first", "quota")
        assert [upload async for upload in srv.store.list_uploads()] == []

    run(scenario)


def test_an_upload_over_max_size_is_413_on_every_path() -> None:
    async def scenario() -> None:
        srv = Server(max_size=10)
        assert (await srv.call("POST", "/files/", upload_length="11")).status == 413
        deferred = await srv.create(None)
        too_long = await srv.patch(deferred, b"a", 0, upload_length="11")
        assert too_long.status == 413 and (await srv.store.get_info(deferred.rsplit("/", 1)[1])).size is None
        draft = {"tus": False, "upload_draft_interop_version": "8", "upload_complete": "?0"}
        assert (await srv.call("POST", "/files/", upload_length="11", **draft)).status == 413  # type: ignore[arg-type]
        parts = [await srv.create(6, upload_concat="partial") for _ in range(2)]
        for part in parts:
            assert (await srv.patch(part, b"abcdef", 0)).status == 204
        final = await srv.call("POST", "/files/", upload_concat="final;" + " ".join(parts))
        assert final.status == 413

    run(scenario)


def test_a_final_whose_deferred_partials_outgrow_max_size_is_refused_or_removed() -> None:
    """Known lengths already too much: 413 at creation, nothing made. Deferred lengths that grow
    past the limit after the final was made: the final can never complete and is removed (it
    answered 413 for ever before, and finals never expire)."""

    async def scenario() -> None:
        srv = Server(max_size=10)
        known = await srv.create(6, upload_concat="partial")
        deferred = await srv.create(None, upload_concat="partial")
        assert (await srv.patch(deferred, b"a", 0, upload_length="6")).status == 204  # 1 of 6 bytes
        before = len([u async for u in srv.store.list_uploads()])
        refused = await srv.call("POST", "/files/", upload_concat=f"final;{known} {deferred}")
        assert refused.status == 413
        assert len([u async for u in srv.store.list_uploads()]) == before

        first, second = [await srv.create(None, upload_concat="partial") for _ in range(2)]
        made = await srv.call("POST", "/files/", upload_concat=f"final;{first} {second}")
        assert made.status == 201
        final = path_of(made)
        assert (await srv.patch(first, b"abcdef", 0, upload_length="6")).status == 204
        assert (await srv.patch(second, b"ghijkl", 0, upload_length="6")).status == 204
        await srv.service.wait_background()
        assert (await srv.call("HEAD", final)).status in (404, 413)
        assert (await srv.call("HEAD", final)).status == 404  # gone, not 413 for ever
        assert (await srv.call("HEAD", first)).status == 200  # the partials stay

    run(scenario)


# -- receiving ----------------------------------------------------------------------------------


def test_a_body_past_the_upload_is_cut_at_its_length() -> None:
    async def scenario() -> None:
        srv = Server()
        path = await srv.create(4)
        body = ListBody(b"ab", b"cdef")  # no Content-Length: the overflow shows only as it arrives
        response = await srv.call(
            "PATCH", path, body, upload_offset="0", content_type="application/offset+octet-stream"
        )
        assert response.status == 413 and header(response, "upload-offset") == "4"
        assert await read_all(srv, path) == b"abcd"

    run(scenario)


def test_a_checksum_mismatch_stores_nothing_and_a_match_stores_all() -> None:
    good = "sha1 " + base64.b64encode(hashlib.sha1(b"hello").digest()).decode()

    async def scenario() -> None:
        srv = Server()
        path = await srv.create(5)
        bad = await srv.patch(path, b"hello", 0, upload_checksum="sha1 " + "A" * 27 + "=")
        assert bad.status == 460 and header(bad, "upload-offset") == "0"
        assert (await srv.patch(path, b"hello", 0, upload_checksum=good)).status == 204
        assert await read_all(srv, path) == b"hello"

    run(scenario)


def test_a_newer_request_stops_the_writer_which_keeps_what_it_received() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        service = UploadService(store, locker=MemoryLocker())
        info = await store.create(UploadInfo(id="u", size=10))
        release = asyncio.Event()
        body = ListBody(b"abc", b"def", wait_before={1: release})
        lock = await service.lock("u", body)
        loop = asyncio.get_running_loop()
        result_task = loop.create_task(service.receive(info, body, NO_REQUEST, None, content_length=None))
        await body.consumed.wait()  # the first chunk is stored; the second is held back
        assert (await store.get_info("u")).offset == 3

        async def newcomer() -> None:
            newer = await service.lock("u", None)  # asks the holder to stop, then waits for it
            await newer.release()

        waiting = loop.create_task(newcomer())
        await body.stop_requested.wait()
        release.set()
        result = await result_task
        await lock.release()
        await waiting
        assert body.stopped == STOPPED_BY_REQUEST
        assert result.error is not None and result.error.status == 400
        assert (result.written, result.info.offset) == (3, 3)
        assert (await store.get_info("u")).offset == 3

    run(scenario)


def test_a_failing_progress_response_does_not_fail_the_upload() -> None:
    """A client that cannot take a 104 any more must not turn a stored body into an error."""

    async def scenario() -> None:
        store = MemoryStore()
        service = UploadService(store)
        service.config.progress_interval = 0.001
        info = await store.create(UploadInfo(id="u", size=6))
        reported = asyncio.Event()
        body = ListBody(b"abc", b"def", wait_before={1: reported})

        async def progress(offset: int) -> None:
            assert offset == 3
            reported.set()
            raise ConnectionResetError("the client is gone")

        result = await service.receive(info, body, NO_REQUEST, None, content_length=6, progress=progress)
        assert result.error is None and result.info.offset == 6

    run(scenario)


def test_post_receive_can_stop_an_upload_which_is_then_terminated() -> None:
    async def scenario() -> None:
        reported = asyncio.Event()

        def post_receive(call: HookCall) -> HookResponse:
            reported.set()
            return HookResponse(stop_upload=True, status=451, body="not this file")

        hooks = PythonHooks(post_receive=post_receive, progress_interval=0.001)
        store = MemoryStore()
        service = UploadService(store, hooks=hooks)
        info = await store.create(UploadInfo(id="u", size=6))
        body = ListBody(b"abc", b"def", wait_before={1: reported})
        result = await service.receive(info, body, NO_REQUEST, None, content_length=6)
        assert result.error is not None and (result.error.status, result.error.reason) == (451, "not this file")
        assert [upload async for upload in store.list_uploads()] == []

    run(scenario)


def test_pre_finish_refuses_a_complete_upload_after_its_bytes_are_stored() -> None:
    async def scenario() -> None:
        finished: list[str] = []
        hooks = PythonHooks(
            pre_finish=lambda call: HookResponse.reject(422, "not a video"),
            post_finish=lambda call: finished.append(call.upload.id),
        )
        srv = Server(hooks=hooks)
        path = await srv.create(3)
        response = await srv.patch(path, b"abc", 0)
        assert (response.status, response.body, header(response, "upload-offset")) == (422, b"not a video", "3")
        await srv.service.wait_background()
        assert finished == []

    run(scenario)


def test_uploads_complete_when_created_are_finished_too() -> None:
    """An empty upload, and a final whose partials are done, are complete on creation: pre-finish
    may refuse them (the client learns where the upload is) and post-finish follows (tusd does both)."""

    async def scenario() -> None:
        finished: list[str] = []
        refuse = {"now": False}

        def pre_finish(call: HookCall) -> HookResponse:
            return HookResponse.reject(422, "not now") if refuse["now"] else HookResponse()

        hooks = PythonHooks(pre_finish=pre_finish, post_finish=lambda call: finished.append(call.upload.id))
        srv = Server(hooks=hooks)
        empty = await srv.create(0)
        parts = [await srv.create(2, upload_concat="partial") for _ in range(2)]
        for part in parts:
            assert (await srv.patch(part, b"ab", 0)).status == 204
        joined = await srv.call("POST", "/files/", upload_concat="final;" + " ".join(parts))
        assert joined.status == 201
        await srv.service.wait_background()
        ids = [p.removeprefix("/files/") for p in (empty, *parts, path_of(joined))]
        assert sorted(finished) == sorted(ids)

        refuse["now"] = True
        refused = await srv.call("POST", "/files/", upload_length="0")
        assert (refused.status, refused.body) == (422, b"not now")
        assert header(refused, "location") is not None  # it exists: the client may ask again
        await srv.service.wait_background()
        assert len(finished) == len(ids)

    run(scenario)


def test_complete_on_end_fixes_the_length_where_the_body_ended() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        service = UploadService(store)
        info = await store.create(UploadInfo(id="u", size=None))
        body = ListBody(b"abcd")
        result = await service.receive(info, body, NO_REQUEST, None, content_length=None, complete_on_end=True)
        assert result.error is None and result.info.size == 4 and result.info.is_complete
        assert (await store.get_info("u")).size == 4

    run(scenario)


def test_complete_on_end_short_of_a_fixed_length_is_an_inconsistent_length() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        service = UploadService(store)
        info = await store.create(UploadInfo(id="u", size=10))
        result = await service.receive(info, ListBody(b"abc"), NO_REQUEST, None, content_length=3, complete_on_end=True)
        assert isinstance(result.error, HTTPError) and result.error.status == 400
        assert result.error.problem_type is not None and result.error.problem_type.endswith(
            "inconsistent-upload-length"
        )
        assert (await store.get_info("u")).offset == 3  # stored all the same: the client may resume

    run(scenario)


# -- concatenation ------------------------------------------------------------------------------


def test_a_final_upload_completes_when_its_last_partial_does() -> None:
    async def scenario() -> None:
        finished: list[str] = []
        srv = Server(hooks=PythonHooks(post_finish=lambda call: finished.append(call.upload.id)))
        first = await srv.create(3, upload_concat="partial")
        second = await srv.create(2, upload_concat="partial")
        assert (await srv.patch(first, b"abc", 0)).status == 204
        final = await srv.call("POST", "/files/", upload_concat=f"final;{first} {second}")
        assert final.status == 201 and header(final, "upload-offset") is None
        assert header(await srv.call("HEAD", path_of(final)), "upload-offset") is None
        assert (await srv.patch(second, b"de", 0)).status == 204
        head = await srv.call("HEAD", path_of(final))
        assert (header(head, "upload-offset"), header(head, "upload-length")) == ("5", "5")
        assert await read_all(srv, path_of(final)) == b"abcde"
        await srv.service.wait_background()
        final_id = path_of(final).removeprefix("/files/")
        assert finished.count(final_id) == 1

    run(scenario)


def test_terminating_a_partial_removes_the_finals_waiting_for_it() -> None:
    async def scenario() -> None:
        srv = Server()
        partial = await srv.create(3, upload_concat="partial")
        final = await srv.call("POST", "/files/", upload_concat="final;" + partial)
        assert (await srv.call("DELETE", partial)).status == 204
        assert (await srv.call("HEAD", path_of(final))).status == 404

    run(scenario)


def test_a_final_upload_without_the_received_header_is_presented_as_before() -> None:
    """Uploads stored before Upload-Concat was kept as received: HEAD rebuilds it from the IDs;
    a kept value that is not one printable line is never returned."""

    async def scenario() -> None:
        srv = Server()
        partial = await srv.create(3, upload_concat="partial")
        received = f"final;http://{HOST}{partial}"
        final = path_of(await srv.call("POST", "/files/", upload_concat=received))
        assert header(await srv.call("HEAD", final), "upload-concat") == received
        info = await srv.store.get_info(final.removeprefix("/files/"))
        old = UploadInfo.from_json({k: v for k, v in info.to_json().items() if k != "UploadConcat"})
        assert old.upload_concat is None
        await srv.store.update_info(old)
        assert header(await srv.call("HEAD", final), "upload-concat") == "final;" + partial
        info.upload_concat = received + "\r\nX-Injected: 1"
        await srv.store.update_info(info)
        assert header(await srv.call("HEAD", final), "upload-concat") == "final;" + partial

    run(scenario)


def test_every_hook_event_of_an_upload_fires_once_in_order() -> None:
    async def scenario() -> None:
        events: list[HookEvent] = []
        hooks = PythonHooks({event: (lambda call: events.append(call.event)) for event in HookEvent})
        srv = Server(hooks=hooks)
        path = await srv.create(3)
        await srv.service.wait_background()
        assert (await srv.patch(path, b"abc", 0)).status == 204
        await srv.service.wait_background()
        assert (await srv.call("DELETE", path)).status == 204
        await srv.service.wait_background()
        # post-receive runs in the background, beside pre-finish: only its count is certain.
        assert events.count(HookEvent.POST_RECEIVE) == 1
        assert [event for event in events if event != HookEvent.POST_RECEIVE] == [
            HookEvent.PRE_CREATE, HookEvent.POST_CREATE,
            HookEvent.PRE_ACCESS, HookEvent.PRE_FINISH, HookEvent.POST_FINISH,
            HookEvent.PRE_ACCESS, HookEvent.PRE_TERMINATE, HookEvent.POST_TERMINATE,
        ]  # fmt: skip

    run(scenario)


def test_a_follower_cancelled_inside_a_step_that_turns_the_cancellation_into_an_error_still_ends() -> None:
    """A request waits for its post-receive follower to end. A hook run that turns its cancellation
    into another error (uvloop closing a hook program's pipe raised EBADF) must not keep it going."""

    async def scenario() -> None:
        store = MemoryStore()
        info = await store.create(UploadInfo(id="u", size=10))
        entered = asyncio.Event()

        async def act(offset: int) -> bool:
            entered.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                raise OSError(9, "Bad file descriptor") from None
            return False

        follower = asyncio.get_running_loop().create_task(follow_offset(store, info, 0.001, act))
        await store.write_chunk("u", 0, ListBody(b"abc"))
        await entered.wait()
        follower.cancel()
        await asyncio.wait_for(follower, 5)  # ends (before the fix: polled on, forever)

    run(scenario)


class CancelTurnsIntoOSError(Hooks):
    """post-receive that blocks until cancelled, then raises OSError (as uvloop's pipes made file hooks do)."""

    progress_interval = 0.01

    def __init__(self) -> None:
        self.running = asyncio.Event()

    def enabled(self, event: HookEvent) -> bool:
        return event == HookEvent.POST_RECEIVE

    async def run(self, event: HookEvent, info: UploadInfo, request: HookRequest) -> HookResponse:
        if self.running.is_set():
            return HookResponse()  # only the first run misbehaves
        self.running.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise OSError(9, "Bad file descriptor") from None
        return HookResponse()


def test_a_patch_is_answered_when_its_post_receive_hook_turns_the_cancellation_into_an_error() -> None:
    """The PATCH that once went unanswered: the body ends while post-receive runs; the hook, cancelled,
    raises OSError; the follower must still end and the request be answered (a hang fails the bound)."""

    async def scenario() -> None:
        hooks = CancelTurnsIntoOSError()
        srv = Server(hooks=hooks)
        path = await srv.create(11)
        body = ListBody(b"hello ", b"world", wait_before={1: hooks.running})
        response = await srv.patch(path, b"", 0, body=body, content_length="11")
        assert response.status == 204 and header(response, "upload-offset") == "11"

    run(scenario)
