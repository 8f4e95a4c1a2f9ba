"""How much one socket read may take, and the one buffer reads go into: per server, not per module.

Each read is held as a chunk until the app has written it, so the reads of all bodies arriving at
once share a budget: memory does not grow with concurrent uploads. The server creates one
:class:`ReadBudget` and hands it to every connection's protocol (see ``pytusd.server``); two
servers in one process, or two tests, each have their own.
"""

from __future__ import annotations

#: Most bytes read from a socket at once: one upload streaming alone gets reads this large.
READ_BUFFER = 1024 * 1024
#: Reads of all bodies arriving at once share this budget (each read is held as a chunk until
#: written), so memory does not grow with concurrent uploads: 32 at once read 128 KiB each.
READ_BUDGET = 4 * 1024 * 1024
#: ... but no read is smaller than this.
MIN_READ = 64 * 1024


class ReadBudget:
    """The bodies a server is receiving now, which size its reads, and its one read buffer.

    Pickled (uvicorn's ``--workers`` sends its config, protocol factory included, to each worker
    process), it arrives fresh: each process counts its own bodies and lends its own buffer.
    """

    __slots__ = ("_buffer", "receiving")

    def __init__(self) -> None:
        #: Bodies arriving now (their requests have more bytes to come).
        self.receiving = 0
        self._buffer: memoryview | None = None

    def read_size(self) -> int:
        """How much one read may take now: READ_BUFFER, or a share of READ_BUDGET when many arrive."""
        return max(MIN_READ, min(READ_BUFFER, READ_BUDGET // max(1, self.receiving)))

    def buffer(self) -> memoryview:
        """The read buffer (READ_BUFFER bytes), made on first use: a server reading into fresh
        ``bytes`` (not :class:`~pytusd.serving.buffered.BufferedHttpProtocol`) never needs it.

        One for every connection: uvloop fills it and calls ``buffer_updated`` synchronously, one
        connection at a time, and parsing copies out all it keeps.
        """
        if self._buffer is None:
            self._buffer = memoryview(bytearray(READ_BUFFER))
        return self._buffer

    def __reduce__(self) -> tuple[type[ReadBudget], tuple[()]]:
        return (ReadBudget, ())
