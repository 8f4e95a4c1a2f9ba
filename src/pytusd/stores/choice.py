"""Which store the command's settings ask for: one object store, or the upload directory.

Each object store's flags module builds its store only when its own flag names a bucket or
container (and imports its client library only then); this module makes sure at most one does,
so a typo in a deployment never splits uploads between two stores.
"""

from __future__ import annotations

import os
from typing import Any

from pytusd.stores.azure.flags import store_from_settings as azure_store
from pytusd.stores.base import DataStore
from pytusd.stores.gcs.flags import store_from_settings as gcs_store
from pytusd.stores.s3.flags import store_from_settings as s3_store

#: (setting, flag, URL scheme, prefix setting) of each object store.
OBJECT_STORES = (
    ("s3_bucket", "--s3-bucket", "s3", "s3_object_prefix"),
    ("gcs_bucket", "--gcs-bucket", "gs", "gcs_object_prefix"),
    ("azure_storage", "--azure-storage", "azure", "azure_object_prefix"),
)


def _named(settings: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return [entry for entry in OBJECT_STORES if str(settings.get(entry[0]) or "").strip()]


def object_store_from_settings(settings: dict[str, Any]) -> DataStore | None:
    """The object store the settings name, or None for the file store.

    Raises ValueError (a message fit for the command line) if more than one is named or a
    setting is out of range; does no I/O.
    """
    named = _named(settings)
    if len(named) > 1:
        raise ValueError(f"{' and '.join(flag for _, flag, _, _ in named)} exclude each other: choose one store")
    return s3_store(settings) or gcs_store(settings) or azure_store(settings)


def data_location(settings: dict[str, Any]) -> str:
    """Where uploads are kept, for the start-up line: ``s3://bucket/prefix``, ``gs://…``, or a directory."""
    for setting, _flag, scheme, prefix in _named(settings):
        return f"{scheme}://{str(settings[setting]).strip()}/{settings.get(prefix) or ''}"
    return os.path.abspath(str(settings["upload_dir"]))
