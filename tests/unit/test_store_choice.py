"""The command's store choice (pytusd.stores.choice): at most one object store, else the directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytusd.cli import build_parser
from pytusd.stores.azure.store import AzureStore
from pytusd.stores.choice import data_location, object_store_from_settings
from pytusd.stores.gcs import GCSStore
from pytusd.stores.s3 import S3Store


def settings(tmp_path: Path, *argv: str) -> dict[str, Any]:
    return vars(build_parser().parse_args(["--upload-dir", str(tmp_path), *argv]))


def test_no_object_store_is_the_upload_directory(tmp_path: Path) -> None:
    chosen = settings(tmp_path)
    assert object_store_from_settings(chosen) is None
    assert data_location(chosen) == str(tmp_path)


@pytest.mark.parametrize(
    ("argv", "kind", "where"),
    [
        (["--s3-bucket", "b", "--s3-object-prefix", "up/"], S3Store, "s3://b/up/"),
        (["--gcs-bucket", "b", "--gcs-object-prefix", "up/"], GCSStore, "gs://b/up/"),
        (["--azure-storage", "c", "--azure-object-prefix", "up/"], AzureStore, "azure://c/up/"),
    ],
)
def test_each_object_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], kind: type, where: str
) -> None:
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT", "devstoreaccount1")
    monkeypatch.setenv("AZURE_STORAGE_KEY", "a2V5")
    chosen = settings(tmp_path, *argv)
    assert isinstance(object_store_from_settings(chosen), kind)
    assert data_location(chosen) == where


@pytest.mark.parametrize(
    "argv",
    [
        ["--s3-bucket", "b", "--gcs-bucket", "b"],
        ["--s3-bucket", "b", "--azure-storage", "c"],
        ["--gcs-bucket", "b", "--azure-storage", "c"],
    ],
)
def test_two_object_stores_are_refused(tmp_path: Path, argv: list[str]) -> None:
    with pytest.raises(ValueError, match="exclude each other"):
        object_store_from_settings(settings(tmp_path, *argv))
