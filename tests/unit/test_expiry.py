"""Expiration (tus' extension, the draft's Upload-Limit) with a clock that moves only when told.

The integration suite shows the sweeper runs in a real server; here every rule is checked exactly,
with no sleeping: when an upload expires, what each request then gets, and what the sweeper removes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from pytusd.protocol.headers import http_date
from pytusd.sweep import sweep_expired
from tests.support.inprocess import Clock, Server, header, path_of

EXPIRE = 3600.0


def run(scenario: Callable[[Server], Awaitable[None]], **config: object) -> None:
    async def main() -> None:
        await scenario(Server(expire_after=EXPIRE, **config))

    asyncio.run(main())


def test_upload_expires_is_now_plus_the_window_on_post_and_patch() -> None:
    async def scenario(srv: Server) -> None:
        created = await srv.call("POST", "/files/", upload_length="10")
        assert header(created, "upload-expires") == http_date(srv.clock() + EXPIRE)
        srv.clock.advance(600)
        patched = await srv.patch(path_of(created), b"abc", 0)
        assert patched.status == 204
        assert header(patched, "upload-expires") == http_date(srv.clock() + EXPIRE)
        finished = await srv.patch(path_of(created), b"defghij", 3)
        assert finished.status == 204 and header(finished, "upload-expires") is None  # complete: never expires

    run(scenario)


def test_head_says_when_an_unfinished_upload_expires() -> None:
    """HEAD carries Upload-Expires as POST and PATCH do: the last write plus the window. Asking
    does not keep an upload alive, so the date stays put while the clock moves."""

    async def scenario(srv: Server) -> None:
        created = await srv.call("POST", "/files/", upload_length="10")
        path = path_of(created)
        srv.clock.advance(600)
        head = await srv.call("HEAD", path)
        assert head.status == 200 and header(head, "upload-expires") == header(created, "upload-expires")
        patched = await srv.patch(path, b"abc", 0)
        srv.clock.advance(600)
        assert header(await srv.call("HEAD", path), "upload-expires") == header(patched, "upload-expires")
        deferred = await srv.create(None)
        assert header(await srv.call("HEAD", deferred), "upload-expires") == http_date(srv.clock() + EXPIRE)
        assert (await srv.patch(path, b"defghij", 3)).status == 204
        assert header(await srv.call("HEAD", path), "upload-expires") is None  # complete: never expires
        partial = await srv.create(1, upload_concat="partial")
        final = await srv.call("POST", "/files/", upload_concat="final;" + partial)
        assert header(await srv.call("HEAD", partial), "upload-expires") is not None
        assert header(await srv.call("HEAD", path_of(final)), "upload-expires") is None  # finals never expire

    run(scenario)


def test_expired_upload_is_410_until_swept_then_404() -> None:
    async def scenario(srv: Server) -> None:
        path = await srv.create(10)
        assert (await srv.patch(path, b"abc", 0)).status == 204
        srv.clock.advance(EXPIRE - 1)
        assert (await srv.call("HEAD", path)).status == 200  # not yet
        srv.clock.advance(2)
        head = await srv.call("HEAD", path)
        assert head.status == 410 and header(head, "upload-offset") is None
        assert (await srv.patch(path, b"def", 3)).status == 410
        assert (await srv.call("HEAD", path, tus=False, upload_draft_interop_version="8")).status == 410
        assert await sweep_expired(srv.service) == 1
        assert (await srv.call("HEAD", path)).status == 404

    run(scenario)


def test_a_write_restarts_the_window() -> None:
    async def scenario(srv: Server) -> None:
        path = await srv.create(100)
        for offset in range(4):
            srv.clock.advance(EXPIRE - 1)
            assert (await srv.patch(path, b"x", offset)).status == 204
        assert await sweep_expired(srv.service) == 0
        assert header(await srv.call("HEAD", path), "upload-offset") == "4"

    run(scenario)


def test_sweeper_removes_unfinished_uploads_of_every_kind_and_keeps_finished_ones() -> None:
    async def scenario(srv: Server) -> None:
        doomed = {
            "unfinished": await srv.create(10),
            "never_written": await srv.create(10),
            "deferred": await srv.create(None),
            "partial": await srv.create(4, upload_concat="partial"),
        }
        assert (await srv.patch(doomed["unfinished"], b"abc", 0)).status == 204
        finished = await srv.create(8)
        assert (await srv.patch(finished, b"complete", 0)).status == 204
        empty = await srv.create(0)
        done_partial = await srv.create(2, upload_concat="partial")
        assert (await srv.patch(done_partial, b"ab", 0)).status == 204
        final = await srv.call("POST", "/files/", upload_concat="final;" + done_partial)
        assert final.status == 201 and header(final, "upload-offset") == "2"
        srv.clock.advance(EXPIRE + 1)

        assert await sweep_expired(srv.service) == len(doomed)
        for name, path in doomed.items():
            assert (await srv.call("HEAD", path)).status == 404, name
        for path, content in ((finished, b"complete"), (empty, b""), (path_of(final), b"ab")):
            assert (await srv.call("HEAD", path)).status == 200
            download = await srv.call("GET", path)
            assert download.status == 200
            assert b"".join([chunk async for chunk in download.body]) == content  # type: ignore[union-attr]

    run(scenario)


def test_a_final_upload_waiting_for_an_expired_partial_goes_with_it() -> None:
    async def scenario(srv: Server) -> None:
        partial = await srv.create(3, upload_concat="partial")
        final = await srv.call("POST", "/files/", upload_concat="final;" + partial)
        assert final.status == 201 and header(final, "upload-offset") is None  # pending
        srv.clock.advance(EXPIRE + 1)
        assert await sweep_expired(srv.service) == 1  # the partial; its final is dropped with it
        assert (await srv.call("HEAD", partial)).status == 404
        assert (await srv.call("HEAD", path_of(final))).status == 404

    run(scenario)


def test_an_expired_partial_cannot_be_concatenated() -> None:
    async def scenario(srv: Server) -> None:
        partial = await srv.create(3, upload_concat="partial")
        srv.clock.advance(EXPIRE + 1)
        response = await srv.call("POST", "/files/", upload_concat="final;" + partial)
        assert response.status == 410 and header(response, "location") is None

    run(scenario)


def test_draft_upload_limit_counts_down_from_the_last_write() -> None:
    async def scenario(srv: Server) -> None:
        draft = {"tus": False, "upload_draft_interop_version": "8"}
        created = await srv.call("POST", "/files/", upload_complete="?0", **draft)  # type: ignore[arg-type]
        assert created.status == 201
        assert header(created, "upload-limit") == f"max-age={int(EXPIRE)}"
        srv.clock.advance(100)
        head = await srv.call("HEAD", path_of(created), **draft)  # type: ignore[arg-type]
        assert head.status == 204 and header(head, "upload-limit") == f"max-age={int(EXPIRE) - 100}"
        version6 = await srv.call("HEAD", path_of(created), tus=False, upload_draft_interop_version="6")
        assert header(version6, "upload-limit") == f"expires={int(EXPIRE) - 100}"
        options = await srv.call("OPTIONS", "/files/", **draft)  # type: ignore[arg-type]
        assert header(options, "upload-limit") == f"max-age={int(EXPIRE)}"

    run(scenario)


def test_no_expiration_without_a_window() -> None:
    async def scenario(srv: Server) -> None:
        created = await srv.call("POST", "/files/", upload_length="3")
        assert header(created, "upload-expires") is None
        assert "expiration" not in (header(await srv.call("OPTIONS", "/files/"), "tus-extension") or "")
        srv.clock.advance(10 * EXPIRE)
        assert (await srv.call("HEAD", path_of(created))).status == 200
        assert await sweep_expired(srv.service) == 0

    async def main() -> None:
        await scenario(Server(clock=Clock()))

    asyncio.run(main())
