"""Checksum algorithms of the tus checksum extension."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable
from typing import Protocol


class Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...


class _Crc32:
    """zlib's CRC-32 with hashlib's interface; the digest is the big-endian 4-byte value."""

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: bytes, /) -> None:
        self._value = zlib.crc32(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")


ALGORITHMS: dict[str, Callable[[], Digest]] = {
    "sha1": hashlib.sha1,
    "md5": hashlib.md5,
    "sha256": hashlib.sha256,
    "sha512": hashlib.sha512,
    "crc32": _Crc32,
}

#: Value of Tus-Checksum-Algorithm.
ALGORITHM_LIST = ",".join(ALGORITHMS)
