"""The S3 command-line flags and the store they build (no S3 needed: nothing connects yet)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from pytusd.flags import env_name
from pytusd.stores.s3 import S3Store
from pytusd.stores.s3.flags import S3_FLAGS, store_from_settings

MiB = 1024 * 1024


def settings(**overrides: Any) -> dict[str, Any]:
    values = {flag.name.replace("-", "_"): flag.default for flag in S3_FLAGS}
    values.update(overrides)
    return values


def test_flags_are_named_and_documented() -> None:
    names = {flag.name for flag in S3_FLAGS}
    assert {
        "s3-bucket",
        "s3-endpoint",
        "s3-region",
        "s3-object-prefix",
        "s3-part-size",
        "s3-max-concurrent-parts",
        "s3-addressing",
    } <= names
    assert all(flag.help for flag in S3_FLAGS)
    assert env_name("s3-bucket") == "PYTUSD_S3_BUCKET"


def test_no_bucket_no_store() -> None:
    assert store_from_settings(settings()) is None
    assert store_from_settings({}) is None


def test_store_from_settings() -> None:
    store = store_from_settings(
        settings(
            s3_bucket="uploads",
            s3_endpoint="http://127.0.0.1:9000",
            s3_object_prefix="tus",
            s3_part_size=8 * MiB,
            s3_max_concurrent_parts=3,
        )
    )
    assert isinstance(store, S3Store)
    assert store.bucket == "uploads"
    assert store.object_prefix == "tus/" and store.info_prefix == "tus/"
    assert store.preferred_part_size == 8 * MiB
    assert store.max_concurrent_parts == 3
    assert store.client.settings.endpoint_url == "http://127.0.0.1:9000"
    assert store.object_key("abc") == "tus/abc"
    assert store.info_key("abc") == "tus/abc.info"
    assert store.part_key("abc") == "tus/abc.part"


def test_separate_info_prefix() -> None:
    store = store_from_settings(settings(s3_bucket="b", s3_object_prefix="data/", s3_info_prefix="meta"))
    assert isinstance(store, S3Store)
    assert store.object_key("x/y") == "data/x/y"
    assert store.info_key("x/y") == "meta/x/y.info"


@pytest.mark.parametrize(
    "overrides",
    [
        {"s3_part_size": 1024},
        {"s3_part_size": 6 * 1024**3},
        {"s3_max_concurrent_parts": 0},
        {"s3_addressing": "sideways"},
    ],
)
def test_invalid_settings_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="invalid S3 settings"):
        store_from_settings(settings(s3_bucket="b", **overrides))


def test_ids_that_would_collide_with_metadata_are_refused() -> None:
    from pytusd.stores.base import UploadNotFound

    store = S3Store("b")
    for bad in ("x.info", "x.part", "x.finals", "x.finals/y", "a.part/b", "../x", ""):
        with pytest.raises(UploadNotFound):
            store.object_key(bad)


def test_the_command_line_loads_neither_the_store_nor_aiobotocore() -> None:
    """The flags are imported on every start; the S3 store (and aiobotocore) only with a bucket."""
    import subprocess
    import sys

    code = (
        "import sys, pytusd.cli\n"
        "loaded = [m for m in ('pytusd.stores.s3.store', 'aiobotocore', 'botocore') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "from pytusd.stores.s3 import S3Store\n"
        "assert 'pytusd.stores.s3.store' in sys.modules and 'aiobotocore' not in sys.modules\n"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
