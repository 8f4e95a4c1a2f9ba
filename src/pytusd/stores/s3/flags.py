"""Command-line flags of the S3 store, and the store they describe.

Kept apart from the store (imported only when ``--s3-bucket`` asks for one) so that ``pytusd
--help`` and a file-store server never load it, nor aiobotocore (an optional dependency:
``pip install pytusd[s3]``).

Credentials are deliberately not flags: command lines end up in process lists and shell
histories. botocore's standard chain finds them (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/
``AWS_SESSION_TOKEN``, ``AWS_PROFILE`` with ``~/.aws/credentials`` and ``~/.aws/config``, web
identity tokens, ECS and EC2 instance roles). The region falls back the same way
(``AWS_REGION``/``AWS_DEFAULT_REGION``, the profile), then to us-east-1 for a custom endpoint.
"""

from __future__ import annotations

from typing import Any

from pytusd.flags import Flag
from pytusd.stores.base import DataStore

DEFAULT_PART_SIZE = 50 * 1024 * 1024

S3_FLAGS: tuple[Flag, ...] = (
    Flag(
        "s3-bucket", "str", "", "store uploads in this S3 bucket instead of --upload-dir (credentials: AWS_* / ~/.aws)"
    ),
    Flag("s3-endpoint", "str", "", "URL of an S3-compatible service (default: AWS)"),
    Flag("s3-region", "str", "", "S3 region (default: AWS_REGION or the AWS profile; us-east-1 with --s3-endpoint)"),
    Flag("s3-object-prefix", "str", "", "prefix of the S3 keys of uploads, e.g. uploads/"),
    Flag("s3-info-prefix", "str", "", "prefix of the .info and .part keys (default: --s3-object-prefix)"),
    Flag("s3-part-size", "size", DEFAULT_PART_SIZE, "preferred S3 part size (5M..5G; larger for huge uploads)"),
    Flag("s3-max-concurrent-parts", "int", 10, "parts uploaded to S3 at the same time (all uploads together)"),
    Flag("s3-max-buffered-parts", "int", 20, "parts of one request spooled on disk or in flight before its body waits"),
    Flag(
        "s3-disable-content-hashes",
        "bool",
        False,
        "send no Content-MD5 and compute no MD5 (less CPU; TLS or the S3 server must guard integrity)",
    ),
    Flag("s3-addressing", "str", "auto", "S3 addressing: auto (path-style with --s3-endpoint), path or virtual"),
)


def store_from_settings(settings: dict[str, Any]) -> DataStore | None:
    """The S3 store the settings ask for, or None without ``--s3-bucket``.

    Raises ValueError with a message fit for the command line if a setting is out of range; it
    does no I/O (the bucket is checked when the store starts).
    """
    bucket = str(settings.get("s3_bucket") or "").strip()
    if not bucket:
        return None
    try:
        from pytusd.stores.s3.store import S3Store
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ValueError(f"--s3-bucket needs aiobotocore: pip install 'pytusd[s3]' ({exc})") from None
    info_prefix = settings.get("s3_info_prefix") or None
    part_size = settings.get("s3_part_size")
    concurrency = settings.get("s3_max_concurrent_parts")
    buffered = settings.get("s3_max_buffered_parts")
    try:
        return S3Store(
            bucket,
            endpoint_url=settings.get("s3_endpoint") or None,
            region=settings.get("s3_region") or None,
            object_prefix=settings.get("s3_object_prefix") or "",
            info_prefix=info_prefix,
            part_size=DEFAULT_PART_SIZE if part_size is None else int(part_size),
            max_concurrent_parts=10 if concurrency is None else int(concurrency),
            max_buffered_parts=20 if buffered is None else int(buffered),
            content_hashes=not settings.get("s3_disable_content_hashes"),
            addressing=str(settings.get("s3_addressing") or "auto").strip().lower(),
        )
    except ValueError as exc:
        raise ValueError(f"invalid S3 settings: {exc}") from None
