"""tus-js-client (the client of Uppy), in Node, against a real pytusd process.

Each test runs node/driver.mjs once per client session (a fresh process, as a user reopening the
page would be) and checks the stored upload byte for byte, by GET and on disk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.interop.conftest import TusJs
from tests.interop.helpers import (
    KIB,
    MIB,
    TUS,
    assert_stored,
    decode_metadata,
    head,
    upload_id,
    write_random_file,
)
from tests.support.server import ServerProcess

CHUNK = 256 * KIB
OCTET = "application/offset+octet-stream"


def _ok(result: dict[str, Any]) -> dict[str, Any]:
    assert result["ok"], f"tus-js-client failed: {result['error']}\nstderr: {result['stderr']}"
    return result


def _patches(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in result["requests"] if r["method"] == "PATCH" or r["override"] == "PATCH"]


def _config(server: ServerProcess, path: Path, **extra: Any) -> dict[str, Any]:
    return {"endpoint": server.url, "file": str(path), "chunkSize": CHUNK, **extra}


def test_plain_upload(server: ServerProcess, tusjs: TusJs, tmp_path: Path) -> None:
    path, data = write_random_file(tmp_path, 3 * MIB + 12345, seed=1)
    metadata = {"filename": "photo 1.bin", "filetype": "application/octet-stream", "name": "photo 1.bin"}
    result = _ok(tusjs(_config(server, path, metadata=metadata)))

    assert result["bytes"] == len(data)
    methods = [r["method"] for r in result["requests"]]
    assert methods[0] == "POST" and result["requests"][0]["status"] == 201
    patches = _patches(result)
    assert len(patches) == -(-len(data) // CHUNK) >= 10
    assert [int(p["offset"]) for p in patches] == list(range(0, len(data), CHUNK))
    assert all(p["status"] == 204 and p["contentType"] == OCTET for p in patches)
    assert_stored(server, result["url"], data)
    assert decode_metadata(head(server, result["url"]).headers.get("upload-metadata")) == metadata


def test_resume_from_file_url_storage(server: ServerProcess, tusjs: TusJs, tmp_path: Path) -> None:
    path, data = write_random_file(tmp_path, 3 * MIB, seed=2)
    storage = tmp_path / "tus-urls.json"
    options = {"storeFingerprintForResuming": True, "removeFingerprintOnSuccess": True}
    common = _config(server, path, urlStorage=str(storage), options=options, metadata={"filename": "a.bin"})

    first = _ok(tusjs({**common, "action": "upload-and-abort-after", "abortAfter": MIB}))
    assert MIB <= first["bytes"] < len(data)
    stored = json.loads(storage.read_text())
    assert [entry["uploadUrl"] for entry in stored.values()] == [first["url"]]
    response = head(server, first["url"])
    assert response.status_code == 200
    assert response.headers["upload-offset"] == str(first["bytes"])
    assert response.headers["upload-length"] == str(len(data))

    second = _ok(tusjs({**common, "action": "resume"}))
    assert second["previousUploads"] == 1
    assert second["url"] == first["url"]
    assert second["resumedFrom"] == first["bytes"] > 0
    methods = [r["method"] for r in second["requests"]]
    assert methods[0] == "HEAD" and "POST" not in methods, methods
    patches = _patches(second)
    assert int(patches[0]["offset"]) == first["bytes"]
    assert len(patches) >= 2
    assert_stored(server, first["url"], data)
    # removeFingerprintOnSuccess: the finished upload is no longer offered for resuming.
    assert json.loads(storage.read_text()) == {}


def test_resume_after_upload_vanished_starts_new_upload(server: ServerProcess, tusjs: TusJs, tmp_path: Path) -> None:
    """A 4xx on HEAD (here: the upload was terminated meanwhile) makes tus-js-client start anew."""
    path, data = write_random_file(tmp_path, 1 * MIB, seed=3)
    storage = tmp_path / "tus-urls.json"
    common = _config(server, path, urlStorage=str(storage), options={"storeFingerprintForResuming": True})
    first = _ok(tusjs({**common, "action": "upload-and-abort-after", "abortAfter": CHUNK}))
    assert httpx.delete(first["url"], headers=TUS).status_code == 204

    second = _ok(tusjs({**common, "action": "resume"}))
    assert second["previousUploads"] == 1
    assert [r["method"] for r in second["requests"]][:2] == ["HEAD", "POST"]
    assert second["requests"][0]["status"] == 404
    assert second["url"] != first["url"]
    assert_stored(server, second["url"], data)


def test_parallel_uploads_concatenation(server: ServerProcess, tusjs: TusJs, tmp_path: Path) -> None:
    path, data = write_random_file(tmp_path, 3 * MIB + 7, seed=4)
    metadata = {"filename": "parallel.bin"}
    result = _ok(tusjs(_config(server, path, metadata=metadata, options={"parallelUploads": 3})))

    partials = result["partialUrls"]
    assert len(partials) == 3 and len(set(partials)) == 3
    creations = [r for r in result["requests"] if r["method"] == "POST"]
    assert [r["concat"] for r in creations[:3]] == ["partial"] * 3
    final_request = creations[-1]
    assert final_request["concat"] == "final;" + " ".join(partials)
    assert final_request["status"] == 201
    assert len(_patches(result)) >= 6  # several PATCHes per partial upload

    assert_stored(server, result["url"], data)
    final_head = head(server, result["url"])
    assert final_head.headers["upload-concat"].startswith("final;")
    concat_ids = [upload_id(server, u) for u in final_head.headers["upload-concat"][len("final;") :].split()]
    assert concat_ids == [upload_id(server, u) for u in partials]
    assert decode_metadata(final_head.headers.get("upload-metadata")) == metadata
    # The partial uploads hold the three slices, in order.
    size = len(data) // 3
    bounds = [(0, size), (size, 2 * size), (2 * size, len(data))]
    for url, (start, end) in zip(partials, bounds, strict=True):
        part = head(server, url)
        assert part.headers["upload-concat"] == "partial"
        assert_stored(server, url, data[start:end])


def test_parallel_uploads_resume(server: ServerProcess, tusjs: TusJs, tmp_path: Path) -> None:
    """An interrupted parallel upload resumes every partial upload, then creates the final one."""
    path, data = write_random_file(tmp_path, 3 * MIB, seed=5)
    storage = tmp_path / "tus-urls.json"
    options = {"parallelUploads": 3, "storeFingerprintForResuming": True, "removeFingerprintOnSuccess": True}
    common = _config(server, path, urlStorage=str(storage), options=options)

    first = _ok(tusjs({**common, "action": "upload-and-abort-after", "abortAfter": 2 * CHUNK}))
    assert not any(r["concat"] and r["concat"].startswith("final") for r in first["requests"])
    [entry] = json.loads(storage.read_text()).values()
    partials = entry["parallelUploadUrls"]
    assert partials == first["partialUrls"]
    offsets = [int(head(server, url).headers["upload-offset"]) for url in partials]
    assert any(offset > 0 for offset in offsets)

    second = _ok(tusjs({**common, "action": "resume"}))
    assert second["previousUploads"] == 1
    assert second["partialUrls"] == partials
    # Every partial upload is resumed where the server says it stands: HEAD, then PATCH from there.
    heads = {r["url"]: int(r["responseOffset"]) for r in second["requests"] if r["method"] == "HEAD"}
    assert heads == dict(zip(partials, offsets, strict=True))
    creations = [r for r in second["requests"] if r["method"] == "POST"]
    assert [r["concat"].split(";")[0] for r in creations] == ["final"]
    first_patch: dict[str, int] = {}
    for r in _patches(second):
        first_patch.setdefault(r["url"], int(r["offset"]))
    size = len(data) // 3
    sizes = [size, size, len(data) - 2 * size]
    expected = {url: offset for url, offset, end in zip(partials, offsets, sizes, strict=True) if offset < end}
    assert first_patch == expected
    assert_stored(server, second["url"], data)


def test_upload_data_during_creation(server: ServerProcess, tusjs: TusJs, tmp_path: Path) -> None:
    path, data = write_random_file(tmp_path, 2 * MIB + 5, seed=6)
    result = _ok(tusjs(_config(server, path, options={"uploadDataDuringCreation": True})))

    creation = result["requests"][0]
    assert creation["method"] == "POST" and creation["status"] == 201
    assert creation["contentType"] == OCTET
    assert creation["responseOffset"] == str(CHUNK)  # the first chunk went with the POST
    patches = _patches(result)
    assert int(patches[0]["offset"]) == CHUNK
    assert len(patches) == -(-len(data) // CHUNK) - 1
    assert_stored(server, result["url"], data)


def test_upload_length_deferred(server: ServerProcess, tusjs: TusJs, tmp_path: Path) -> None:
    """A stream of unknown size: Upload-Defer-Length at creation, Upload-Length with the last PATCH."""
    path, data = write_random_file(tmp_path, 2 * MIB + 999, seed=7)
    result = _ok(tusjs(_config(server, path, source="stream", options={"uploadLengthDeferred": True})))

    creation = result["requests"][0]
    assert creation["method"] == "POST" and creation["status"] == 201
    assert creation["deferLength"] == "1" and creation["uploadLength"] is None
    patches = _patches(result)
    assert len(patches) >= 8
    assert [p["uploadLength"] for p in patches[:-1]] == [None] * (len(patches) - 1)
    assert patches[-1]["uploadLength"] == str(len(data))
    assert_stored(server, result["url"], data)


def test_override_patch_method(server: ServerProcess, tusjs: TusJs, tmp_path: Path) -> None:
    path, data = write_random_file(tmp_path, 2 * MIB, seed=8)
    result = _ok(tusjs(_config(server, path, options={"overridePatchMethod": True})))

    data_requests = result["requests"][1:]
    assert len(data_requests) == len(data) // CHUNK
    assert all(r["method"] == "POST" and r["override"] == "PATCH" and r["status"] == 204 for r in data_requests)
    assert_stored(server, result["url"], data)


@pytest.mark.parametrize("source", ["file", "buffer"])
def test_abort_terminate(server: ServerProcess, tusjs: TusJs, tmp_path: Path, source: str) -> None:
    """abort(true) sends DELETE and tus-js-client expects exactly 204; the upload is gone."""
    path, _ = write_random_file(tmp_path, 2 * MIB, seed=9)
    storage = tmp_path / "tus-urls.json"
    config = _config(
        server, path, source=source, action="abort-terminate", abortAfter=CHUNK,
        urlStorage=str(storage), options={"storeFingerprintForResuming": True},
    )  # fmt: skip
    result = _ok(tusjs(config))

    assert result["terminated"] is True
    delete = [r for r in result["requests"] if r["method"] == "DELETE"]
    assert len(delete) == 1 and delete[0]["status"] == 204
    assert head(server, result["url"]).status_code == 404
    assert httpx.get(result["url"]).status_code == 404
    data_file = server.upload_dir / upload_id(server, result["url"])
    assert not data_file.exists()
    assert not Path(f"{data_file}.info").exists()
    # The terminated upload is no longer offered for resuming.
    assert json.loads(storage.read_text()) == {}


@pytest.mark.parametrize("source", ["buffer", "file"])
@pytest.mark.parametrize(("protocol", "interop_version"), [("ietf-draft-03", "5"), ("ietf-draft-05", "6")])
def test_ietf_draft_protocols(server: ServerProcess, tusjs: TusJs, tmp_path: Path, protocol: str,
                              interop_version: str, source: str) -> None:  # fmt: skip
    """``protocol: 'ietf-draft-03' | 'ietf-draft-05'``: create, abort, resume by HEAD, finish.

    With a Buffer the last PATCH says ``Upload-Complete: ?1``. With an fs.ReadStream tus-js-client
    4.3.1 never does (its FileSource marks only a slice of the whole file as done), so every PATCH
    says ``?0``: the server must still complete the upload when it reaches the announced length.
    """
    path, data = write_random_file(tmp_path, 2 * MIB + 11, seed=21)
    storage = tmp_path / "tus-urls.json"
    options = {"protocol": protocol, "storeFingerprintForResuming": True, "removeFingerprintOnSuccess": True}
    common = _config(server, path, source=source, urlStorage=str(storage), options=options)

    first = _ok(tusjs({**common, "action": "upload-and-abort-after", "abortAfter": 2 * CHUNK}))
    assert first["requests"][0]["method"] == "POST" and first["requests"][0]["status"] == 201
    assert 2 * CHUNK <= first["bytes"] < len(data)

    second = _ok(tusjs({**common, "action": "resume"}))
    assert second["url"] == first["url"]
    assert second["resumedFrom"] == first["bytes"]
    assert second["requests"][0]["method"] == "HEAD"
    patches = _patches(second)
    assert int(patches[0]["offset"]) == first["bytes"]
    assert all(p["status"] == 204 for p in patches)
    if protocol == "ietf-draft-05":
        assert all(p["contentType"] == "application/partial-upload" for p in patches)
    for r in first["requests"] + second["requests"]:
        assert r["interopVersion"] == interop_version
    last = "?1" if source == "buffer" else "?0"
    assert [p["uploadComplete"] for p in patches] == ["?0"] * (len(patches) - 1) + [last]
    assert_stored(server, first["url"], data)


@pytest.mark.parametrize("protocol", ["ietf-draft-03", "ietf-draft-05"])
def test_ietf_draft_abort_terminate(server: ServerProcess, tusjs: TusJs, tmp_path: Path, protocol: str) -> None:
    path, _ = write_random_file(tmp_path, 1 * MIB, seed=22)
    config = _config(server, path, action="abort-terminate", abortAfter=CHUNK, options={"protocol": protocol})
    result = _ok(tusjs(config))
    assert result["terminated"] is True
    assert head(server, result["url"]).status_code == 404
