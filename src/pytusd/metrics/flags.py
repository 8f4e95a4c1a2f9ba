"""The metrics flags of the ``pytusd`` command (tusd's names and defaults) and what they build."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

from pytusd.flags import Flag
from pytusd.metrics.recorder import NO_METRICS, Recorder

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

METRICS_FLAGS: tuple[Flag, ...] = (
    Flag("expose-metrics", "bool", True, "serve Prometheus metrics (tusd's names) on the same port"),
    Flag("metrics-path", "str", "/metrics", "path of the metrics, answered before the upload routes"),
)


def check_metrics_settings(settings: dict[str, Any]) -> None:
    """A metrics path is absolute and is not the creation URL (it would answer every creation)."""
    if not settings["expose_metrics"]:
        return
    path = str(settings["metrics_path"])
    if not path.startswith("/"):
        raise ValueError("--metrics-path must start with '/'")
    if path.strip("/") == str(settings["base_path"]).strip("/"):
        raise ValueError("--metrics-path must differ from --base-path")


def metrics_from_settings(settings: dict[str, Any]) -> tuple[Recorder, str | None]:
    """The recorder and the path of its scrapes; metrics off: none counted, nothing served."""
    if not settings["expose_metrics"]:
        return NO_METRICS, None
    from pytusd.metrics.prometheus import Metrics  # imported late: prometheus_client reads the environment

    return Metrics(), settings["metrics_path"]


@contextlib.contextmanager
def metrics_directory(settings: dict[str, Any]) -> Iterator[None]:
    """For several workers, the directory their metric files share: made before they start, removed after.

    prometheus_client's multi-process mode; a directory the operator set in ``PROMETHEUS_MULTIPROC_DIR``
    is used as it is (and left alone).
    """
    if not settings["expose_metrics"] or settings["workers"] < 2 or os.environ.get(MULTIPROC_ENV):
        yield
        return
    path = tempfile.mkdtemp(prefix="pytusd-metrics-")
    os.environ[MULTIPROC_ENV] = path  # the workers inherit it and import prometheus_client after
    try:
        yield
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)
