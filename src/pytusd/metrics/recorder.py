"""What the server reports as it works; this base records nothing.

Every place that counts (dispatcher, upload service, hooks, serving layer, S3 client) calls a
:class:`Recorder` unconditionally: with metrics off it is this one, whose methods do nothing, so
the hot path has no branch and no dependency on Prometheus.
"""

from __future__ import annotations

from pytusd.protocol.errors import HTTPError


class Recorder:
    """Metrics off. :class:`pytusd.metrics.prometheus.Metrics` records the same calls."""

    __slots__ = ()

    #: The media type of :meth:`exposition`.
    content_type = "text/plain; charset=utf-8"

    def exposition(self) -> bytes | None:
        """The answer to a scrape (None: nothing is recorded, there is nothing to scrape)."""
        return None

    def close(self) -> None:
        """This process stops serving (at shutdown)."""

    def request(self, method: str) -> None:
        """A request arrived (``method`` after ``X-HTTP-Method-Override``)."""

    def responded(self, method: str, seconds: float) -> None:
        """The request was answered after ``seconds``."""

    def failed(self, error: HTTPError) -> None:
        """The request was answered with ``error``."""

    def connection_opened(self) -> None: ...

    def connection_closed(self) -> None: ...

    def receiving(self, delta: int) -> None:
        """A body began (+1) or ended (-1) arriving into an upload."""

    def received(self, nbytes: int) -> None:
        """Bytes of uploads stored."""

    def upload_created(self) -> None: ...

    def upload_finished(self) -> None: ...

    def upload_terminated(self) -> None: ...

    def hook_invoked(self, hook: str) -> None: ...

    def hook_failed(self, hook: str) -> None: ...

    def store_request(self, store: str, operation: str, seconds: float) -> None:
        """A request to the store's service (``store``: s3, gcs, azure) took ``seconds``."""


NO_METRICS = Recorder()
