"""Property tests of the offset and length rules: random request sequences against a small model.

Each example is a few uploads (tus with a length or deferred, IETF drafts of several interop
versions, partials joined by a final upload) and a sequence of appends with right and wrong
offsets, lengths declared once or again, completeness claimed or not, offset retrievals and ranged
downloads. The in-process server (the real dispatcher and upload service on the memory store)
answers each; :class:`Model` says what tus 1.0.0 and the draft require, and both must agree on
the status, the offset, the length and every stored byte. A failing example prints the sequence.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from hypothesis import event, example, given, note
from hypothesis import strategies as st

from pytusd.messages import Response
from tests.support.inprocess import ListBody, Server, header, path_of

MAX_SIZE = 64
#: Every upload's bytes are a prefix of this: a byte written at the wrong offset cannot hide.
SOURCE = bytes((i * 7 + 3) % 251 for i in range(4 * MAX_SIZE))
PARTIAL = "application/partial-upload"


def content_of(index: int, start: int, end: int) -> bytes:
    """The bytes upload ``index`` holds at [start, end): distinct per upload."""
    return SOURCE[index + start : index + end]


@dataclass
class Upload:
    """The model of one upload."""

    index: int
    path: str
    size: int | None  # None: not fixed yet (tus deferred, or a draft upload without ?1)
    declared: int | None = None  # a length a draft client (v7+) announced without fixing it
    offset: int = 0
    version: int | None = None  # the draft version it was created with, None for tus
    final_of: list[Upload] = field(default_factory=list)  # the partials it joins
    is_partial: bool = False

    @property
    def complete(self) -> bool:
        return self.size is not None and self.offset == self.size


# -- the operations ------------------------------------------------------------------------------

versions = st.sampled_from([3, 4, 5, 6, 7, 8])
lengths = st.integers(0, MAX_SIZE)
creations = st.one_of(
    st.tuples(st.just("tus"), st.none() | lengths, st.integers(0, MAX_SIZE)),  # length, first body
    st.tuples(st.just("ietf"), versions, st.none() | lengths),  # version, Upload-Length
    st.tuples(st.just("partial"), lengths, st.integers(0, MAX_SIZE)),
)
#: How a request's Upload-Offset relates to the upload's: right, or off in some way.
offsets = st.sampled_from(["right"] * 6 + ["minus", "plus", "zero", "far"])
operations = st.one_of(
    st.tuples(
        st.just("patch"), st.integers(0, 7), offsets, st.integers(0, MAX_SIZE // 2),
        st.sampled_from([None, None, "exact", "offset", "less", "more"]),
    ),
    st.tuples(
        st.just("append"), st.integers(0, 7), offsets, st.integers(0, MAX_SIZE // 2), st.booleans(),
        st.sampled_from([None, None, "exact", "less", "more"]),
    ),
    st.tuples(st.just("head"), st.integers(0, 7)),
    st.tuples(st.just("get"), st.integers(0, 7), st.integers(0, MAX_SIZE + 2), st.integers(-1, MAX_SIZE + 2)),
    st.tuples(st.just("final"), st.lists(st.integers(0, 7), min_size=1, max_size=3)),
)  # fmt: skip


def claimed_offset(how: str, offset: int) -> int:
    return {"right": offset, "minus": max(offset - 1, 0), "plus": offset + 1, "zero": 0, "far": 10**12}[how]


def length_of(how: str | None, upload: Upload, n: int) -> str | None:
    """The Upload-Length a request sends: none, the one it will have, or one off."""
    if how is None:
        return None
    end = upload.offset + n
    return str({"exact": end, "offset": upload.offset, "less": max(end - 1, 0), "more": end + 3}[how])


class Run:
    """One example: the server, the model, and the log printed when it fails."""

    def __init__(self) -> None:
        self.srv = Server()
        self.uploads: list[Upload] = []

    def pick(self, index: int) -> Upload | None:
        return self.uploads[index % len(self.uploads)] if self.uploads else None

    async def stored(self, upload: Upload) -> bytes:
        return bytes(self.srv.store._data[upload.path.rsplit("/", 1)[1]])  # type: ignore[attr-defined]

    async def check(self, upload: Upload, response: Response, what: str) -> None:
        """The server's stored bytes and its idea of the upload agree with the model."""
        note(f"{what} -> {response.status} {response.headers}")
        event(f"{what.split(' ', 1)[0]} {response.status}")
        upload_id = upload.path.rsplit("/", 1)[1]
        info = await self.srv.store.get_info(upload_id)
        assert info.offset == upload.offset, (what, info.offset, upload.offset)
        assert info.size == upload.size, (what, info.size, upload.size)
        if not upload.final_of:
            assert await self.stored(upload) == content_of(upload.index, 0, upload.offset)
        reported = header(response, "upload-offset")
        if reported is not None and response.status < 500:
            assert int(reported) == upload.offset, (what, reported)

    # -- creation --

    async def create(self, creation: tuple[object, ...]) -> None:
        kind = creation[0]
        index = len(self.uploads)
        if kind == "ietf":
            version, length = creation[1], creation[2]
            assert isinstance(version, int)
            headers = self._draft(version, complete=False)
            if length is not None:
                headers["upload_length"] = str(length)
            response = await self.srv.call("POST", "/files/", ListBody(), tus=False, content_length="0", **headers)
            assert response.status == 201, response.status
            size = length if isinstance(length, int) and version <= 6 else None
            declared = length if isinstance(length, int) and version >= 7 else None
            upload = Upload(index, path_of(response), size, declared, version=version)
            self.uploads.append(upload)
            await self.check(upload, response, f"create draft {creation}")
            return
        length, first = creation[1], creation[2]
        assert isinstance(first, int) and (length is None or isinstance(length, int))
        body = content_of(index, 0, first)
        headers = {"upload_length": str(length)} if length is not None else {"upload_defer_length": "1"}
        if kind == "partial":
            headers["upload_concat"] = "partial"
        response = await self.srv.call(
            "POST", "/files/", ListBody(body), content_type="application/offset+octet-stream",
            content_length=str(first), **headers,
        )  # fmt: skip
        if length is not None and first > length:
            assert response.status == 413
            return
        assert response.status == 201, (creation, response.status, response.body)
        upload = Upload(index, path_of(response), length, offset=first, is_partial=kind == "partial")
        self.uploads.append(upload)
        await self.check(upload, response, f"create {creation}")

    async def final(self, picks: list[int]) -> None:
        partials = [self.pick(i) for i in picks]
        if not partials or None in partials:
            return
        urls = " ".join(p.path for p in partials if p is not None)
        response = await self.srv.call("POST", "/files/", upload_concat=f"final;{urls}")
        if not all(p is not None and p.is_partial for p in partials):
            assert response.status == 400, response.status
            return
        assert response.status == 201, (response.status, response.body)
        sizes = [p.size for p in partials if p is not None]
        size = None if None in sizes else sum(s for s in sizes if s is not None)
        upload = Upload(len(self.uploads), path_of(response), size, final_of=[p for p in partials if p])
        self.uploads.append(upload)
        self.join_finals()
        info = await self.srv.store.get_info(upload.path.rsplit("/", 1)[1])
        note(f"final of {[p.path for p in upload.final_of]} -> {response.status} offset {info.offset}")

    def join_finals(self) -> None:
        """A final upload is joined as soon as its last partial is complete (concatenation-unfinished)."""
        for upload in self.uploads:
            if upload.final_of and not upload.complete and all(p.complete for p in upload.final_of):
                upload.size = upload.offset = sum(p.offset for p in upload.final_of)

    # -- appending --

    async def patch(self, index: int, how: str, n: int, length_how: str | None) -> None:
        upload = self.pick(index)
        if upload is None:
            return
        claimed = claimed_offset(how, upload.offset)
        length = length_of(length_how, upload, n)
        body = content_of(upload.index, upload.offset, upload.offset + n)
        extra = {"upload_length": length} if length is not None else {}
        response = await self.srv.patch(upload.path, body, claimed, **extra)
        what = f"PATCH {upload.path} offset={claimed} n={n} length={length} model={upload}"
        expected = 204
        if upload.final_of:
            expected = 403
        elif claimed != upload.offset:
            expected = 409
        elif length is not None and int(length) != (upload.size if upload.size is not None else int(length)):
            expected = 400  # a length is set once
        elif length is not None and int(length) < upload.offset:
            expected = 400  # never below what was received
        else:
            if length is not None:
                upload.size = int(length)
            room = upload.size if upload.size is not None else upload.declared  # a draft client's, too
            if room is not None and n > room - upload.offset:
                expected = 413
            else:
                upload.offset += n
        assert response.status == expected, (what, response.status, response.body)
        await self.check(upload, response, what)

    async def append(self, index: int, how: str, n: int, complete: bool, length_how: str | None) -> None:
        upload = self.pick(index)
        if upload is None:
            return
        version = upload.version or 8
        claimed = claimed_offset(how, upload.offset)
        length = length_of(length_how, upload, n)
        headers = self._draft(version, complete)
        headers["content_type"] = PARTIAL
        if length is not None:
            headers["upload_length"] = length
        body = content_of(upload.index, upload.offset, upload.offset + n)
        response = await self.srv.call(
            "PATCH", upload.path, ListBody(body), tus=False, upload_offset=str(claimed),
            content_length=str(n), **headers,
        )  # fmt: skip
        what = f"draft-{version} PATCH {upload.path} offset={claimed} n={n} complete={complete} length={length}"
        what += f" model={upload}"
        expected = self._append(upload, version, claimed, n, complete, length)
        assert response.status == expected, (what, response.status, response.body)
        await self.check(upload, response, what)

    @staticmethod
    def _append(upload: Upload, version: int, claimed: int, n: int, complete: bool, length: str | None) -> int:
        """The draft's append rules on the model; returns the status and updates the model."""
        if claimed != upload.offset:
            return 409
        if upload.complete or upload.final_of:
            return 400 if n or not complete else 204
        from_content = upload.offset + n if complete else None
        declared = int(length) if length is not None else from_content
        if length is not None and from_content is not None and int(length) != from_content:
            return 400
        if declared is not None:
            if declared < upload.offset:
                return 400
            known = upload.size if upload.size is not None else upload.declared
            if known is not None and known != declared:
                return 400
            if known is None:
                if version <= 6:
                    upload.size = declared
                else:
                    upload.declared = declared
        room = upload.size if upload.size is not None else upload.declared
        if room is not None and n > room - upload.offset:
            return 413
        upload.offset += n
        if complete:
            if upload.size is None:
                if upload.declared not in (None, upload.offset):
                    return 400
                upload.size = upload.offset
            elif upload.size != upload.offset:
                return 400
        return 204

    # -- reading --

    async def head(self, index: int) -> None:
        upload = self.pick(index)
        if upload is None:
            return
        response = await self.srv.call("HEAD", upload.path)
        assert response.status == 200
        if upload.final_of:
            return
        assert header(response, "upload-offset") == str(upload.offset)
        expected = str(upload.size) if upload.size is not None else None
        assert header(response, "upload-length") == expected
        assert (header(response, "upload-defer-length") == "1") == (upload.size is None)

    async def get(self, index: int, first: int, last: int) -> None:
        upload = self.pick(index)
        if upload is None or upload.final_of:
            return
        spec = f"bytes={first}-" if last < 0 else f"bytes={first}-{last}"
        response = await self.srv.call("GET", upload.path, range=spec)
        if not upload.complete:
            assert response.status == 409
            return
        size = upload.offset
        body = response.body
        data = body if isinstance(body, bytes) else b"".join([chunk async for chunk in body])
        whole = content_of(upload.index, 0, size)
        if 0 <= last < first:
            assert (response.status, data) == (200, whole)  # an invalid range is ignored
        elif first >= size:
            assert response.status == 416 and header(response, "content-range") == f"bytes */{size}"
        else:
            end = size if last < 0 else min(last + 1, size)
            assert response.status == 206 and data == whole[first:end]
            assert header(response, "content-range") == f"bytes {first}-{end - 1}/{size}"

    @staticmethod
    def _draft(version: int, complete: bool) -> dict[str, str]:
        headers = {"upload_draft_interop_version": str(version)}
        if version == 3:
            headers["upload_incomplete"] = "?0" if complete else "?1"
        else:
            headers["upload_complete"] = "?1" if complete else "?0"
        return headers


@given(st.lists(creations, min_size=1, max_size=4), st.lists(operations, min_size=3, max_size=30))
# A final upload joined when its partial completes later: an append must then name the joined offset.
@example([("partial", 1, 0)], [("final", [0]), ("patch", 0, "right", 1, None), ("append", 1, "right", 0, True, None)])
def test_offset_and_length_rules_hold_against_the_model(
    creations_: list[tuple[object, ...]], steps: list[tuple[object, ...]]
) -> None:
    async def scenario() -> None:
        run = Run()
        for creation in creations_:
            await run.create(creation)
        for step in steps:
            kind, *args = step
            await getattr(run, str(kind))(*args)
            run.join_finals()

    asyncio.run(asyncio.wait_for(scenario(), 30))
