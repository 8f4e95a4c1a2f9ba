"""The command-line flags of the GCS store (tusd's names), and the store they build.

Imported on every start (the flags are part of ``--help``); the store itself, and
gcloud-aio-storage (an optional dependency: ``pip install pytusd[gcs]``), only with ``--gcs-bucket``.

Credentials are deliberately not flags: command lines end up in process lists and shell
histories. gcloud-aio-auth finds them as Google's libraries do (``GOOGLE_APPLICATION_CREDENTIALS``,
else the metadata server); ``STORAGE_EMULATOR_HOST`` selects an emulator (no credentials).
"""

from __future__ import annotations

import os
from typing import Any

from pytusd.flags import Flag
from pytusd.stores.base import DataStore

GCS_FLAGS: tuple[Flag, ...] = (
    Flag(
        "gcs-bucket",
        "str",
        "",
        "store uploads in this GCS bucket instead of --upload-dir (credentials: GOOGLE_APPLICATION_CREDENTIALS)",
    ),
    Flag("gcs-object-prefix", "str", "", "prefix of the GCS object names of uploads, e.g. uploads/"),
    Flag("gcs-endpoint", "str", "", "URL of the GCS JSON API (default: Google's, or STORAGE_EMULATOR_HOST)"),
)

#: The spool directory's name inside --upload-dir (which holds only lock files with GCS).
SPOOL_DIR = ".pytusd-gcs-spool"


def store_from_settings(settings: dict[str, Any]) -> DataStore | None:
    """The GCS store the settings ask for, or None without ``--gcs-bucket``.

    Raises ValueError with a message fit for the command line; does no I/O (the bucket is
    checked when the store starts).
    """
    bucket = str(settings.get("gcs_bucket") or "").strip()
    if not bucket:
        return None
    try:
        from pytusd.stores.gcs.store import GCSStore
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ValueError(f"--gcs-bucket needs gcloud-aio-storage: pip install 'pytusd[gcs]' ({exc})") from None
    endpoint = str(settings.get("gcs_endpoint") or "").strip() or None
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise ValueError("--gcs-endpoint must be an http:// or https:// URL")
    upload_dir = str(settings.get("upload_dir") or "")
    return GCSStore(
        bucket,
        object_prefix=str(settings.get("gcs_object_prefix") or ""),
        endpoint=endpoint,
        spool_dir=os.path.join(upload_dir, SPOOL_DIR) if upload_dir else None,
    )
