"""The server starts over real TCP and completes one upload."""

import httpx
from tests.support.server import ServerProcess


def test_one_upload_round_trip(server: ServerProcess, client: httpx.Client) -> None:
    created = client.post("/files/", headers={"Upload-Length": "5"})
    assert created.status_code == 201
    location = created.headers["location"]
    assert location.startswith(server.base_url + "/files/")
    patched = client.patch(
        location,
        content=b"hello",
        headers={"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
    )
    assert patched.status_code == 204
    assert patched.headers["upload-offset"] == "5"
    assert client.get(location).content == b"hello"
