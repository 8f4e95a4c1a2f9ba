"""A PATCH on GCS and Azure reads its upload once: the write starts from what its handler read
under the same lock (pytusd.stores.handoff). On the real emulators, counted by the server's own
request metrics; the unit tests (tests/unit/test_store_handoff.py) check when the read may not
stand in."""

from __future__ import annotations

import os
from collections.abc import Callable

import httpx
from tests.integration.test_metrics import scrape
from tests.support.server import ServerProcess, current_backend

#: GCS and Azure only (see tests/conftest.py); S3 reads nothing between its own PATCHes
#: (tests/integration/test_s3_server.py).
STORES = ("gcs", "azure")

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {**TUS, "Content-Type": "application/offset+octet-stream"}
MiB = 1024 * 1024
#: Whole Azure blocks (8 MiB by default): a smaller PATCH makes the next one read its small last
#: block back to merge it (docs/azure.md), a read of data, not of the upload's state.
CHUNK = 8 * MiB
#: The requests that read an upload's state, by store.
STATE_READS = {
    "gcs": ("get_object", "list_objects", "get_object_metadata"),
    "azure": ("download_blob", "get_block_list"),
}

Factory = Callable[..., ServerProcess]


def store_calls(server: ServerProcess) -> dict[str, float]:
    """Requests the server made to its store so far, by operation."""
    prefix = "pytusd_store_request_duration_seconds_count{"
    calls = {}
    for name, value in scrape(server).items():
        if name.startswith(prefix):
            labels = dict(part.split("=", 1) for part in name[len(prefix) : -1].split(","))
            calls[labels["operation"].strip('"')] = value
    return calls


def test_a_patch_reads_its_upload_once(server_factory: Factory) -> None:
    server = server_factory()
    data = os.urandom(3 * CHUNK)
    patches = 2  # the third completes the upload, which reads and tidies more
    with httpx.Client(base_url=server.base_url, headers=TUS, timeout=120) as client:
        created = client.post("/files/", headers={"Upload-Length": str(len(data))})
        assert created.status_code == 201, created.text
        location = httpx.URL(created.headers["location"]).path
        before = store_calls(server)
        for n in range(patches):
            at = n * CHUNK
            answer = client.patch(location, headers={**OCTET, "Upload-Offset": str(at)}, content=data[at : at + CHUNK])
            assert answer.status_code == 204, answer.text
        after = store_calls(server)
        last = patches * CHUNK
        answer = client.patch(location, headers={**OCTET, "Upload-Offset": str(last)}, content=data[last:])
        assert answer.status_code == 204, answer.text
        assert client.get(location).content == data
    for operation in STATE_READS[current_backend()]:
        made = after.get(operation, 0) - before.get(operation, 0)
        # Once per PATCH; twice (the count before the handoff) only if the server stalled for a
        # second between its handler's read and the write, which one PATCH here may.
        assert patches <= made < 2 * patches, (operation, made, before, after)
