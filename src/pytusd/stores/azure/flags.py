"""Command-line flags of the Azure store (tusd's names), and the store they describe.

Kept apart from the store (imported only when ``--azure-storage`` asks for one) so that ``pytusd
--help`` and a file-store server never load it, nor the Azure SDK (an optional dependency:
``pip install pytusd[azure]``).

Credentials are deliberately not flags (command lines end up in process lists and shell
histories): the account name and key come from ``AZURE_STORAGE_ACCOUNT`` and
``AZURE_STORAGE_KEY``, as with tusd.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pytusd.flags import Flag
from pytusd.stores.base import DataStore

ACCESS_TYPES = ("", "blob", "container")
ACCESS_TIERS = ("", "archive", "cool", "cold", "hot")

AZURE_FLAGS: tuple[Flag, ...] = (
    Flag(
        "azure-storage",
        "str",
        "",
        "store uploads in this Azure Blob Storage container instead of --upload-dir"
        " (credentials: AZURE_STORAGE_ACCOUNT, AZURE_STORAGE_KEY)",
    ),
    Flag(
        "azure-container-access-type",
        "str",
        "",
        "public access of a container created by pytusd: blob, container or '' (private)",
    ),
    Flag(
        "azure-blob-access-tier",
        "str",
        "",
        "access tier of upload blobs: archive, cool, cold, hot or '' (the account's default)",
    ),
    Flag("azure-object-prefix", "str", "", "prefix of the blob names of uploads, e.g. uploads/"),
    Flag(
        "azure-endpoint",
        "str",
        "",
        "blob service URL (default https://ACCOUNT.blob.core.windows.net; Azurite: http://HOST:PORT/ACCOUNT)",
    ),
)


def store_from_settings(settings: dict[str, Any], environ: Mapping[str, str] | None = None) -> DataStore | None:
    """The Azure store the settings ask for, or None without ``--azure-storage``.

    Raises ValueError with a message fit for the command line; does no I/O (the container is
    checked, and created if missing, when the store starts).
    """
    container = str(settings.get("azure_storage") or "").strip()
    if not container:
        return None
    env = os.environ if environ is None else environ
    access = str(settings.get("azure_container_access_type") or "").strip().lower()
    tier = str(settings.get("azure_blob_access_tier") or "").strip().lower()
    if access not in ACCESS_TYPES:
        raise ValueError("--azure-container-access-type must be blob, container or empty")
    if tier not in ACCESS_TIERS:
        raise ValueError("--azure-blob-access-tier must be archive, cool, cold, hot or empty")
    account = env.get("AZURE_STORAGE_ACCOUNT", "").strip()
    key = env.get("AZURE_STORAGE_KEY", "").strip()
    if not account or not key:
        raise ValueError("--azure-storage needs AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY in the environment")
    try:
        from pytusd.stores.azure.sdk import AzureClient
        from pytusd.stores.azure.store import AzureStore
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ValueError(f"--azure-storage needs azure-storage-blob: pip install 'pytusd[azure]' ({exc})") from None
    client = AzureClient(
        account_name=account,
        account_key=key,
        container=container,
        endpoint=str(settings.get("azure_endpoint") or "").strip(),
        container_access=access,
        access_tier=tier,
    )
    try:
        return AzureStore(container, client, object_prefix=str(settings.get("azure_object_prefix") or ""))
    except ValueError as exc:
        raise ValueError(f"invalid Azure settings: {exc}") from None
