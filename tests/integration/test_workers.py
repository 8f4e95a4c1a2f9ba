"""``--workers 2`` is as safe as one worker, and both workers serve.

Two clients race, round after round, to PATCH the same offset of one upload from connections held
by different worker processes. Whatever the interleaving, the stored file must be exactly the
sequence of bytes the server acknowledged: a 204 acknowledges its whole chunk, an error response
with ``Upload-Offset`` (a writer stopped by the other) acknowledges the part it reports saved, and
nothing else may be in the file - no interleaving, no byte written twice at one position.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.integration.test_locking import (
    OCTET,
    PROMPT,
    connect,
    create_upload,
    data_path,
    head_offset,
    upload_id,
    worker_pids,
)
from tests.support.rawhttp import Response
from tests.support.server import ServerProcess

PIECE = 16 * 1024


@pytest.fixture(scope="module")
def server2(tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    proc = ServerProcess(tmp_path_factory.mktemp("workers") / "data", ["--workers", "2"]).start()
    yield proc  # type: ignore[misc]
    proc.stop()


@pytest.fixture(scope="module")
def server1(tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    proc = ServerProcess(tmp_path_factory.mktemp("worker") / "data", ["--workers", "1"]).start()
    yield proc  # type: ignore[misc]
    proc.stop()


# -- racing writers ------------------------------------------------------------------------------


@dataclass
class Attempt:
    client: str
    chunk: bytes
    reply: Response | None


def _patch_from(server: ServerProcess, pid: int, path: str, offset: int, chunk: bytes,
                start: threading.Barrier, pause: float = 0.0) -> Response | None:  # fmt: skip
    """PATCH ``chunk`` at ``offset`` over a connection served by worker ``pid``, body in pieces.

    ``pause`` between pieces makes a body still stream when the rival arrives (so it is stopped
    mid-body, also across processes, where the stop request is polled for).
    """
    conn = connect(server, on=pid)
    try:
        start.wait(PROMPT)

        def send() -> None:
            conn.start_patch(path, offset, len(chunk))
            for i in range(0, len(chunk), PIECE):
                if not conn.send_body(chunk[i : i + PIECE]):
                    return  # answered early (409) and closed: the rest is not wanted
                if pause:
                    time.sleep(pause)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        reply = conn.read_reply(PROMPT)
    finally:
        conn.close()
    sender.join(PROMPT)
    return reply


def _race(server: ServerProcess, pids: list[int], rounds: int, seed: int) -> dict[tuple[int, ...], int]:
    rng = random.Random(seed)
    path = create_upload(server, 1 << 30)
    offset = 0
    acknowledged = 0
    outcomes: dict[tuple[int, ...], int] = {}
    with ThreadPoolExecutor(2) as pool:
        for n in range(rounds):
            # Small chunks (sent with the headers) and big ones (still streaming when the rival comes).
            sizes = [rng.choice((rng.randint(1, 4096), rng.randint(50_000, 400_000))) for _ in range(2)]
            chunks = [rng.randbytes(size) for size in sizes]
            pauses = [rng.choice((0.0, 0.0, 0.01)) for _ in range(2)]
            start = threading.Barrier(2)
            futures = [
                pool.submit(_patch_from, server, pids[i], path, offset, chunks[i], start, pauses[i]) for i in range(2)
            ]
            attempts = [Attempt("AB"[i], chunks[i], futures[i].result(PROMPT * 3)) for i in range(2)]

            new_offset = head_offset(server, path)
            assert new_offset is not None
            stored = data_path(server, path).read_bytes()
            assert len(stored) == new_offset, "HEAD and the file on disk disagree"
            saved = []
            for attempt in attempts:
                reply = attempt.reply
                assert reply is not None, f"round {n}: client {attempt.client} got no response"
                # Two clients race for the lock: which one wins (204) and whether the other is refused
                # (409) or stopped (400) depends on their timing; the checks below hold for each.
                assert reply.status in (204, 400, 409), f"round {n}: {attempt.client}: {reply}"
                if reply.status == 409:
                    continue
                # 204, or 400 "stopped by a newer request": Upload-Offset says what it saved.
                assert reply.offset is not None, f"round {n}: {attempt.client}: {reply}"
                kept = reply.offset - offset
                assert 0 <= kept <= len(attempt.chunk), f"round {n}: {attempt.client} reports {kept} bytes"
                if reply.status == 204:
                    assert kept == len(attempt.chunk), f"round {n}: 204 for {kept} of {len(attempt.chunk)} bytes"
                assert stored[offset : offset + kept] == attempt.chunk[:kept], (
                    f"round {n}: the bytes acknowledged to client {attempt.client} are not in the file "
                    f"at their offset (interleaved or overwritten)"
                )
                if kept:
                    saved.append(kept)
            assert len(saved) <= 1, f"round {n}: both writers stored bytes at offset {offset}: {saved}"
            key = tuple(sorted(a.reply.status for a in attempts if a.reply is not None))
            outcomes[key] = outcomes.get(key, 0) + 1
            acknowledged += sum(saved)
            assert new_offset == offset + sum(saved), (
                f"round {n}: the offset moved by {new_offset - offset} bytes, {sum(saved)} were acknowledged"
            )
            offset = new_offset
    assert head_offset(server, path) == acknowledged
    assert data_path(server, path).stat().st_size == acknowledged
    assert offset > 0, f"no round stored anything: {outcomes}"
    return outcomes


def test_racing_patches_on_two_workers_never_corrupt_the_upload(server2: ServerProcess) -> None:
    pids = worker_pids(server2, 2)
    outcomes = _race(server2, pids, rounds=30, seed=1)
    print("outcomes (statuses of a round -> rounds):", outcomes)


def test_racing_patches_on_one_worker_never_corrupt_the_upload(server1: ServerProcess) -> None:
    pid = worker_pids(server1, 1)[0]
    outcomes = _race(server1, [pid, pid], rounds=30, seed=2)
    print("outcomes (statuses of a round -> rounds):", outcomes)


def test_racing_delete_and_patch_on_two_workers(server2: ServerProcess) -> None:
    """A DELETE racing a PATCH: afterwards the upload is gone entirely, never half-written."""
    pids = worker_pids(server2, 2)
    rng = random.Random(3)
    for _ in range(10):
        path = create_upload(server2, 1_000_000)
        chunk = rng.randbytes(rng.randint(1, 400_000))
        start = threading.Barrier(2)

        def delete(path: str = path, start: threading.Barrier = start) -> Response:
            with connect(server2, on=pids[1]) as conn:
                start.wait(PROMPT)
                return conn.request("DELETE", path)

        with ThreadPoolExecutor(2) as pool:
            patched = pool.submit(_patch_from, server2, pids[0], path, 0, chunk, start)
            deleted = pool.submit(delete)
            patch_reply, delete_reply = patched.result(PROMPT * 3), deleted.result(PROMPT * 3)
        assert delete_reply.status == 204, delete_reply
        # PATCH and DELETE race: the PATCH finishes first (204), is stopped (400) or finds the upload gone (404).
        assert patch_reply is None or patch_reply.status in (204, 400, 404), patch_reply
        assert head_offset(server2, path) is None
        leftovers = [p.name for p in server2.upload_dir.iterdir() if p.name.startswith(upload_id(path))]
        assert leftovers == [], f"files of a deleted upload remain: {leftovers}"


# -- both workers serve -------------------------------------------------------------------------


def _uploads_over(server: ServerProcess, pid: int, seed: int, count: int) -> int:
    """``count`` small uploads over one keep-alive connection served by ``pid``; returns its pid."""
    rng = random.Random(seed)
    with connect(server, on=pid) as conn:
        for _ in range(count):
            data = rng.randbytes(rng.randint(0, 64 * 1024))
            created = conn.request("POST", "/files/", {"Upload-Length": str(len(data))})
            assert created.status == 201, created
            path = "/files/" + created.headers["location"].rsplit("/", 1)[1]
            half = len(data) // 2
            for start, end in ((0, half), (half, len(data))):
                reply = conn.request("PATCH", path, {"Upload-Offset": str(start), "Content-Type": OCTET},
                                     data[start:end])  # fmt: skip
                assert reply.status == 204 and reply.offset == end, reply
            headed = conn.request("HEAD", path)
            assert headed.status == 200 and headed.headers["upload-offset"] == str(len(data)), headed
            got = conn.request("GET", path)
            assert got.status == 200 and got.body == data, (got.status, len(got.body), len(data))
            assert Path(data_path(server, path)).read_bytes() == data
    return pid


def test_many_parallel_small_uploads_are_served_by_both_workers(server2: ServerProcess) -> None:
    pids = worker_pids(server2, 2)
    clients, per_client = 16, 10
    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(_uploads_over, server2, pids[i % 2], i, per_client) for i in range(clients)]
        served = [f.result(60) for f in futures]
    assert sorted(set(served)) == sorted(pids)
