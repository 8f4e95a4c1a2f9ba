"""tus 1.0.0 core protocol over a real pytusd process: every MUST and SHOULD of the core text.

Sections of the text are named in each test's docstring.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import httpx
import pytest
from tests.integration.tus_helpers import (
    OCTET,
    bare_client,
    create,
    data_file,
    offset_of,
    patch,
    split_list,
    upload,
    upload_files,
    url_path,
)
from tests.support.rawhttp import Connection, build_request, raw_request
from tests.support.server import ServerProcess
from tests.support.wait import wait_until

# -- Tus-Resumable / Tus-Version ---------------------------------------------------------------


def test_every_response_but_options_carries_tus_resumable(client: httpx.Client) -> None:
    """Tus-Resumable: MUST be included in every response except for OPTIONS."""
    created = client.post("/files/", headers={"Upload-Length": "3"})
    url = created.headers["location"]
    responses = [
        created,
        client.head(url),
        patch(client, url, b"ab", 0),
        patch(client, url, b"x", 0),  # 409
        client.patch(url, content=b"x", headers={"Upload-Offset": "2"}),  # 415
        client.head("/files/doesnotexist"),  # 404
        client.patch("/files/doesnotexist", content=b"x", headers={"Upload-Offset": "0", "Content-Type": OCTET}),
        client.post("/files/"),  # 400
        client.delete(url),
    ]
    for response in responses:
        assert response.headers.get("tus-resumable") == "1.0.0", (response.request.method, response.status_code)


@pytest.mark.parametrize("version", [None, "0.2.2", "1.0.1", "2.0.0", "1.0", ""])
def test_unsupported_version_is_412_with_tus_version_and_creates_nothing(
    server: ServerProcess, version: str | None
) -> None:
    """Tus-Resumable: unsupported version -> 412 with Tus-Version; the request MUST NOT be processed."""
    headers = {"Upload-Length": "5"}
    if version is not None:
        headers["Tus-Resumable"] = version
    before = upload_files(server)
    with bare_client(server) as bare:
        response = bare.post("/files/", headers=headers)
    assert response.status_code == 412
    assert "1.0.0" in split_list(response.headers["tus-version"])
    assert "location" not in response.headers
    assert upload_files(server) == before


def test_412_patch_does_not_write(server: ServerProcess, client: httpx.Client) -> None:
    """412: a PATCH with a wrong version MUST NOT be processed (no bytes stored, offset unchanged)."""
    url = create(client, 10)
    with bare_client() as bare:
        response = bare.patch(
            url,
            content=b"hello",
            headers={"Tus-Resumable": "0.2.2", "Upload-Offset": "0", "Content-Type": OCTET},
        )
    assert response.status_code == 412
    assert "1.0.0" in split_list(response.headers["tus-version"])
    assert offset_of(client, url) == 0
    assert data_file(server, url).stat().st_size == 0


def test_412_delete_does_not_terminate(client: httpx.Client) -> None:
    """412: a DELETE with a wrong version MUST NOT be processed."""
    url = create(client, 10)
    with bare_client() as bare:
        response = bare.delete(url, headers={"Tus-Resumable": "0.1.0"})
    assert response.status_code == 412
    assert "tus-version" in response.headers
    assert client.head(url).status_code == 200


def test_412_head_has_no_upload_offset(client: httpx.Client) -> None:
    """(A HEAD with no version header at all is the coming RFC's offset retrieval: test_ietf.py.)"""
    url = create(client, 10)
    with bare_client() as bare:
        response = bare.head(url, headers={"Tus-Resumable": "0.2.2"})
    assert response.status_code == 412
    assert "tus-version" in response.headers
    assert "upload-offset" not in response.headers


def test_tus_version_lists_supported_versions(client: httpx.Client) -> None:
    """Tus-Version: a comma-separated list, preferred first; 1.0.0 is what the server speaks."""
    response = client.options("/files/")
    versions = split_list(response.headers["tus-version"])
    assert versions and versions[0] == "1.0.0"


# -- OPTIONS ----------------------------------------------------------------------------------


def test_options_is_successful_with_tus_version(server: ServerProcess) -> None:
    """OPTIONS: 200 or 204 with Tus-Version (pytusd: 200); the client SHOULD NOT send Tus-Resumable."""
    with bare_client(server) as bare:
        response = bare.options("/files/")
    assert response.status_code == 200
    assert "1.0.0" in split_list(response.headers["tus-version"])


@pytest.mark.parametrize("version", ["1.0.0", "0.0.1", "garbage"])
def test_options_ignores_tus_resumable(server: ServerProcess, version: str) -> None:
    """OPTIONS: the Server MUST ignore the Tus-Resumable header."""
    with bare_client(server) as bare:
        response = bare.options("/files/", headers={"Tus-Resumable": version})
    assert response.status_code == 200
    assert "1.0.0" in split_list(response.headers["tus-version"])


def test_options_on_an_upload_url(client: httpx.Client) -> None:
    url = create(client, 1)
    response = client.options(url)
    assert response.status_code == 200
    assert "tus-version" in response.headers


def test_extensions_advertised(client: httpx.Client) -> None:
    """Tus-Extension: comma-separated; creation-with-upload only together with creation."""
    response = client.options("/files/")
    extensions = split_list(response.headers["tus-extension"])
    for name in (
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "checksum",
        "termination",
        "concatenation",
        "concatenation-unfinished",
    ):
        assert name in extensions, name
    assert len(extensions) == len(set(extensions))
    # expiration is only offered with --expire-after; the default server does not expire.
    assert "expiration" not in extensions
    # No hard limit by default: no Tus-Max-Size.
    assert "tus-max-size" not in response.headers


def test_tus_max_size_when_limited(server_factory: Callable[..., ServerProcess]) -> None:
    """Tus-Max-Size: a non-negative integer; SHOULD be set with a known hard limit."""
    limited = server_factory(["--max-size", "1234"])
    with bare_client(limited) as bare:
        response = bare.options("/files/")
    assert response.headers["tus-max-size"] == "1234"


# -- HEAD -------------------------------------------------------------------------------------


def test_head_offset_zero_length_and_no_store(client: httpx.Client) -> None:
    """HEAD: Upload-Offset even if 0; Upload-Length when known; Cache-Control: no-store; 200/204 (pytusd: 200)."""
    url = create(client, 11)
    response = client.head(url)
    assert response.status_code == 200
    assert response.headers["upload-offset"] == "0"
    assert response.headers["upload-length"] == "11"
    assert "no-store" in [p.strip().lower() for p in response.headers["cache-control"].split(",")]
    assert "upload-defer-length" not in response.headers


def test_head_after_partial_and_complete(client: httpx.Client) -> None:
    """HEAD: Upload-Offset also once the upload is complete."""
    url = create(client, 11)
    assert patch(client, url, b"hello", 0).status_code == 204
    assert client.head(url).headers["upload-offset"] == "5"
    assert patch(client, url, b" world", 5).status_code == 204
    done = client.head(url)
    assert done.headers["upload-offset"] == "11"
    assert done.headers["upload-length"] == "11"
    assert "no-store" in done.headers["cache-control"]


@pytest.mark.parametrize("upload_id", ["doesnotexist", "0123456789abcdef0123456789abcdef", "a.b-c_d~e"])
def test_head_unknown_upload(client: httpx.Client, upload_id: str) -> None:
    """HEAD: not found SHOULD be 404, 410 or 403 (pytusd: 404), without Upload-Offset."""
    response = client.head(f"/files/{upload_id}")
    assert response.status_code == 404
    assert "upload-offset" not in response.headers


def test_head_has_empty_body(server: ServerProcess, client: httpx.Client) -> None:
    url = create(client, 4)
    with_raw = raw_request(server, "HEAD", url.removeprefix(server.base_url), [("Tus-Resumable", "1.0.0")])
    assert with_raw.status == 200
    assert with_raw.body == b""


# -- PATCH ------------------------------------------------------------------------------------


def test_patch_204_with_new_offset(server: ServerProcess, client: httpx.Client) -> None:
    """PATCH: 204, Upload-Offset = old offset + bytes stored; bytes applied at the offset."""
    url = create(client, 100)
    first = patch(client, url, b"a" * 70, 0)
    assert first.status_code == 204
    assert first.headers["upload-offset"] == "70"
    assert first.content == b""
    second = patch(client, url, b"b" * 30, 70)
    assert second.status_code == 204
    assert second.headers["upload-offset"] == "100"
    assert data_file(server, url).read_bytes() == b"a" * 70 + b"b" * 30
    assert client.get(url).content == b"a" * 70 + b"b" * 30


def test_patch_many_small_chunks(client: httpx.Client) -> None:
    """PATCH: the client MAY use multiple small requests successively."""
    data = bytes(range(256)) * 4
    url = create(client, len(data))
    offset = 0
    for start in range(0, len(data), 100):
        response = patch(client, url, data[start : start + 100], offset)
        assert response.status_code == 204
        offset = int(response.headers["upload-offset"])
        assert offset == min(start + 100, len(data))
    assert client.get(url).content == data


def test_patch_empty_body_keeps_offset(client: httpx.Client) -> None:
    url = create(client, 10)
    response = patch(client, url, b"", 0)
    assert response.status_code == 204
    assert response.headers["upload-offset"] == "0"


@pytest.mark.parametrize("sent_offset", [0, 3, 6, 100])
def test_patch_offset_mismatch_409_without_modifying(
    server: ServerProcess, client: httpx.Client, sent_offset: int
) -> None:
    """PATCH: offsets differ -> 409 Conflict without modifying the upload resource."""
    url = create(client, 20)
    assert patch(client, url, b"hello", 0).status_code == 204
    response = patch(client, url, b"XXXXX", sent_offset)
    assert response.status_code == 409
    assert offset_of(client, url) == 5
    assert data_file(server, url).read_bytes() == b"hello"


@pytest.mark.parametrize(
    "content_type",
    [None, "application/octet-stream", "text/plain", "application/offset+octet-streamx", "multipart/form-data"],
)
def test_patch_wrong_content_type_415(server: ServerProcess, client: httpx.Client, content_type: str | None) -> None:
    """PATCH: MUST use application/offset+octet-stream, otherwise SHOULD be 415."""
    url = create(client, 5)
    headers = {"Upload-Offset": "0"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = client.patch(url, content=b"hello", headers=headers)
    assert response.status_code == 415
    assert offset_of(client, url) == 0
    assert data_file(server, url).stat().st_size == 0


@pytest.mark.parametrize("upload_id", ["doesnotexist", "0123456789abcdef0123456789abcdef"])
def test_patch_unknown_upload_404(client: httpx.Client, upload_id: str) -> None:
    """PATCH: non-existent resource SHOULD be 404."""
    response = patch(client, f"/files/{upload_id}", b"data", 0)
    assert response.status_code == 404


def test_patch_after_completion_is_refused(server: ServerProcess, client: httpx.Client) -> None:
    url = upload(client, b"abc")
    response = patch(client, url, b"more", 3)
    assert 400 <= response.status_code < 500
    assert offset_of(client, url) == 3
    assert data_file(server, url).read_bytes() == b"abc"


def test_resume_after_interrupted_upload(server: ServerProcess, client: httpx.Client) -> None:
    """The core example: a PATCH cut off mid-body; the server stores what it got; HEAD then PATCH resumes."""
    url = create(client, 100)
    path = url.removeprefix(server.base_url)
    request = build_request(
        "PATCH",
        path,
        [("Tus-Resumable", "1.0.0"), ("Upload-Offset", "0"), ("Content-Type", OCTET), ("Content-Length", "100")],
        b"x" * 70,
    )
    with Connection(server) as conn:
        conn.send(request)
        assert wait_until(lambda: data_file(server, url).stat().st_size == 70)
    # "The Server SHOULD always attempt to store as much of the received data as possible."
    assert wait_until(lambda: client.head(url).headers.get("upload-offset") == "70")
    offset = offset_of(client, url)
    assert offset == 70
    response = patch(client, url, b"y" * 30, offset)
    assert response.status_code == 204
    assert response.headers["upload-offset"] == "100"
    assert client.get(url).content == b"x" * 70 + b"y" * 30


def test_large_upload_in_one_patch_is_byte_exact(server: ServerProcess, client: httpx.Client) -> None:
    """The Client SHOULD send all remaining bytes in a single PATCH: many MiB, stored exactly."""
    data = hashlib.sha256(b"seed").digest() * (8 * 1024 * 1024 // 32) + b"tail"
    url = create(client, len(data))
    response = patch(client, url, data, 0)
    assert response.status_code == 204
    assert response.headers["upload-offset"] == str(len(data))
    assert hashlib.sha256(data_file(server, url).read_bytes()).digest() == hashlib.sha256(data).digest()
    download = client.get(url)
    assert hashlib.sha256(download.content).digest() == hashlib.sha256(data).digest()


def test_header_names_are_case_insensitive(server: ServerProcess, client: httpx.Client) -> None:
    created = raw_request(server, "POST", "/files/", [("TUS-RESUMABLE", "1.0.0"), ("upload-length", "3")])
    assert created.status == 201
    url = url_path(created.header("location") or "")
    patched = raw_request(
        server,
        "PATCH",
        url,
        [("tus-resumable", "1.0.0"), ("UPLOAD-OFFSET", "0"), ("content-TYPE", OCTET)],
        b"abc",
    )
    assert patched.status == 204
    assert offset_of(client, url) == 3


# -- X-HTTP-Method-Override -------------------------------------------------------------------


def test_method_override_patch(client: httpx.Client) -> None:
    """X-HTTP-Method-Override: MUST be interpreted as the request's method."""
    url = create(client, 5)
    response = client.post(
        url,
        content=b"hello",
        headers={"X-HTTP-Method-Override": "PATCH", "Upload-Offset": "0", "Content-Type": OCTET},
    )
    assert response.status_code == 204
    assert response.headers["upload-offset"] == "5"
    assert client.get(url).content == b"hello"


def test_method_override_delete(client: httpx.Client) -> None:
    url = create(client, 5)
    response = client.post(url, headers={"X-HTTP-Method-Override": "DELETE"})
    assert response.status_code == 204
    assert client.head(url).status_code == 404


def test_method_override_head(client: httpx.Client) -> None:
    url = create(client, 5)
    response = client.post(url, headers={"X-HTTP-Method-Override": "HEAD"})
    assert response.status_code == 200
    assert response.headers["upload-offset"] == "0"
    assert response.headers["upload-length"] == "5"


def test_method_override_ignores_actual_method(client: httpx.Client) -> None:
    """The actual method MUST be ignored: a PUT carrying PATCH writes like a PATCH."""
    url = create(client, 3)
    response = client.request(
        "PUT",
        url,
        content=b"abc",
        headers={"X-HTTP-Method-Override": "PATCH", "Upload-Offset": "0", "Content-Type": OCTET},
    )
    assert response.status_code == 204
    assert offset_of(client, url) == 3


def test_method_override_post_creates(client: httpx.Client) -> None:
    response = client.put("/files/", headers={"X-HTTP-Method-Override": "POST", "Upload-Length": "4"})
    assert response.status_code == 201
    assert "location" in response.headers


# -- misc -------------------------------------------------------------------------------------


def test_unknown_method_is_4xx(client: httpx.Client) -> None:
    url = create(client, 1)
    response = client.request("PUT", url, content=b"x")
    assert 400 <= response.status_code < 500


def test_tus_headers_not_required_for_unrelated_paths(client: httpx.Client) -> None:
    response = client.head("/not-uploads/x")
    assert response.status_code == 404
