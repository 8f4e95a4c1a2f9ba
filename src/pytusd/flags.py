"""Command-line flags that can also come from ``PYTUSD_*`` environment variables.

Kept apart from ``cli`` so that stores and hooks can declare their own flags next to their code.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import Any

ENV_PREFIX = "PYTUSD_"
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``30m``, ``24h``, ``1h30m``, ``500ms`` or ``0``."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (use e.g. 90s, 30m, 24h)")
    return total


def parse_size(text: str) -> int:
    """Bytes from ``1048576``, ``512K``, ``100M``, ``2G`` (powers of 1024)."""
    match = re.fullmatch(r"(\d+)\s*([KMGT]i?B?)?", text.strip(), re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (use e.g. 1048576, 512M, 2G)")
    factor = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}[(match.group(2) or " ")[0].strip().upper()]
    return int(match.group(1)) * factor


@dataclass(frozen=True)
class Flag:
    name: str
    kind: str  # "str", "int", "bool", "duration", "size"
    default: Any
    help: str


def env_name(flag: str) -> str:
    return ENV_PREFIX + flag.upper().replace("-", "_")


def convert(flag: Flag, raw: str) -> Any:
    """A flag's value from its environment variable's text."""
    if flag.kind == "bool":
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if flag.kind == "int":
        return int(raw)
    if flag.kind == "duration":
        return parse_duration(raw)
    if flag.kind == "size":
        return parse_size(raw)
    return raw
