"""Prometheus metrics with tusd's names, labels and help texts, so tusd's dashboards keep working.

tusd's families (``tusd_requests_total{method}``, ``tusd_errors_total{status,code}``,
``tusd_bytes_received``, ``tusd_uploads_created``/``_finished``/``_terminated``,
``tusd_connections_open``, ``tusd_hook_invocations_total{hooktype}``,
``tusd_hook_errors_total{hooktype}``) plus pytusd's own (``pytusd_*``: uploads in progress,
request and S3 request durations).

With several worker processes each one writes its numbers into prometheus_client's files in
``PROMETHEUS_MULTIPROC_DIR`` (the ``pytusd`` command makes and removes that directory), and a
scrape, whichever worker answers it, sums all of them. prometheus_client decides between files and
memory when it is imported, so :class:`Metrics` follows what it decided.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Metric, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from pytusd.hooks.base import HookEvent
from pytusd.metrics.codes import error_code
from pytusd.metrics.recorder import Recorder
from pytusd.protocol.errors import HTTPError

#: The methods tusd counts, each present from 0; others are not counted in tusd_requests_total.
REQUEST_METHODS = ("GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS")
#: Request durations span a HEAD (milliseconds) and a PATCH of gigabytes (an hour).
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
STORE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: tusd's counters without ``_total``: prometheus_client always appends it in the text format, so
#: the exposition takes it off again (tusd's dashboards query these exact names).
_BARE_COUNTERS = (b"tusd_bytes_received", b"tusd_uploads_created", b"tusd_uploads_finished", b"tusd_uploads_terminated")
_LIVE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")


def multiprocess() -> bool:
    """Whether prometheus_client keeps values in files (it decided when it was imported)."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


class Metrics(Recorder):
    """Records what the server does; :meth:`exposition` answers a scrape.

    Opt-in for an embedded app (``TusApp(store, metrics=Metrics())``): each instance has its own
    registry, nothing is registered globally. In multi-process mode (``PROMETHEUS_MULTIPROC_DIR``
    set before prometheus_client was imported) the numbers of every process writing into that
    directory are summed.
    """

    __slots__ = (
        "_by_hook", "_by_method", "_bytes", "_connections", "_created", "_durations", "_errors", "_finished",
        "_hook_errors", "_hooks", "_in_progress", "_multiprocess_dir", "_other_durations", "_requests", "_source",
        "_store_durations", "_terminated",
    )  # fmt: skip

    #: Prometheus's text format 0.0.4, which tusd's Go handler answers with.
    content_type = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        self._multiprocess_dir: str | None = None
        registry: CollectorRegistry | None = CollectorRegistry(auto_describe=True)
        if multiprocess():
            path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
            self._multiprocess_dir = path
            # Values live in files; the registry that answers scrapes reads every process's files.
            self._source: Collector = _MultiProcess(path)
            registry = None
        else:
            assert registry is not None
            self._source = registry
        self._requests = Counter(
            "tusd_requests_total", "Total number of requests served by tusd per method.", ["method"], registry=registry
        )
        self._errors = Counter(
            "tusd_errors_total", "Total number of errors per status.", ["status", "code"], registry=registry
        )
        self._bytes = Counter("tusd_bytes_received", "Number of bytes received for uploads.", registry=registry)
        self._created = Counter("tusd_uploads_created", "Number of created uploads.", registry=registry)
        self._finished = Counter("tusd_uploads_finished", "Number of finished uploads.", registry=registry)
        self._terminated = Counter("tusd_uploads_terminated", "Number of terminated uploads.", registry=registry)
        self._connections = Gauge(
            "tusd_connections_open",
            "Current number of open connections.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._hooks = Counter(
            "tusd_hook_invocations_total", "Total number of invocations per hook type.", ["hooktype"], registry=registry
        )
        self._hook_errors = Counter(
            "tusd_hook_errors_total", "Total number of execution errors per hook type.", ["hooktype"], registry=registry
        )
        self._in_progress = Gauge(
            "pytusd_uploads_in_progress",
            "Number of request bodies being received into uploads.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._durations = Histogram(
            "pytusd_request_duration_seconds",
            "Time from a request's arrival until its response was ready, per method.",
            ["method"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self._store_durations = Histogram(
            "pytusd_store_request_duration_seconds",
            "Duration of requests to the object store (S3, GCS, Azure), per store and operation.",
            ["store", "operation"],
            buckets=STORE_BUCKETS,
            registry=registry,
        )
        # Children looked up once: labels() validates and locks on every call.
        self._by_method = {m: (self._requests.labels(m), self._durations.labels(m)) for m in REQUEST_METHODS}
        self._other_durations = self._durations.labels("other")
        self._by_hook = {h.value: (self._hooks.labels(h.value), self._hook_errors.labels(h.value)) for h in HookEvent}

    # -- recording (each a dictionary lookup and prometheus_client's own lock) -----------------

    def request(self, method: str) -> None:
        children = self._by_method.get(method)
        if children is not None:
            children[0].inc()

    def responded(self, method: str, seconds: float) -> None:
        children = self._by_method.get(method)
        (children[1] if children is not None else self._other_durations).observe(seconds)

    def failed(self, error: HTTPError) -> None:
        self._errors.labels(str(error.status), error_code(error)).inc()

    def connection_opened(self) -> None:
        self._connections.inc()

    def connection_closed(self) -> None:
        self._connections.dec()

    def receiving(self, delta: int) -> None:
        self._in_progress.inc(delta)

    def received(self, nbytes: int) -> None:
        if nbytes > 0:
            self._bytes.inc(nbytes)

    def upload_created(self) -> None:
        self._created.inc()

    def upload_finished(self) -> None:
        self._finished.inc()

    def upload_terminated(self) -> None:
        self._terminated.inc()

    def hook_invoked(self, hook: str) -> None:
        children = self._by_hook.get(hook)
        (children[0] if children is not None else self._hooks.labels(hook)).inc()

    def hook_failed(self, hook: str) -> None:
        children = self._by_hook.get(hook)
        (children[1] if children is not None else self._hook_errors.labels(hook)).inc()

    def store_request(self, store: str, operation: str, seconds: float) -> None:
        self._store_durations.labels(store, operation).observe(seconds)

    # -- answering a scrape --------------------------------------------------------------------

    def exposition(self) -> bytes:
        """Every family in Prometheus's text format, with tusd's exact names."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_WithoutCreated(self._source))
        text = generate_latest(registry)
        for name in _BARE_COUNTERS:
            text = text.replace(name + b"_total", name)
        return text

    def close(self) -> None:
        """This process stops serving: its live gauges (open connections) stop counting."""
        if self._multiprocess_dir:
            mark_process_dead(os.getpid(), self._multiprocess_dir)  # type: ignore[no-untyped-call]


class _MultiProcess(MultiProcessCollector):
    """prometheus_client's collector of every process's files, minus gauges of dead processes.

    A worker that crashed never said goodbye: its live gauges (open connections, bodies in
    progress) would count forever, so a scrape removes them first, as prometheus_client's
    ``mark_process_dead`` is meant to be used. Its counters stay: totals survive restarts.
    """

    def __init__(self, path: str) -> None:
        super().__init__(None, path)  # type: ignore[no-untyped-call]
        self._dir = path

    def collect(self) -> Iterable[Metric]:
        for name in glob.glob(os.path.join(self._dir, "gauge_live*.db")):
            match = _LIVE_FILE.search(os.path.basename(name))
            if match is not None and not _alive(int(match.group(1))):
                mark_process_dead(int(match.group(1)), self._dir)  # type: ignore[no-untyped-call]
        return super().collect()  # type: ignore[no-untyped-call, no-any-return]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _WithoutCreated(Collector):
    """tusd exports no ``*_created`` series; prometheus_client adds one per counter and histogram."""

    def __init__(self, source: Collector) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        for family in self._source.collect():
            created = family.name + "_created"
            family.samples = [s for s in family.samples if s.name != created]
            yield family
