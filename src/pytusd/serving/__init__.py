"""pytusd's HTTP/1.1 protocol class for uvicorn: interim responses, request trailers, fewer copies.

ASGI cannot send a 1xx other than 100, nor read request trailers. uvicorn's protocol classes are
pluggable (``uvicorn.Config(http=...)``), so the standalone server uses this subclass of uvicorn's
httptools protocol, which offers three scope extensions the app uses when present:

- ``pytusd.interim``: ``{"send": async (status, headers) -> None}`` writes a 1xx response (104
  Upload Resumption Supported) before the final one; it never replaces the 100 Continue that
  uvicorn sends when the app first reads the body.
- ``pytusd.trailers``: ``{"get": () -> list[(name, value)]}`` returns the request's trailer fields
  once the body is complete. Stock uvicorn appends trailers to ``scope["headers"]``; here they are
  kept apart, so a trailer can never pose as a header.
- ``pytusd.splice``: ``{"into": async (fd, limit=None, moved=None) -> (bytes_moved, complete)}``,
  offered for a body with a Content-Length on a plain socket: writes the rest of the body (at most
  ``limit`` bytes of it) at ``fd``'s file position, moving it from the socket through a pipe with
  ``splice(2)``, so the bytes never enter the process; ``moved(n)`` is called as bytes land.
  ``complete`` is False if the client went away first, or if ``limit`` bytes were moved and more
  may follow: the next call goes on (the S3 store moves a body into one part file after another).
  Cancelled, it stops between two moves and the file position tells how far it got; the
  connection then closes after the response, as it does after an answer given before the body
  was moved whole.

It also hands each received chunk to the app without the two copies (``bytearray +=`` then
``bytes()``) that stock uvicorn makes per chunk.

The modules:

- ``protocol``: :class:`PytusdHttpProtocol`, the extensions, header limits, read pacing;
- ``buffered``: :class:`BufferedHttpProtocol`, the same behind uvloop's buffered reads;
- ``budget``: :class:`ReadBudget`, the bodies a server receives at once and its read buffer;
- ``splice``: the splice(2) loop, socket -> pipe -> file, on plain descriptors;
- ``deadline``: the network timeout of reads outside requests and of stalled writes;
- ``uvicorn_internals``: every use of uvicorn's internals, checked at import.

Mounted in another ASGI server, the app sees none of them and degrades: no 104 responses and
no ``checksum-trailer`` in ``Tus-Extension``.
"""

from pytusd.serving.budget import ReadBudget
from pytusd.serving.buffered import BufferedHttpProtocol
from pytusd.serving.protocol import PytusdHttpProtocol

__all__ = ["BufferedHttpProtocol", "PytusdHttpProtocol", "ReadBudget"]
