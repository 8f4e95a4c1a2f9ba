"""Uploads in an S3 bucket: the S3 store as a package (see :mod:`pytusd.stores.s3.store`).

The names below are imported on first use, not with the package: the command line imports
:mod:`pytusd.stores.s3.flags` on every start, and a file-store server should not load the store.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytusd.stores.s3.client import ObjectHead, ObjectStorage, Part, S3Error
    from pytusd.stores.s3.store import META_PARTS, S3Store, UnfinishedPartsUnreadable

_EXPORTS = {
    "META_PARTS": "store",
    "ObjectHead": "client",
    "ObjectStorage": "client",
    "Part": "client",
    "S3Error": "client",
    "S3Store": "store",
    "UnfinishedPartsUnreadable": "store",
}

__all__ = ["META_PARTS", "ObjectHead", "ObjectStorage", "Part", "S3Error", "S3Store", "UnfinishedPartsUnreadable"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
