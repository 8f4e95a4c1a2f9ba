"""Racing clients make progress: a holder that is receiving bytes is not stopped by every newcomer.

Twelve clients race on one 6 MiB upload (each: HEAD, PATCH the rest, random pause of at most 50 ms
on failure). With "every newcomer stops the holder", on S3 they stopped each other before any byte
was written and moved 421 KB in 60 s. Run on whichever store the session uses, with the machine's
file locks and with Redis locks. A stalled holder is still stopped (tests/integration/test_locking.py).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from urllib.parse import urljoin

import httpx
import pytest
from tests.integration.racing import TUS, check_race, race
from tests.services.redis_server import RedisServer
from tests.support.server import ServerProcess

MiB = 1024 * 1024


@pytest.mark.parametrize("locks", ["file", "redis"])
def test_twelve_racing_clients_finish_one_upload_byte_exact(
    locks: str, server_factory: Callable[..., ServerProcess], redis_server: RedisServer, redis_prefix: str
) -> None:
    args = ["--redis-url", redis_server.url, "--redis-prefix", redis_prefix] if locks == "redis" else []
    server = server_factory(args)
    data = random.Random(7).randbytes(6 * MiB)
    with httpx.Client(headers=TUS, timeout=30.0) as client:
        created = client.post(server.url, headers={"Upload-Length": str(len(data))})
        assert created.status_code == 201, created.text
        url = urljoin(server.url, created.headers["location"])
        check_race(race(url, data))
        stored = client.get(url)
    assert stored.status_code == 200
    assert stored.content == data
