"""Clients that race on one upload, as retry loops of several tabs or devices do.

Each client asks for the offset, sends the rest of the file from there, and on any failure pauses
at random (at most 50 ms) and tries again, until the upload is complete. Used by the single-server
race tests and by the cluster tests (through nginx).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = "application/offset+octet-stream"


@dataclass
class Racer:
    """What one racing client saw."""

    finished: bool = False
    offsets: list[int] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)


def _race_one(url: str, data: bytes, deadline: float, seed: int, racer: Racer) -> None:
    rnd = random.Random(seed)
    with httpx.Client(headers=TUS, timeout=30.0) as client:
        while time.monotonic() < deadline:
            try:
                head = client.head(url)
                racer.statuses[f"HEAD {head.status_code}"] += 1
                if head.status_code == 200:
                    offset = int(head.headers["upload-offset"])
                    racer.offsets.append(offset)
                    if offset == len(data):
                        racer.finished = True
                        return
                    headers = {"Upload-Offset": str(offset), "Content-Type": OCTET}
                    patch = client.patch(url, content=data[offset:], headers=headers)
                    racer.statuses[f"PATCH {patch.status_code}"] += 1
            except httpx.HTTPError as exc:
                racer.statuses[type(exc).__name__] += 1
            time.sleep(rnd.uniform(0, 0.05))


def race(url: str, data: bytes, *, clients: int = 12, within: float = 30.0) -> list[Racer]:
    """Run ``clients`` racing clients on the upload at ``url`` until each saw it complete (or ``within`` passed)."""
    deadline = time.monotonic() + within
    racers = [Racer() for _ in range(clients)]
    threads = [
        threading.Thread(target=_race_one, args=(url, data, deadline, seed, racer), daemon=True)
        for seed, racer in enumerate(racers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(within + 60)  # a PATCH in flight at the deadline still ends (its timeout is 30 s)
    return racers


def check_race(racers: list[Racer], within: float = 30.0) -> None:
    """Every client finished, saw the offset only grow, and never met a server error."""
    seen = Counter[str]()
    for racer in racers:
        seen.update(racer.statuses)
    unfinished = sum(not r.finished for r in racers)
    assert unfinished == 0, f"{unfinished} of {len(racers)} clients did not finish within {within} s; saw {dict(seen)}"
    for racer in racers:
        assert racer.offsets == sorted(racer.offsets), f"an offset went backwards: {racer.offsets}"
    errors = {k: v for k, v in seen.items() if k.split()[-1].startswith("5")}
    assert not errors, f"server errors during the race: {errors} (all: {dict(seen)})"
