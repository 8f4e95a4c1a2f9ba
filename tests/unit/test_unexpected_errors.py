"""A bug (an exception nobody expected, in pytusd or in a store) is answered by pytusd itself: a
counted, logged, one-line 500 with the tus and CORS headers, not the web server's bare 500."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pytusd.info import UploadInfo
from pytusd.metrics.prometheus import Metrics
from pytusd.stores.memory import MemoryStore
from tests.support.inprocess import Server, header
from tests.unit.test_metrics import samples


class BrokenStore(MemoryStore):
    """A store with a bug: reading an upload's info raises what no store should."""

    async def get_info(self, upload_id: str) -> UploadInfo:
        raise RuntimeError("a bug\r\nInjected: header")


def test_a_bug_is_a_counted_logged_500_with_cors_and_tus_headers(caplog: pytest.LogCaptureFixture) -> None:
    server = Server(BrokenStore(), cors_allow_origin=r"https://app\.example")
    metrics = Metrics()
    server.service.metrics = metrics

    path = ""

    async def scenario() -> None:
        nonlocal path
        path = await server.create(5)
        with caplog.at_level(logging.ERROR, logger="pytusd"):
            response = await server.call("HEAD", path, origin="https://app.example")
        assert response.status == 500
        assert response.body == b"internal server error\n"
        assert header(response, "tus-resumable") == "1.0.0"
        assert header(response, "access-control-allow-origin") == "https://app.example"

    asyncio.run(scenario())
    found = samples(metrics)
    assert found['tusd_errors_total{code="ERR_INTERNAL_SERVER_ERROR",status="500"}'] == 1
    assert found['pytusd_request_duration_seconds_count{method="HEAD"}'] == 1
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.exc_info is not None and "a bug" in str(record.exc_info[1])
    assert repr(path) in record.getMessage()  # quoted: what a client sent is never logged raw


def test_cancellation_is_not_an_error() -> None:
    class Cancelled(MemoryStore):
        async def get_info(self, upload_id: str) -> UploadInfo:
            raise asyncio.CancelledError

    server = Server(Cancelled())

    async def scenario() -> None:
        path = await server.create(5)
        with pytest.raises(asyncio.CancelledError):
            await server.call("HEAD", path)

    asyncio.run(scenario())
