"""A really full disk under the file store: a 512 KiB tmpfs, mounted in a private user and mount
namespace (``unshare``, no root needed where unprivileged user namespaces are allowed; skipped
elsewhere). The injected-ENOSPC tests (tests/unit/test_disk_faults.py) cover each path exactly;
this one checks that the kernel's own ENOSPC (short writes, then the error) is answered as they say.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

STORES = ("file",)
ROOT = Path(__file__).resolve().parents[2]

SCENARIO = textwrap.dedent(
    """
    import asyncio, os, subprocess, sys

    root = sys.argv[1]
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", root], check=True)

    from pytusd.stores.file import TEMP_DIR, FileStore
    from tests.support.inprocess import ListBody, Server, header, path_of

    DATA = os.urandom(1024 * 1024)
    CHUNK = 64 * 1024


    async def main() -> None:
        store = FileStore(root)
        await store.start()
        srv = Server(store)
        path = await srv.create(len(DATA))
        body = ListBody(*[DATA[i : i + CHUNK] for i in range(0, len(DATA), CHUNK)])
        response = await srv.patch(path, b"", 0, body=body, content_length=str(len(DATA)))
        assert response.status == 507, response.status
        offset = int(header(response, "upload-offset"))
        assert 0 < offset < len(DATA), offset
        assert header(await srv.call("HEAD", path), "upload-offset") == str(offset)
        with open(os.path.join(root, path.rsplit("/", 1)[1]), "rb") as f:
            assert f.read() == DATA[:offset], "the reported offset is not backed by the bytes on disk"
        assert os.listdir(os.path.join(root, TEMP_DIR)) == []

        # Nothing fits now: a creation fails whole, a metadata change leaves the old info.
        assert (await srv.call("POST", "/files/", upload_length="5")).status == 507
        assert [u async for u in store.list_uploads()] == [path.rsplit("/", 1)[1]]
        assert os.listdir(os.path.join(root, TEMP_DIR)) == []

        # Room again: two partials of 150 KiB fit, their final (300 KiB more) does not.
        assert (await srv.call("DELETE", path)).status == 204
        partials = []
        for _ in range(2):
            partial = await srv.create(150 * 1024, upload_concat="partial")
            assert (await srv.patch(partial, DATA[: 150 * 1024], 0)).status == 204
            partials.append(partial)
        before = sorted([u async for u in store.list_uploads()])
        final = await srv.call("POST", "/files/", upload_concat="final;" + " ".join(partials))
        assert final.status == 507, final.status
        assert sorted([u async for u in store.list_uploads()]) == before, "a half-made final upload stayed"
        assert os.listdir(os.path.join(root, TEMP_DIR)) == []
        print("ok")


    asyncio.run(asyncio.wait_for(main(), 30))
    """
)


def test_a_real_full_disk(tmp_path: Path) -> None:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare (util-linux) is not installed")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    probe = subprocess.run(
        [unshare, "--user", "--map-root-user", "--mount", "true"], capture_output=True, text=True, timeout=30
    )
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here: {probe.stderr.strip()}")
    env_path = ":".join([str(ROOT / "src"), str(ROOT), *sys.path[1:]])
    result = subprocess.run(
        [unshare, "--user", "--map-root-user", "--mount", sys.executable, "-c", SCENARIO, str(mount_point)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": env_path, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
