"""Lockers: one writer per upload at a time, and a way to ask the current writer to stop."""

from pytusd.locks.base import Lock, Locker, LockTimeout

__all__ = ["Lock", "LockTimeout", "Locker"]
