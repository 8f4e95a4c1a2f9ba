"""Fixtures shared by the unit tests."""

from tests.support.faults import disk_room

__all__ = ["disk_room"]
