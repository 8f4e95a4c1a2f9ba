"""Every hook event and every hook answer, on every transport, against a real server over TCP.

The same scenarios run with hook programs (``--hooks-dir``), an HTTP endpoint on loopback
(``--hooks-http``), a grpcio server implementing tusd's HookHandler (``--hooks-grpc``) and Python
callables (``TusApp(..., hooks=PythonHooks(...))``).
"""

from __future__ import annotations

import json
import select
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.integration.hook_helpers import (
    HARNESSES,
    HOOK_TIMEOUT,
    PROGRESS_INTERVAL,
    Harness,
)
from tests.integration.tus_helpers import OCTET, TUS, b64, upload_files
from tests.support.rawhttp import Connection, build_request
from tests.support.wait import wait_until


@pytest.fixture(scope="module", params=sorted(HARNESSES))
def harness(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    made = HARNESSES[request.param](tmp_path_factory.mktemp(f"hooks-{request.param}"))
    yield made
    made.close()


@pytest.fixture
def hooks(harness: Harness) -> Harness:
    harness.clear()
    return harness


@pytest.fixture
def client(harness: Harness) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=harness.base_url, headers=TUS, timeout=30.0) as c:
        yield c


def marker() -> str:
    return uuid.uuid4().hex[:12]


def meta(mark: str, **more: str) -> str:
    pairs = {"test": mark, **more}
    return ",".join(f"{k} {b64(v)}" for k, v in pairs.items())


def create(client: httpx.Client, mark: str, length: int = 5, **headers: str) -> httpx.Response:
    return client.post("/files/", headers={"Upload-Length": str(length), "Upload-Metadata": meta(mark), **headers})


def created(client: httpx.Client, mark: str, length: int = 5, **headers: str) -> str:
    response = create(client, mark, length, **headers)
    assert response.status_code == 201, (response.status_code, response.text)
    return str(response.headers["location"])


def patch(client: httpx.Client, url: str, data: bytes, offset: int = 0, **headers: str) -> httpx.Response:
    return client.patch(url, content=data, headers={"Upload-Offset": str(offset), "Content-Type": OCTET, **headers})


def assert_hook_failure(response: httpx.Response) -> None:
    """A 5xx with one plain-text line that says a hook failed (never a stack trace)."""
    assert 500 <= response.status_code <= 599, (response.status_code, response.text)
    assert response.status_code in (500, 502, 504)
    if response.request.method == "HEAD":
        return
    text = response.text.strip()
    assert text.startswith("hook failed: ") and "\n" not in text, text
    assert "Traceback" not in text


def events_of(calls: list[dict[str, Any]]) -> list[str]:
    return [c["Type"] for c in calls]


# -- every event ----------------------------------------------------------------------------------


def test_every_event_with_tusd_json(hooks: Harness, client: httpx.Client) -> None:
    mark = marker()
    url = created(client, mark, 10, Authorization="Bearer alice")
    upload_id = url.rsplit("/files/", 1)[1]
    assert patch(client, url, b"hello").status_code == 204
    assert patch(client, url, b"world", 5).status_code == 204
    assert client.head(url).status_code == 200
    assert client.get(url).content == b"helloworld"
    assert client.delete(url).status_code == 204
    wanted = {"pre-create", "post-create", "pre-access", "post-receive", "pre-finish", "post-finish",
              "pre-terminate", "post-terminate"}  # fmt: skip
    assert wait_until(lambda: wanted <= set(events_of(hooks.calls_for(mark))))
    calls = hooks.calls_for(mark)

    (pre_create,) = [c for c in calls if c["Type"] == "pre-create"]
    upload = pre_create["Event"]["Upload"]
    assert upload["ID"] == "" and upload["Size"] == 10 and upload["Offset"] == 0 and upload["Storage"] is None
    assert upload["MetaData"] == {"test": mark} and upload["SizeIsDeferred"] is False
    assert upload["IsPartial"] is False and upload["IsFinal"] is False and upload["PartialUploads"] is None
    request = pre_create["Event"]["HTTPRequest"]
    assert request["Method"] == "POST" and request["URI"] == "/files/"
    assert request["RemoteAddr"].startswith("127.0.0.1:")
    assert request["Header"]["Authorization"] == ["Bearer alice"] and request["Header"]["Tus-Resumable"] == ["1.0.0"]
    assert "Host" in request["Header"]

    (post_create,) = [c for c in calls if c["Type"] == "post-create"]
    assert post_create["Event"]["Upload"]["ID"] == upload_id
    assert post_create["Event"]["Upload"]["Storage"]["Type"] == hooks.store_type

    access = [c["Event"]["HTTPRequest"]["Method"] for c in calls if c["Type"] == "pre-access"]
    assert sorted(access) == ["DELETE", "GET", "HEAD", "PATCH", "PATCH"]

    receives = [c for c in calls if c["Type"] == "post-receive"]
    assert receives and receives[-1]["Event"]["Upload"]["Offset"] in (5, 10)
    (pre_finish,) = [c for c in calls if c["Type"] == "pre-finish"]
    assert pre_finish["Event"]["Upload"]["Offset"] == 10
    assert pre_finish["Event"]["HTTPRequest"]["Method"] == "PATCH"
    (post_finish,) = [c for c in calls if c["Type"] == "post-finish"]
    assert post_finish["Event"]["Upload"]["Offset"] == 10
    (pre_terminate,) = [c for c in calls if c["Type"] == "pre-terminate"]
    (post_terminate,) = [c for c in calls if c["Type"] == "post-terminate"]
    assert (
        pre_terminate["Event"]["HTTPRequest"]["Method"] == post_terminate["Event"]["HTTPRequest"]["Method"] == "DELETE"
    )
    # The only guaranteed orders (as in tusd): pre-create first, post-finish after pre-finish.
    order = events_of(calls)
    assert order[0] == "pre-create"
    assert order.index("pre-finish") < order.index("post-finish")
    assert order.index("pre-terminate") < order.index("post-terminate")
    if hooks.name == "file":
        assert pre_create["env"] == {"TUS_ID": "", "TUS_OFFSET": "0", "TUS_SIZE": "10"}
        assert post_finish["env"] == {"TUS_ID": upload_id, "TUS_OFFSET": "10", "TUS_SIZE": "10"}
    if hooks.name == "http":
        assert pre_create["forwarded"]["Authorization"] == "Bearer alice"
    if hooks.name == "grpc":  # call metadata
        assert pre_create["forwarded"]["authorization"] == "Bearer alice"


def test_creation_with_upload_runs_finish_hooks(hooks: Harness, client: httpx.Client) -> None:
    mark = marker()
    response = client.post(
        "/files/",
        content=b"abc",
        headers={"Upload-Length": "3", "Upload-Metadata": meta(mark), "Content-Type": OCTET},
    )
    assert response.status_code == 201 and response.headers["upload-offset"] == "3"
    # Post hooks are sent side by side: post-create may arrive after post-finish.
    every = {"pre-create", "post-create", "pre-finish", "post-finish"}
    assert wait_until(lambda: every <= set(events_of(hooks.calls_for(mark))))


# -- pre-create: reject, rename, change metadata ---------------------------------------------------


def test_pre_create_rejection_keeps_the_hooks_status_headers_and_body(hooks: Harness, client: httpx.Client) -> None:
    mark = marker()
    before = upload_files_of(hooks)
    hooks.plan(
        "pre-create",
        response={
            "RejectUpload": True,
            "HTTPResponse": {
                "StatusCode": 413,
                "Body": '{\n  "message": "over quota"\n}',
                "Header": {"X-Quota": "5", "Content-Type": "application/json"},
            },
        },
    )
    response = create(client, mark)
    assert response.status_code == 413
    assert response.headers["x-quota"] == "5"
    assert json.loads(response.text) == {"message": "over quota"}
    assert response.text == '{\n  "message": "over quota"\n}'
    assert response.headers.get_list("content-type") == ["application/json"]
    hooks.settle()
    assert events_of(hooks.calls_for(mark)) == ["pre-create"]  # no post-create
    assert upload_files_of(hooks) == before


def test_pre_create_rejection_without_a_status_is_a_400(hooks: Harness, client: httpx.Client) -> None:
    hooks.plan("pre-create", response={"RejectUpload": True})
    assert create(client, marker()).status_code == 400


def test_pre_create_error_status_without_reject_flag_also_rejects(hooks: Harness, client: httpx.Client) -> None:
    hooks.plan("pre-create", response={"HTTPResponse": {"StatusCode": 401, "Body": "log in first"}})
    response = create(client, marker())
    assert response.status_code == 401 and response.text.strip() == "log in first"


def test_pre_create_changes_id_and_metadata(hooks: Harness, client: httpx.Client) -> None:
    mark = marker()
    new_id = f"team-a/{mark}/report.pdf"
    hooks.plan(
        "pre-create",
        response={"ChangeFileInfo": {"ID": new_id, "MetaData": {"test": mark, "owner": "alice"}}},
    )
    url = created(client, mark)
    assert url.endswith(f"/files/{new_id}")
    head = client.head(url)
    assert head.status_code == 200
    assert sorted(head.headers["upload-metadata"].split(",")) == sorted([f"test {b64(mark)}", f"owner {b64('alice')}"])
    if hooks.store_type == "filestore":
        assert (hooks.upload_dir / new_id).is_file()
    assert patch(client, url, b"12345").status_code == 204
    assert wait_until(lambda: {"post-create", "post-finish"} <= set(events_of(hooks.calls_for(mark))))
    post_create = hooks.calls_for(mark, "post-create")[0]["Event"]["Upload"]
    assert post_create["ID"] == new_id and post_create["MetaData"]["owner"] == "alice"


@pytest.mark.parametrize("bad_id", ["../../escape", "/abs/path", "a/../../b", "x.info", "two words"])
def test_pre_create_invalid_id_fails_and_creates_nothing(hooks: Harness, client: httpx.Client, bad_id: str) -> None:
    before = upload_files_of(hooks)
    outside = set(hooks.upload_dir.parent.iterdir())
    hooks.plan("pre-create", response={"ChangeFileInfo": {"ID": bad_id}})
    response = create(client, marker())
    # A 4xx: the hook would choose the same ID again, and tus clients retry 5xx answers.
    assert response.status_code == 400 and "not a valid upload ID" in response.text
    assert upload_files_of(hooks) == before
    assert set(hooks.upload_dir.parent.iterdir()) == outside


def test_pre_create_storage_path_places_the_data(hooks: Harness, client: httpx.Client) -> None:
    mark = marker()
    hooks.plan("pre-create", response={"ChangeFileInfo": {"Storage": {"Path": f"by-owner/{mark}.bin"}}})
    url = created(client, mark)
    assert patch(client, url, b"12345").status_code == 204
    assert client.head(url).headers["upload-offset"] == "5"
    assert wait_until(lambda: hooks.calls_for(mark, "post-finish"))
    storage = hooks.calls_for(mark, "post-finish")[0]["Event"]["Upload"]["Storage"]
    if hooks.store_type == "filestore":  # the S3 store's key is Storage.Key (tested below)
        assert (hooks.upload_dir / "by-owner" / f"{mark}.bin").read_bytes() == b"12345"
        assert storage["Path"] == str(hooks.upload_dir / "by-owner" / f"{mark}.bin")
        assert client.delete(url).status_code == 204
        assert not (hooks.upload_dir / "by-owner" / f"{mark}.bin").exists()


@pytest.mark.parametrize("bad_path", ["../escape", "/etc/hosts", "x.info"])
def test_pre_create_storage_path_outside_is_a_client_error(hooks: Harness, client: httpx.Client, bad_path: str) -> None:
    if hooks.store_type != "filestore":
        pytest.skip("Storage.Path is the file store's")
    before = upload_files_of(hooks)
    hooks.plan("pre-create", response={"ChangeFileInfo": {"Storage": {"Path": bad_path}}})
    response = create(client, marker())
    assert response.status_code == 400 and "Storage" in response.text
    assert upload_files_of(hooks) == before


def s3_keys(prefix: str) -> list[str]:
    from tests.integration.s3_helpers import bucket_keys, multipart_uploads, shared_swift

    swift = shared_swift()
    return bucket_keys(swift, prefix) + [f"(uploading) {key}" for key in multipart_uploads(swift, prefix)]


def test_pre_create_storage_key_places_the_data_on_s3(hooks: Harness, client: httpx.Client) -> None:
    if hooks.store_type != "s3store":
        pytest.skip("Storage.Key is the S3 store's")
    mark = marker()
    chosen = f"by-owner/{mark}.bin"
    hooks.plan("pre-create", response={"ChangeFileInfo": {"Storage": {"Key": chosen}}})
    url = created(client, mark, 10)
    upload_id = url.rsplit("/files/", 1)[1]
    assert patch(client, url, b"12345").status_code == 204
    assert patch(client, url, b"67890", 5).status_code == 204
    assert client.get(url).content == b"1234567890"
    assert wait_until(lambda: hooks.calls_for(mark, "post-finish"))
    storage = hooks.calls_for(mark, "post-finish")[0]["Event"]["Upload"]["Storage"]
    prefix = storage["InfoKey"].removesuffix(f"{upload_id}.info")
    assert storage["Key"] == prefix + chosen
    assert prefix + chosen in s3_keys(prefix) and prefix + upload_id not in s3_keys(prefix)
    # Another upload cannot take the key while it is in use.
    hooks.plan("pre-create", response={"ChangeFileInfo": {"Storage": {"Key": chosen}}})
    assert create(client, marker()).status_code == 409
    assert client.delete(url).status_code == 204
    assert not [key for key in s3_keys(prefix) if chosen in key or upload_id in key]


@pytest.mark.parametrize(
    "storage", [{"Key": "../escape"}, {"Key": "a//b"}, {"Key": "x.info"}, {"Key": "k" * 256}, {"Bucket": "other"}]
)
def test_pre_create_storage_key_outside_is_a_client_error(
    hooks: Harness, client: httpx.Client, storage: dict[str, str]
) -> None:
    if hooks.store_type != "s3store":
        pytest.skip("Storage.Key is the S3 store's")
    mark = marker()
    hooks.plan("pre-create", response={"ChangeFileInfo": {"Storage": storage}})
    response = create(client, mark)
    assert response.status_code == 400 and "Storage" in response.text
    assert not hooks.calls_for(mark, "post-create")


def test_pre_create_id_taken_is_a_conflict(hooks: Harness, client: httpx.Client) -> None:
    fixed = f"fixed-{marker()}"
    hooks.plan("pre-create", response={"ChangeFileInfo": {"ID": fixed}})
    created(client, marker())
    assert create(client, marker()).status_code == 409


def test_pre_create_and_pre_finish_headers_reach_the_client(hooks: Harness, client: httpx.Client) -> None:
    hooks.plan("pre-create", response={"HTTPResponse": {"Header": {"X-Upload-Name": "report"}}})
    hooks.plan("pre-finish", response={"HTTPResponse": {"Header": {"Link": "<https://example.org/f/1>"}}})
    response = create(client, marker())
    assert response.status_code == 201 and response.headers["x-upload-name"] == "report"
    done = patch(client, response.headers["location"], b"12345")
    assert done.status_code == 204 and done.headers["link"] == "<https://example.org/f/1>"


# -- pre-access: bind an upload to the user who created it ---------------------------------------


def test_pre_access_refuses_everyone_but_the_owner(hooks: Harness, client: httpx.Client) -> None:
    mark = marker()
    hooks.plan(
        "pre-access",
        if_meta={"test": mark},
        if_not_header={"Authorization": "Bearer alice"},
        response={"RejectAccess": True, "HTTPResponse": {"StatusCode": 404, "Body": "no such upload"}},
    )
    url = created(client, mark, 10, Authorization="Bearer alice")
    alice = {"Authorization": "Bearer alice"}
    bob = {"Authorization": "Bearer bob"}
    assert patch(client, url, b"hello", **alice).status_code == 204
    for response in (
        client.head(url, headers=bob),
        patch(client, url, b"evil!", 5, **bob),
        client.get(url, headers=bob),
        client.delete(url, headers=bob),
        client.head(url),
    ):
        assert response.status_code == 404, response.request.method
    assert client.head(url, headers=alice).headers["upload-offset"] == "5"
    assert patch(client, url, b"world", 5, **alice).status_code == 204
    assert client.get(url, headers=alice).content == b"helloworld"
    assert client.delete(url, headers=alice).status_code == 204


def test_pre_access_reject_flag_alone_is_a_403(hooks: Harness, client: httpx.Client) -> None:
    if hooks.name == "grpc":
        pytest.skip("tusd's hook.proto has no RejectAccess (a status of 400 or more rejects)")
    mark = marker()
    url = created(client, mark)
    hooks.plan("pre-access", if_meta={"test": mark}, response={"RejectAccess": True})
    response = client.head(url)
    assert response.status_code == 403


def test_pre_access_does_not_run_for_creation_and_options(hooks: Harness, client: httpx.Client) -> None:
    hooks.plan("pre-access", response={"RejectAccess": True})
    assert client.options("/files/").status_code == 200
    mark = marker()
    created(client, mark)
    assert "pre-access" not in events_of(hooks.calls_for(mark))


# -- pre-finish and pre-terminate ----------------------------------------------------------------


def test_pre_finish_rejection(hooks: Harness, client: httpx.Client) -> None:
    mark = marker()
    hooks.plan(
        "pre-finish",
        response={"RejectUpload": True, "HTTPResponse": {"StatusCode": 422, "Body": "not a PDF"}},
    )
    url = created(client, mark)
    response = patch(client, url, b"12345")
    assert response.status_code == 422 and response.text.strip() == "not a PDF"
    hooks.settle()
    assert "post-finish" not in events_of(hooks.calls_for(mark))


def test_pre_terminate_rejection(hooks: Harness, client: httpx.Client) -> None:
    mark = marker()
    hooks.plan(
        "pre-terminate",
        response={"RejectTermination": True, "HTTPResponse": {"StatusCode": 423, "Body": "legal hold"}},
    )
    url = created(client, mark)
    response = client.delete(url)
    assert response.status_code == 423 and response.text.strip() == "legal hold"
    assert client.head(url).status_code == 200
    hooks.settle()
    assert "post-terminate" not in events_of(hooks.calls_for(mark))
    hooks.clear()
    assert client.delete(url).status_code == 204
    assert client.head(url).status_code == 404


# -- failures of blocking hooks: 5xx with one line, nothing changed --------------------------------


@pytest.mark.parametrize("how", ["fail", "garbage", "timeout"])
def test_failing_pre_create_changes_nothing(hooks: Harness, client: httpx.Client, how: str) -> None:
    mark = marker()
    before = upload_files_of(hooks)
    hooks.plan("pre-create", **failure_plan(how))
    start = time.monotonic()
    response = create(client, mark)
    assert_hook_failure(response)
    assert time.monotonic() - start < HOOK_TIMEOUT * 3 + 2
    if how == "timeout":
        assert response.status_code == 504
    hooks.settle()
    assert upload_files_of(hooks) == before
    assert "post-create" not in events_of(hooks.calls_for(mark))


@pytest.mark.parametrize("how", ["fail", "garbage", "timeout"])
def test_failing_pre_access_pre_finish_pre_terminate(hooks: Harness, client: httpx.Client, how: str) -> None:
    mark = marker()
    url = created(client, mark)
    assert patch(client, url, b"12", 0).status_code == 204

    hooks.plan("pre-access", if_meta={"test": mark}, **failure_plan(how))
    assert_hook_failure(client.head(url))
    assert_hook_failure(patch(client, url, b"345", 2))
    hooks.plan("pre-access")

    hooks.plan("pre-finish", if_meta={"test": mark}, **failure_plan(how))
    assert_hook_failure(patch(client, url, b"345", 2))
    hooks.plan("pre-finish")

    hooks.plan("pre-terminate", if_meta={"test": mark}, **failure_plan(how))
    assert_hook_failure(client.delete(url))
    assert client.head(url).status_code == 200  # still there
    hooks.settle()
    assert "post-finish" not in events_of(hooks.calls_for(mark))
    assert "post-terminate" not in events_of(hooks.calls_for(mark))


def failure_plan(how: str) -> dict[str, Any]:
    if how == "timeout":
        return {"sleep": HOOK_TIMEOUT * 2.5}
    return {how: True}


# -- failures of non-blocking hooks never break an upload ------------------------------------------


@pytest.mark.parametrize("how", ["fail", "garbage"])
def test_failing_non_blocking_hooks_do_not_break_uploads(hooks: Harness, client: httpx.Client, how: str) -> None:
    for event in ("post-create", "post-receive", "post-finish", "post-terminate"):
        hooks.plan(event, **failure_plan(how))
    mark = marker()
    url = created(client, mark)
    assert patch(client, url, b"12345").status_code == 204
    assert client.get(url).content == b"12345"
    assert client.delete(url).status_code == 204
    assert wait_until(lambda: "post-terminate" in events_of(hooks.calls_for(mark)))


def test_slow_non_blocking_hooks_do_not_delay_responses(hooks: Harness, client: httpx.Client) -> None:
    # The hooks take 5 s each; the two requests, which must not wait for them, are answered well
    # within that (a bound with room for a loaded machine, not a speed claim).
    hooks.plan("post-create", sleep=HOOK_TIMEOUT * 5)
    hooks.plan("post-finish", sleep=HOOK_TIMEOUT * 5)
    start = time.monotonic()
    url = created(client, marker())
    assert patch(client, url, b"12345").status_code == 204
    assert time.monotonic() - start < HOOK_TIMEOUT * 4


# -- post-receive: progress, paced, and StopUpload --------------------------------------------------


def slow_patch(hooks: Harness, url: str, chunks: int, size: int, pause: float) -> tuple[int, str, bool]:
    """PATCH ``chunks`` chunks of ``size`` bytes, ``pause`` seconds apart, on one connection.

    Stops sending as soon as the server answers. Returns (status, body, whether every byte was sent).
    """
    path = url.split(hooks.base_url, 1)[1]
    head = build_request(
        "PATCH",
        path,
        [("Tus-Resumable", "1.0.0"), ("Upload-Offset", "0"), ("Content-Type", OCTET),
         ("Content-Length", str(chunks * size))],
    )  # fmt: skip
    with Connection(hooks) as conn:  # type: ignore[arg-type]
        sent_all = conn.send(head)
        for _ in range(chunks):
            readable, _, _ = select.select([conn.sock], [], [], pause)
            if readable or not conn.send(b"x" * size):
                sent_all = False
                break
        response = conn.read_response(method="PATCH")
    return response.status, response.body.decode(errors="replace"), sent_all


def test_post_receive_reports_progress_at_most_once_per_interval(hooks: Harness, client: httpx.Client) -> None:
    mark = marker()
    url = created(client, mark, 200)
    started = time.monotonic()
    for offset in range(0, 200, 20):  # ten PATCH requests
        assert patch(client, url, b"y" * 20, offset).status_code == 204
    assert wait_until(lambda: 200 in [c["Event"]["Upload"]["Offset"] for c in hooks.calls_for(mark, "post-receive")])
    hooks.settle()
    elapsed = time.monotonic() - started
    offsets = [c["Event"]["Upload"]["Offset"] for c in hooks.calls_for(mark, "post-receive")]
    assert offsets == sorted(offsets) and offsets[-1] == 200
    # Pacing bounds the count by the time that passed, however fast or slow the store is.
    assert len(offsets) <= elapsed / PROGRESS_INTERVAL + 2


def test_post_receive_runs_while_a_long_request_arrives(hooks: Harness, client: httpx.Client) -> None:
    mark = marker()
    url = created(client, mark, 12 * 1000)
    status, _, _ = slow_patch(hooks, url, 12, 1000, PROGRESS_INTERVAL / 2)
    assert status == 204

    def offsets() -> list[int]:
        return [c["Event"]["Upload"]["Offset"] for c in hooks.calls_for(mark, "post-receive")]

    # The last offset waits for its paced turn (up to PROGRESS_INTERVAL): wait for it, not for a later event.
    wait_until(lambda: offsets() and offsets()[-1] == 12000, message=lambda: f"post-receive at 12000: {offsets()}")
    assert len(offsets()) >= 3 and offsets()[0] < 12000


def test_post_receive_stop_upload(hooks: Harness, client: httpx.Client) -> None:
    mark = marker()
    hooks.plan(
        "post-receive",
        if_meta={"test": mark},
        response={"StopUpload": True, "HTTPResponse": {"StatusCode": 410, "Body": "project was deleted"}},
    )
    url = created(client, mark, 50 * 1000)
    status, body, sent_all = slow_patch(hooks, url, 50, 1000, 0.05)
    assert status == 410 and body.strip() == "project was deleted"
    assert not sent_all  # stopped before the body's end
    assert client.head(url).status_code == 404  # as tusd: a stopped upload is terminated


# -- helpers ----------------------------------------------------------------------------------------


def upload_files_of(hooks: Harness) -> set[str]:
    class _Dir:
        upload_dir = hooks.upload_dir

    return upload_files(_Dir)  # type: ignore[arg-type]
