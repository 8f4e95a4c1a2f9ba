"""Three pytusd instances on one S3 bucket behind nginx, locks in Redis: what an operator relies on.

Each test starts its own cluster (tests/integration/cluster_helpers.py: the suite's Swift, a
private redis-server, Debian's nginx balancing round robin with request buffering off). Requests
go to a chosen instance directly where the test is about placement, and through nginx where it
is about what a client behind a load balancer sees. Runs in the S3 pass of scripts/test.
"""

from __future__ import annotations

import itertools
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import redis
from tests.integration.cluster_helpers import Cluster, ClusterFactory, ClusterInstance, cluster_fixture  # noqa: F401
from tests.integration.hook_helpers import HookDir
from tests.integration.racing import OCTET, TUS, check_race, race
from tests.support.rawhttp import Connection
from tests.support.wait import wait_until

STORES = ("s3",)
MiB = 1024 * 1024
TTL = 3.0  # the cluster's --redis-lock-ttl


@dataclass
class Address:
    host: str
    port: int


def client() -> httpx.Client:
    return httpx.Client(headers=TUS, timeout=30.0)


def create(base: str, length: int | None, **headers: str) -> str:
    """A new upload created at ``base`` (an instance's or nginx's /files/); returns its path."""
    hdrs = {"Upload-Length": str(length)} if length is not None else {}
    with client() as c:
        response = c.post(base, headers={**hdrs, **headers})
    assert response.status_code == 201, response.text
    return urlsplit(response.headers["location"]).path


def at(instance: ClusterInstance | Cluster, path: str) -> str:
    return urljoin(instance.base_url, path)


def patch(instance: ClusterInstance | Cluster, path: str, offset: int, data: bytes) -> httpx.Response:
    with client() as c:
        return c.patch(at(instance, path), content=data, headers={"Upload-Offset": str(offset), "Content-Type": OCTET})


def offsets(cluster: Cluster, path: str) -> list[int | None]:
    """The offset HEAD reports on each instance (None: not 200)."""
    seen: list[int | None] = []
    with client() as c:
        for instance in cluster.instances:
            try:
                response = c.head(at(instance, path))
            except httpx.ConnectError:  # a killed instance
                seen.append(None)
                continue
            seen.append(int(response.headers["upload-offset"]) if response.status_code == 200 else None)
    return seen


def contents(cluster: Cluster, path: str) -> list[bytes | int]:
    """What GET returns on each instance (its status if not 200)."""
    got: list[bytes | int] = []
    with client() as c:
        for instance in cluster.instances:
            response = c.get(at(instance, path))
            got.append(response.content if response.status_code == 200 else response.status_code)
    return got


def objects_of(cluster: Cluster, paths: list[str]) -> list[str]:
    """The bucket's objects of these uploads (Swift's listings may lag a deletion: wait on this)."""
    ids = [p.rsplit("/", 1)[1] for p in paths]
    listing = cluster.keys()
    return [key for key in listing if any(i in key for i in ids)]


def test_consecutive_patches_on_different_instances(cluster: ClusterFactory) -> None:
    c = cluster()
    data = random.Random(1).randbytes(7 * MiB + 321)
    path = create(c.instances[0].url, len(data))
    cuts = [0, 2 * MiB, 5 * MiB + 7, len(data)]
    for n, (start, end) in enumerate(itertools.pairwise(cuts)):
        response = patch(c.instances[n % 3], path, start, data[start:end])
        assert response.status_code == 204, response.text
        assert offsets(c, path) == [end] * 3
    assert contents(c, path) == [data] * 3


def test_racing_clients_through_nginx_finish_byte_exact(cluster: ClusterFactory) -> None:
    c = cluster()
    data = random.Random(2).randbytes(6 * MiB)
    path = create(c.url, len(data))
    check_race(race(at(c, path), data))
    assert contents(c, path) == [data] * 3
    assert offsets(c, path) == [len(data)] * 3


def test_a_stalled_patch_on_one_instance_is_stopped_by_a_patch_on_another(cluster: ClusterFactory) -> None:
    c = cluster(args=["--lock-timeout", "15s"])
    data = random.Random(3).randbytes(3 * MiB)
    path = create(c.instances[0].url, len(data))
    first = MiB
    with Connection(Address("127.0.0.1", c.instances[0].port)) as stalled:
        headers = [*TUS.items(), ("Upload-Offset", "0"), ("Content-Type", OCTET)]
        stalled.send_head("PATCH", path, headers, content_length=len(data))
        assert stalled.send_body(data[:first])  # then nothing: a client that vanished unnoticed
        with redis.Redis.from_url(c.redis.url) as r:
            key = f"pytusd:lock:{path.rsplit('/', 1)[1]}"
            wait_until(lambda: r.exists(key), timeout=10, message="the stalled PATCH to hold its lock")
        began = time.monotonic()
        # A newer request on another instance: the stalled holder saves what it got and lets go.
        response = patch(c.instances[1], path, 0, data)
        waited = time.monotonic() - began
        assert response.status_code == 409, response.text  # it stands where the holder stopped
        assert int(response.headers["upload-offset"]) == first
        assert waited < 10, f"waited {waited:.1f} s: the holder on the other instance was not asked to stop"
        reply = stalled.read_reply(10, method="PATCH")
        assert reply is None or reply.status == 400
    response = patch(c.instances[2], path, first, data[first:])
    assert response.status_code == 204, response.text
    assert contents(c, path) == [data] * 3


def test_killed_instance_mid_patch_resumes_through_another_within_the_ttl(cluster: ClusterFactory) -> None:
    c = cluster(args=["--lock-timeout", "15s"])
    data = random.Random(4).randbytes(8 * MiB)
    path = create(c.instances[0].url, len(data))
    sent = 6 * MiB
    with Connection(Address("127.0.0.1", c.instances[1].port)) as doomed:
        headers = [*TUS.items(), ("Upload-Offset", "0"), ("Content-Type", OCTET)]
        doomed.send_head("PATCH", path, headers, content_length=len(data))
        assert doomed.send_body(data[:sent])
        # The instance has the bytes (or most of them) when it dies: a crash, nothing saved on the way out.
        c.instances[1].kill()
    began = time.monotonic()
    stored = offsets(c, path)
    assert stored[1] is None and stored[0] == stored[2]
    offset = stored[0]
    assert offset is not None and offset <= sent
    response = patch(c.instances[2], path, offset, data[offset:])
    waited = time.monotonic() - began
    assert response.status_code == 204, response.text
    assert waited < TTL + 5, f"the dead instance's lock blocked the upload {waited:.1f} s (TTL {TTL} s)"
    c.instances[1].start()
    assert contents(c, path) == [data] * 3


def test_redis_restarted_between_patches(cluster: ClusterFactory) -> None:
    c = cluster()
    data = random.Random(5).randbytes(2 * MiB)
    path = create(c.instances[0].url, len(data))
    assert patch(c.instances[0], path, 0, data[:MiB]).status_code == 204
    c.restart_redis()
    response = patch(c.instances[1], path, MiB, data[MiB:])
    assert response.status_code == 204, response.text
    assert contents(c, path) == [data] * 3


def test_redis_restarted_during_a_patch(cluster: ClusterFactory) -> None:
    c = cluster()
    data = random.Random(6).randbytes(4 * MiB)
    path = create(c.instances[0].url, len(data))
    with Connection(Address("127.0.0.1", c.instances[0].port)) as conn:
        headers = [*TUS.items(), ("Upload-Offset", "0"), ("Content-Type", OCTET)]
        conn.send_head("PATCH", path, headers, content_length=len(data))
        assert conn.send_body(data[: 2 * MiB])
        key = f"pytusd:lock:{path.rsplit('/', 1)[1]}"
        with redis.Redis.from_url(c.redis.url) as r:
            wait_until(lambda: r.exists(key), timeout=10, message="the PATCH to hold its lock in Redis")
        c.restart_redis()  # the holder's lock is gone with Redis's data; its renewal takes it back
        with redis.Redis.from_url(c.redis.url) as r:
            wait_until(lambda: r.exists(key), timeout=10, message="the holder to take its lock back")
        assert conn.send_body(data[2 * MiB :])
        reply = conn.read_reply(30, method="PATCH")
    assert reply is not None and reply.status == 204, reply
    assert reply.offset == len(data)
    assert contents(c, path) == [data] * 3


def test_redis_down_gives_503_with_retry_after_and_work_goes_on_when_it_is_back(cluster: ClusterFactory) -> None:
    c = cluster()
    data = random.Random(7).randbytes(MiB)
    path = create(c.instances[0].url, len(data))
    assert patch(c.instances[0], path, 0, data[:1000]).status_code == 204
    c.redis.kill()
    for instance in c.instances:
        response = patch(instance, path, 1000, data[1000:])
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"].isdigit()
        assert response.text.count("\n") <= 1 and "lock" in response.text
    assert offsets(c, path) == [1000] * 3  # reading needs no lock
    c.restart_redis()
    response = patch(c.instances[2], path, 1000, data[1000:])  # no restart of pytusd
    assert response.status_code == 204, response.text
    assert contents(c, path) == [data] * 3


def test_concatenation_across_instances_finishes_once(cluster: ClusterFactory, tmp_path: Path) -> None:
    hooks = HookDir.create(tmp_path / "hooks")  # one directory: every instance's hooks record there
    c = cluster(args=["--hooks-dir", str(hooks.path), "--hooks-enabled-events", "post-create,post-finish"])
    a = random.Random(8).randbytes(MiB + 5)
    b = random.Random(9).randbytes(2 * MiB + 3)
    done = create(c.instances[0].url, len(a), **{"Upload-Concat": "partial"})
    assert patch(c.instances[0], done, 0, a).status_code == 204
    late = create(c.instances[1].url, len(b), **{"Upload-Concat": "partial"})
    assert patch(c.instances[1], late, 0, b[:MiB]).status_code == 204
    # The final, on a third instance, while one partial is still arriving (concatenation-unfinished).
    final = create(c.instances[2].url, None, **{"Upload-Concat": f"final;{done} {late}"})
    assert patch(c.instances[0], late, MiB, b[MiB:]).status_code == 204
    # Every instance looks at the final at once: it is joined once, by one of them.
    with ThreadPoolExecutor(3) as pool:
        seen = list(pool.map(lambda i: offsets(c, final)[i], range(3)))
    assert seen == [len(a) + len(b)] * 3
    assert contents(c, final) == [a + b] * 3
    final_id = final.rsplit("/", 1)[1]

    def finishes() -> list[str]:
        return [r["input"]["Event"]["Upload"]["ID"] for r in hooks.calls("post-finish")]

    wait_until(lambda: {done.rsplit("/", 1)[1], late.rsplit("/", 1)[1], final_id} <= set(finishes()), timeout=15)
    time.sleep(1.0)  # hooks run in the background: give a duplicate the time to show
    ids = finishes()
    assert sorted(ids) == sorted(set(ids)), f"a post-finish hook fired twice: {ids}"
    creates = [r["input"]["Event"]["Upload"]["ID"] for r in hooks.calls("post-create")]
    assert sorted(creates) == sorted({done.rsplit("/", 1)[1], late.rsplit("/", 1)[1], final_id})


def test_delete_on_one_instance_is_404_on_the_others(cluster: ClusterFactory) -> None:
    c = cluster()
    path = create(c.instances[0].url, 10)
    assert patch(c.instances[1], path, 0, b"01234").status_code == 204
    with client() as cl:
        assert cl.delete(at(c.instances[2], path)).status_code == 204
        for instance in c.instances:
            assert cl.head(at(instance, path)).status_code == 404
            assert patch(instance, path, 5, b"56789").status_code == 404
    wait_until(lambda: not objects_of(c, [path]), timeout=30, message="no object of the upload left")


def test_expired_uploads_are_swept_once_and_wholly(cluster: ClusterFactory) -> None:
    c = cluster(args=["--expire-after", "3s", "--expire-interval", "1s"])
    paths = []
    for n in range(6):
        paths.append(create(c.instances[n % 3].url, 100))
        assert patch(c.instances[(n + 1) % 3], paths[-1], 0, b"x" * 10).status_code == 204
    keep = create(c.url, 3)
    assert patch(c, keep, 0, b"abc").status_code == 204  # complete: never expires
    wait_until(lambda: all(offsets(c, p) == [None] * 3 for p in paths), timeout=30, message="every upload swept")
    wait_until(lambda: not objects_of(c, paths), timeout=30, message="no object of a swept upload left")
    assert offsets(c, keep) == [3] * 3
    for instance in c.instances:
        assert "Traceback" not in instance.log() and "sweep failed" not in instance.log()
    # Each upload was removed once, by whichever instance led the sweep that found it.
    removed = [int(m) for i in c.instances for m in re.findall(r"removed (\d+) expired uploads", i.log())]
    assert sum(removed) == len(paths), removed


def test_ietf_draft_uploads_through_nginx_with_interim_responses_off(cluster: ClusterFactory) -> None:
    """Debian 12's nginx takes a 104 for the final response; with --no-interim-responses the draft works through it."""
    c = cluster(args=["--no-interim-responses"])
    with Connection(Address("127.0.0.1", c.proxy.port), timeout=15) as conn:
        for n in range(2):  # the second request on the same connection shows the first ended cleanly
            body = f"draft upload {n}".encode()
            headers = [("Upload-Draft-Interop-Version", "6"), ("Upload-Complete", "?1")]
            conn.send_head("POST", "/files/", headers, content_length=len(body), host=f"127.0.0.1:{c.proxy.port}")
            conn.send_body(body)
            reply = conn.read_reply(10, method="POST")
            assert reply is not None and reply.status == 201, reply
            assert not reply.interims
            location = reply.header("location")
            assert location is not None and urlsplit(location).port == c.proxy.port
            assert contents(c, urlsplit(location).path) == [body] * 3
