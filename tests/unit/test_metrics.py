"""The Metrics object of an embedded app: its own registry, nothing global, nothing when off."""

from __future__ import annotations

import prometheus_client

from pytusd.metrics.prometheus import Metrics, multiprocess
from pytusd.metrics.recorder import NO_METRICS
from pytusd.protocol.errors import HTTPError


def samples(metrics: Metrics) -> dict[str, float]:
    lines = metrics.exposition().decode().splitlines()
    return {name: float(value) for name, value in (line.rsplit(" ", 1) for line in lines if not line.startswith("#"))}


def test_two_apps_in_one_process_count_apart_and_register_nothing_globally() -> None:
    assert not multiprocess()  # the test process never sets PROMETHEUS_MULTIPROC_DIR
    first, second = Metrics(), Metrics()
    first.request("PATCH")
    first.received(7)
    first.failed(
        HTTPError(409, "x", problem_type="https://iana.org/assignments/http-problem-types#mismatching-upload-offset")
    )
    second.request("GET")
    one, two = samples(first), samples(second)
    assert (one['tusd_requests_total{method="PATCH"}'], one['tusd_requests_total{method="GET"}']) == (1, 0)
    assert (two['tusd_requests_total{method="PATCH"}'], two['tusd_requests_total{method="GET"}']) == (0, 1)
    assert one["tusd_bytes_received"] == 7 and two["tusd_bytes_received"] == 0
    assert one['tusd_errors_total{code="ERR_MISMATCHED_OFFSET",status="409"}'] == 1
    assert "tusd_requests" not in {family.name for family in prometheus_client.REGISTRY.collect()}


def test_unknown_methods_are_not_counted_as_tusd_does_but_timed() -> None:
    metrics = Metrics()
    metrics.request("PROPFIND")
    metrics.responded("PROPFIND", 0.5)
    found = samples(metrics)
    assert not any("PROPFIND" in name for name in found)
    assert found['pytusd_request_duration_seconds_count{method="other"}'] == 1


def test_metrics_off_records_and_shows_nothing() -> None:
    NO_METRICS.request("GET")
    NO_METRICS.received(5)
    assert NO_METRICS.exposition() is None


def test_store_requests_are_timed_by_store_and_operation() -> None:
    metrics = Metrics()
    metrics.store_request("gcs", "get_object", 0.02)
    metrics.store_request("gcs", "get_object", 0.5)
    metrics.store_request("azure", "stage_block", 0.2)
    found = samples(metrics)
    assert found['pytusd_store_request_duration_seconds_count{operation="get_object",store="gcs"}'] == 2
    assert found['pytusd_store_request_duration_seconds_bucket{le="0.025",operation="get_object",store="gcs"}'] == 1
    assert found['pytusd_store_request_duration_seconds_count{operation="stage_block",store="azure"}'] == 1
