"""The arithmetic of S3 multipart uploads, kept free of I/O so it can be tested exhaustively.

S3 (and every S3-compatible service we know of) imposes three limits on a multipart upload:

* every part but the last must hold at least :data:`MIN_PART_SIZE` bytes (checked only when the
  upload is completed, which is why a mistake here surfaces late and must be prevented up front);
* no part may hold more than :data:`MAX_PART_SIZE` bytes (also the limit of one UploadPartCopy);
* an upload has at most :data:`MAX_PARTS` parts.

A tus upload arrives in PATCH requests of any size, so the store has to choose part sizes as the
bytes come: large enough that the upload fits into 10,000 parts, small enough that a part spooled
on local disk stays cheap. These functions make those choices.
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024
GiB = 1024 * MiB
TiB = 1024 * GiB

MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * GiB
MAX_PARTS = 10_000
MAX_OBJECT_SIZE = 5 * TiB
#: With a deferred length the size is unknown, so parts grow instead: the preferred size for the
#: first 1,000 parts, twice that for the next 1,000, and so on (capped at MAX_PART_SIZE). With the
#: 5 MiB minimum as preferred size that still reaches ~4.9 TiB within 10,000 parts.
DEFERRED_DOUBLING_EVERY = 1_000


class PartLimitError(ValueError):
    """The upload cannot be split into parts within S3's limits."""


def part_size(size: int | None, stored: int, parts: int, preferred: int) -> int:
    """The size of the next full part.

    ``size`` is the upload's length (None while deferred), ``stored`` the bytes already in parts
    (not counting the incomplete part), ``parts`` how many parts hold them, ``preferred`` the
    configured part size. With a known size the rest is spread over the parts that remain, never
    below ``preferred``; with a deferred size the part size grows with the part number.
    """
    left = MAX_PARTS - parts
    if left <= 0:
        raise PartLimitError(f"an S3 multipart upload has at most {MAX_PARTS} parts")
    if size is None:
        return min(preferred << (parts // DEFERRED_DOUBLING_EVERY), MAX_PART_SIZE)
    remaining = max(size - stored, 0)
    chosen = max(preferred, -(-remaining // left))
    if chosen > MAX_PART_SIZE:
        raise PartLimitError(f"{remaining} bytes do not fit into {left} parts of at most {MAX_PART_SIZE} bytes")
    return chosen


def tail_becomes_part(tail: int, size: int | None, stored: int, parts: int, preferred: int) -> bool:
    """Whether ``tail`` bytes left at the end of a request go up as a part of their own.

    The alternative is keeping them in the incomplete-part object, which the next request has to
    read back (from the local cache or from S3). A tail below the minimum part size must stay
    there. A larger tail becomes a part only if that does not crowd the upload: with a known
    size, the rest must still fit into the parts that remain at the preferred size (so clients
    sending many mid-sized PATCHes cannot push later parts towards 5 GiB); with a deferred size,
    only within the first :data:`DEFERRED_DOUBLING_EVERY` parts, so the doubling schedule keeps
    its reach. ``stored`` and ``parts`` describe the upload *before* this tail.
    """
    if tail < MIN_PART_SIZE:
        return False
    parts_after = parts + 1
    if parts_after >= MAX_PARTS:
        return False
    if size is None:
        return parts_after <= DEFERRED_DOUBLING_EVERY
    remaining_after = size - stored - tail
    return remaining_after <= (MAX_PARTS - parts_after) * preferred


@dataclass(frozen=True, slots=True)
class Piece:
    """Bytes ``[start, end)`` of source number ``source``."""

    source: int
    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


def plan_concatenation(
    sizes: list[int], min_part: int = MIN_PART_SIZE, max_part: int = MAX_PART_SIZE
) -> list[list[Piece]]:
    """Parts of an object made of ``sizes[0]``, ``sizes[1]``, ... bytes of the source objects.

    A part of a single piece is copied inside S3 (UploadPartCopy with a byte range); a part of
    several pieces has to be assembled by the store (downloading those ranges), because S3 cannot
    append. The plan copies everything it can: a source is copied whole (split at ``max_part``)
    unless it is smaller than ``min_part`` and not last. Small sources are gathered into an
    assembled part, topped up to exactly ``min_part`` from the start of the next source (whose
    rest is copied if it still makes a part). So every assembled part holds at most ``min_part``
    bytes, and with no source under ``min_part`` except possibly the last, nothing is downloaded.
    """
    parts: list[list[Piece]] = []
    pending: list[Piece] = []
    pending_size = 0
    last = max((i for i, s in enumerate(sizes) if s > 0), default=-1)
    for index, size in enumerate(sizes):
        if size <= 0:
            continue
        position = 0
        if pending_size:
            take = min(min_part - pending_size, size)
            pending.append(Piece(index, 0, take))
            pending_size += take
            position = take
            if pending_size >= min_part:
                parts.append(pending)
                pending, pending_size = [], 0
        rest = size - position
        if rest == 0:
            continue
        # Here nothing is pending: a top-up either emptied it or used up this source.
        if rest >= min_part or index == last:
            count = -(-rest // max_part)
            step = -(-rest // count)
            for start in range(position, size, step):
                parts.append([Piece(index, start, min(start + step, size))])
        else:
            pending.append(Piece(index, position, size))
            pending_size = rest
    if pending:
        parts.append(pending)
    if len(parts) > MAX_PARTS:
        raise PartLimitError(f"concatenation needs {len(parts)} parts; S3 allows {MAX_PARTS}")
    return parts
