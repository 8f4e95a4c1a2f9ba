"""boto3's own multipart upload, as a long-lived process: the S3 server's rate in bench/s3.py.

    python boto3_upload.py <endpoint> <bucket> [<parts at a time>]

Credentials and region from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION. Prints "ready"
once the client exists, then for every line "<key> <file>" on stdin uploads the file with
``upload_file`` (8 MiB parts, 10 at a time unless told) and answers "ok <seconds>" (the time of
that call) or "error <message>". One part at a time is the S3 server's rate for a client that waits
for each part, as a chunked tus client waits for each PATCH. A process of its own, started once
and kept, like the tus servers: its CPU is measured on its own, its connection pool stays warm
between uploads.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import boto3  # type: ignore[import-untyped, unused-ignore]
import botocore.config  # type: ignore[import-untyped, unused-ignore]
from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped, unused-ignore]

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: tests.services.swift
from tests.services.swift import S3_CONFIG_KWARGS, make_swift_compatible

MiB = 2**20
PART = 8 * MiB
CONCURRENCY = 10


def main() -> int:
    endpoint, bucket = sys.argv[1:3]
    concurrency = int(sys.argv[3]) if len(sys.argv) > 3 else CONCURRENCY
    transfer = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART, max_concurrency=concurrency)
    # As the tests configure clients for Swift (path-style, checksums only when required: s3api refuses
    # aws-chunked bodies), with a connection per concurrent part and a read timeout for large parts.
    config = botocore.config.Config(**{**S3_CONFIG_KWARGS, "max_pool_connections": concurrency})
    client = make_swift_compatible(boto3.session.Session().client("s3", endpoint_url=endpoint, config=config))
    print("ready", flush=True)
    for line in sys.stdin:
        key, _, path = line.rstrip("\n").partition(" ")
        t0 = time.perf_counter()
        try:
            client.upload_file(path, bucket, key, Config=transfer)
        except Exception as exc:  # reported to the harness, which records it
            print(f"error {type(exc).__name__}: {exc}".replace("\n", " "), flush=True)
            continue
        print(f"ok {time.perf_counter() - t0:.6f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
