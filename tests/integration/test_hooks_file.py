"""Hook programs (``--hooks-dir``): tusd-style shell hooks run unchanged, and the directory's rules."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest
from tests.integration.hook_helpers import (
    HookDir,
    start_hook_server,
    write_program,
)
from tests.integration.tus_helpers import OCTET, TUS, b64
from tests.support.server import ServerProcess
from tests.support.wait import wait_until

# Hook programs in the style of tusd's documented examples (sh, jq, TUS_* variables, stderr for
# logging, a heredoc JSON answer on stdout), unchanged from what a tusd user would deploy.
PRE_CREATE = """#!/bin/sh
# Refuse uploads that do not say which file they carry.
has_name="$(cat /dev/stdin | jq '.Event.Upload.MetaData | has("filename")')"
echo "pre-create: filename given: $has_name" >&2
if [ "$has_name" = "false" ]; then
  cat <<END
  {
    "RejectUpload": true,
    "HTTPResponse": {
      "StatusCode": 400,
      "Body": "no filename provided",
      "Header": {"Content-Type": "text/plain"}
    }
  }
END
fi
exit 0
"""

POST_RECEIVE = """#!/bin/sh
id="$TUS_ID"
offset="$TUS_OFFSET"
size="$TUS_SIZE"
progress=$((100 * $offset / $size))
echo "Upload ${id} is at ${progress}% (${offset}/${size})" >&2
"""

PRE_FINISH = """#!/bin/sh
cat /dev/stdin | jq -c '{pre_finish: .Event.Upload.ID}' >&2
"""

POST_FINISH = """#!/bin/sh
echo "Upload $TUS_ID ($TUS_SIZE bytes) finished" >&2
cat /dev/stdin | jq -r '.Event.Upload.MetaData.filename' > "finished-$TUS_ID"
"""

POST_TERMINATE = """#!/bin/sh
echo "Upload $TUS_ID terminated" >&2
"""


@pytest.fixture
def tusd_style(tmp_path: Path) -> tuple[ServerProcess, Path]:
    if shutil.which("jq") is None:
        pytest.skip("jq is not installed (tusd's example hooks use it)")
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for name, source in (
        ("pre-create", PRE_CREATE),
        ("post-receive", POST_RECEIVE),
        ("pre-finish", PRE_FINISH),
        ("post-finish", POST_FINISH),
        ("post-terminate", POST_TERMINATE),
    ):
        write_program(hooks / name, source)
    events = "pre-create,post-create,post-receive,pre-finish,post-finish,post-terminate"
    server = start_hook_server(tmp_path / "data", ["--hooks-dir", str(hooks), "--hooks-enabled-events", events])
    yield server, hooks
    server.stop()


def test_tusd_style_hook_programs_run_unchanged(tusd_style: tuple[ServerProcess, Path]) -> None:
    server, hooks = tusd_style
    with httpx.Client(base_url=server.base_url, headers=TUS, timeout=30) as client:
        refused = client.post("/files/", headers={"Upload-Length": "5"})
        assert refused.status_code == 400 and refused.text.strip() == "no filename provided"
        assert refused.text == "no filename provided" and refused.headers["content-type"] == "text/plain"

        created = client.post(
            "/files/", headers={"Upload-Length": "5", "Upload-Metadata": f"filename {b64('notes.txt')}"}
        )
        assert created.status_code == 201
        url = created.headers["location"]
        upload_id = url.rsplit("/", 1)[1]
        done = client.patch(url, content=b"hello", headers={"Upload-Offset": "0", "Content-Type": OCTET})
        assert done.status_code == 204
        finished = hooks / f"finished-{upload_id}"
        assert wait_until(lambda: finished.exists() and finished.read_text().strip() == "notes.txt")
        assert client.delete(url).status_code == 204

    def logged() -> bool:
        log = server.log()
        return all(
            line in log
            for line in (
                "pre-create: filename given: false",
                "pre-create: filename given: true",
                f"Upload {upload_id} is at 100% (5/5)",
                f'{{"pre_finish":"{upload_id}"}}',
                f"Upload {upload_id} (5 bytes) finished",
                f"Upload {upload_id} terminated",
            )
        )

    wait_until(logged, message="the hook's failure in the log", server=server)


def test_programs_are_looked_up_per_event_and_defaults_follow_tusd(tmp_path: Path) -> None:
    hooks = HookDir.create(tmp_path / "hooks", events=["pre-finish"])  # pre-finish is not a default event
    server = start_hook_server(tmp_path / "data", ["--hooks-dir", str(hooks.path)])
    try:
        with httpx.Client(base_url=server.base_url, headers=TUS, timeout=30) as client:
            hooks.plan("pre-finish", response={"RejectUpload": True})
            url = client.post("/files/", headers={"Upload-Length": "1"}).headers["location"]
            assert client.patch(url, content=b"x", headers={"Upload-Offset": "0", "Content-Type": OCTET}).status_code
            assert hooks.calls() == []  # not enabled: never run

            # A program added while the server runs is used from the next request on.
            HookDir.create(hooks.path, events=["post-create"])
            url = client.post("/files/", headers={"Upload-Length": "1"}).headers["location"]
            assert wait_until(lambda: [c["event"] for c in hooks.calls()] == ["post-create"])
            assert hooks.calls()[0]["input"]["Event"]["Upload"]["ID"] == url.rsplit("/", 1)[1]
            assert hooks.calls()[0]["cwd"] == str(hooks.path)
    finally:
        server.stop()


def test_program_that_cannot_run_fails_blocking_hooks(tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "pre-create").write_text("#!/bin/sh\nexit 0\n")  # forgot chmod +x
    server = start_hook_server(tmp_path / "data", ["--hooks-dir", str(hooks)])
    try:
        response = httpx.post(server.url, headers={**TUS, "Upload-Length": "1"})
        assert 500 <= response.status_code <= 599
        assert response.text.strip() == "hook failed: pre-create hook program could not be started (not executable)"
        assert list((tmp_path / "data").glob("*.info")) == []
    finally:
        server.stop()


def test_crashing_and_hanging_programs(tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    write_program(hooks / "pre-create", "#!/bin/sh\nsleep 20\n")
    write_program(hooks / "post-create", "#!/bin/sh\necho 'Traceback: boom' >&2\nexit 2\n")
    args = ["--hooks-dir", str(hooks), "--hooks-file-timeout", "500ms"]
    server = start_hook_server(tmp_path / "data", args)
    try:
        start = time.monotonic()
        response = httpx.post(server.url, headers={**TUS, "Upload-Length": "1"}, timeout=30)
        assert 500 <= response.status_code <= 599
        assert response.text.strip() == "hook failed: pre-create hook program timed out after 0.5s"
        assert time.monotonic() - start < 5
        (hooks / "pre-create").unlink()
        created = httpx.post(server.url, headers={**TUS, "Upload-Length": "1"})
        assert created.status_code == 201  # post-create's crash is only logged
        assert wait_until(lambda: "post-create hook program exited with status 2" in server.log())
    finally:
        server.stop()


def test_cli_refuses_unknown_hook_events(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "pytusd", "--hooks-http", "http://127.0.0.1:1/", "--hooks-enabled-events", "pre-get"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "unknown hook event" in done.stderr
