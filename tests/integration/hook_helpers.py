"""Helpers for the hook tests: servers with hooks, a recording hook program, a loopback hook endpoint.

Servers with file or HTTP hooks are real ``pytusd`` processes started with ``--hooks-dir`` /
``--hooks-http``. Python hooks need the app in the test's own process: :class:`InProcessServer`
serves it over real TCP from a thread.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import json
import stat
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from tests.support.server import STORE_TYPES, ServerProcess, free_port, wait_for_start
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]

#: Generous bound for anything that must not hang.
TIMEOUT = 15.0


# -- servers ------------------------------------------------------------------------------------


def start_hook_server(upload_dir: Path, args: Sequence[str], env: dict[str, str] | None = None) -> ServerProcess:
    """A real ``pytusd`` with the given (hook) flags."""
    return ServerProcess(upload_dir, args, env=env).start()


class InProcessServer:
    """A :class:`pytusd.TusApp` served by uvicorn over real TCP from a thread of the test process."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        from pytusd.serving import PytusdHttpProtocol

        self.app = app
        self.port = free_port()
        self.host = "127.0.0.1"
        config = uvicorn.Config(
            app, host=self.host, port=self.port, loop="asyncio", http=PytusdHttpProtocol, lifespan="on",
            log_level="warning", access_log=False,
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/files/"

    def __enter__(self) -> InProcessServer:
        self.thread.start()
        wait_for_start(
            lambda: self.server.started, what="in-process server", timeout=TIMEOUT, interval=0.02,
            alive=lambda: None if self.thread.is_alive() else "its thread ended",
        )  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(TIMEOUT)


# -- a recording hook program -------------------------------------------------------------------

#: Requests of :meth:`Harness.settle` carry this header; no plan applies to them.
SETTLE_HEADER = "X-Test-Settle"

#: One program for every event (installed under each event's name). It appends what it got (stdin
#: JSON, TUS_* variables, working directory) to calls.jsonl, then follows plans/<event>.json (see
#: :func:`plan_applies` for "if_meta" and "if_not_header"):
#: {"sleep": s, "stdout": "raw text", "response": {...tusd JSON...}, "exit": n}.
RECORDER = """#!{python}
import json, os, sys, time
SETTLE = "{settle}"
here = os.path.dirname(os.path.abspath(__file__))
event = os.path.basename(sys.argv[0])
document = json.load(sys.stdin)
env = {{k: os.environ.get(k) for k in ("TUS_ID", "TUS_OFFSET", "TUS_SIZE")}}
record = {{"event": event, "input": document, "env": env, "cwd": os.getcwd(), "time": time.time()}}
with open(os.path.join(here, "calls.jsonl"), "a") as log:
    log.write(json.dumps(record) + "\\n")
plan = {{}}
try:
    with open(os.path.join(here, "plans", event + ".json")) as f:
        plan = json.load(f)
except FileNotFoundError:
    pass
metadata = document["Event"]["Upload"]["MetaData"] or {{}}
if any(metadata.get(k) != v for k, v in (plan.get("if_meta") or {{}}).items()):
    plan = {{}}
headers = {{k.lower(): v for k, v in document["Event"]["HTTPRequest"]["Header"].items()}}
if SETTLE.lower() in headers:
    plan = {{}}
wanted = plan.get("if_not_header") or {{}}
if wanted and all(headers.get(k.lower(), [None])[0] == v for k, v in wanted.items()):
    plan = {{}}
time.sleep(plan.get("sleep", 0))
if "stdout" in plan:
    sys.stdout.write(plan["stdout"])
elif "response" in plan:
    json.dump(plan["response"], sys.stdout)
sys.exit(plan.get("exit", 0))
"""


def plan_applies(plan: Mapping[str, Any], document: Mapping[str, Any]) -> bool:
    """``if_meta``: only for uploads with this metadata; ``if_not_header``: not for requests with these headers.

    Never for the requests of :meth:`Harness.settle` (they carry :data:`SETTLE_HEADER`).
    """
    metadata = document["Event"]["Upload"]["MetaData"] or {}
    if any(metadata.get(k) != v for k, v in (plan.get("if_meta") or {}).items()):
        return False
    headers = {k.lower(): v for k, v in document["Event"]["HTTPRequest"]["Header"].items()}
    if SETTLE_HEADER.lower() in headers:
        return False
    wanted = plan.get("if_not_header") or {}
    return not (wanted and all(headers.get(k.lower(), [None])[0] == v for k, v in wanted.items()))


ALL_EVENTS = (
    "pre-create", "post-create", "post-receive", "pre-finish", "post-finish", "pre-terminate", "post-terminate",
    "pre-access",
)  # fmt: skip


def write_program(path: Path, source: str) -> Path:
    path.write_text(source)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@dataclass
class HookDir:
    """A hooks directory with the recording program under every event name."""

    path: Path

    @classmethod
    def create(cls, path: Path, events: Sequence[str] = ALL_EVENTS) -> HookDir:
        path.mkdir(parents=True, exist_ok=True)
        (path / "plans").mkdir(exist_ok=True)
        source = RECORDER.format(python=sys.executable, settle=SETTLE_HEADER)
        for event in events:
            write_program(path / event, source)
        return cls(path)

    def plan(self, event: str, **plan: Any) -> None:
        (self.path / "plans" / f"{event}.json").write_text(json.dumps(plan))

    def clear(self) -> None:
        for plan in (self.path / "plans").glob("*.json"):
            plan.unlink()
        (self.path / "calls.jsonl").unlink(missing_ok=True)

    def calls(self, event: str | None = None) -> list[dict[str, Any]]:
        try:
            lines = (self.path / "calls.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return []
        records = [json.loads(line) for line in lines if line.strip()]
        return [r for r in records if event is None or r["event"] == event]


# -- a loopback HTTP hook endpoint ---------------------------------------------------------------


@dataclass
class HookCallRecord:
    type: str
    document: dict[str, Any]
    #: Case-insensitive, as received.
    headers: httpx.Headers


Responder = Callable[[dict[str, Any]], "tuple[int, bytes] | tuple[int, bytes, Mapping[str, str]] | None"]


@dataclass
class HookEndpoint:
    """A real HTTP server on loopback that records hook requests and answers them.

    ``plans[type]`` is ``{"response": {...}}`` (tusd JSON), ``{"status": n, "body": "raw"}``,
    ``{"sleep": s}``, ``{"fail_times": n}`` (answer 500 that many times first) or a callable
    ``(document) -> (status, body[, headers])``.
    """

    plans: dict[str, Any] = field(default_factory=dict)
    calls: list[HookCallRecord] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    failures: dict[str, int] = field(default_factory=dict)
    port: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def of(self, kind: str) -> list[HookCallRecord]:
        with self.lock:
            return [c for c in self.calls if c.type == kind]

    def clear(self) -> None:
        with self.lock:
            self.calls.clear()
            self.plans.clear()
            self.failures.clear()

    def _answer(self, document: dict[str, Any]) -> tuple[int, bytes, Mapping[str, str]]:
        kind = str(document.get("Type"))
        plan = self.plans.get(kind)
        if plan is None:
            return 200, b"{}", {"content-type": "application/json"}
        if callable(plan):
            result = plan(document)
            if result is None:
                return 200, b"", {}
            return (result[0], result[1], result[2] if len(result) > 2 else {})
        if plan.get("sleep"):
            time.sleep(plan["sleep"])
        if plan.get("fail_times"):
            with self.lock:
                done = self.failures.get(kind, 0)
                self.failures[kind] = done + 1
            if done < plan["fail_times"]:
                return 500, b"try again", {}
        if "status" in plan:
            return plan["status"], str(plan.get("body", "")).encode(), {}
        return 200, json.dumps(plan.get("response", {})).encode(), {"content-type": "application/json"}

    @contextmanager
    def running(self) -> Iterator[HookEndpoint]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                document = json.loads(self.rfile.read(length))
                with endpoint.lock:
                    endpoint.calls.append(
                        HookCallRecord(str(document.get("Type")), document, httpx.Headers(self.headers.items()))
                    )
                try:
                    status, body, headers = endpoint._answer(document)
                except Exception as exc:  # a broken plan: tell the hook client
                    status, body, headers = 500, str(exc).encode(), {}
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self.port = int(server.server_address[1])
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()


# -- one interface over the three transports, for scenarios that every transport must pass ----------

#: Every event, pre-access included, for servers of the scenario tests.
EVERY_EVENT = ",".join(ALL_EVENTS)
#: Short limits so failure tests are quick.
HOOK_TIMEOUT = 1.0
PROGRESS_INTERVAL = 0.2


class Harness(abc.ABC):
    """A server with hooks of one transport, and a way to script the hooks and read what they got.

    A plan (per event): ``response`` (tusd JSON), ``fail`` (the hook crashes: exit 1, HTTP 500,
    an exception), ``garbage`` (an unreadable answer), ``sleep`` (seconds), and the filters of
    :func:`plan_applies`. Calls are the hook request documents, oldest first.
    """

    name: str
    base_url: str
    url: str
    host: str
    port: int
    upload_dir: Path
    #: tusd's Storage.Type of the server's store.
    store_type: str = "filestore"

    @abc.abstractmethod
    def plan(self, event: str, **plan: Any) -> None: ...

    @abc.abstractmethod
    def calls(self, event: str | None = None) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def clear(self) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def calls_for(self, marker: str, event: str | None = None) -> list[dict[str, Any]]:
        """Calls about uploads whose metadata has ``test: marker``."""
        return [c for c in self.calls(event) if (c["Event"]["Upload"]["MetaData"] or {}).get("test") == marker]

    def settle(self) -> None:
        """Make LATER hook events happen and wait for them, before asserting that a hook did not run.

        A throw-away upload is created and terminated (no plan applies to its requests); its
        post-create and post-terminate hooks are started after every hook of the requests before,
        so once they have arrived a hook that was going to run for those has had its turn - a late
        one is caught, where a sleep would have let it pass. Leaves no upload behind.
        """
        mark = f"settle-{uuid.uuid4().hex[:12]}"
        headers = {"Tus-Resumable": "1.0.0", SETTLE_HEADER: "1"}
        metadata = "test " + base64.b64encode(mark.encode()).decode()
        with httpx.Client(base_url=self.base_url, headers=headers, timeout=30.0) as client:
            created = client.post("/files/", headers={"Upload-Length": "1", "Upload-Metadata": metadata})
            assert created.status_code == 201, (created.status_code, created.text)
            wait_until(lambda: self.calls_for(mark, "post-create"), message="the post-create hook of a later upload")
            deleted = client.delete(created.headers["location"])
            assert deleted.status_code == 204, (deleted.status_code, deleted.text)
        wait_until(lambda: self.calls_for(mark, "post-terminate"), message="the post-terminate hook of a later upload")

    def _attach(self, server: Any, upload_dir: Path) -> None:
        self.base_url, self.url, self.host, self.port = server.base_url, server.url, server.host, server.port
        self.upload_dir = upload_dir
        self.store_type = STORE_TYPES[getattr(server, "backend", "file")]


class FileHarness(Harness):
    name = "file"

    def __init__(self, root: Path) -> None:
        self.hooks = HookDir.create(root / "hooks")
        args = [
            "--hooks-dir", str(self.hooks.path), "--hooks-enabled-events", EVERY_EVENT,
            "--hooks-file-timeout", f"{HOOK_TIMEOUT}s", "--progress-hooks-interval", f"{PROGRESS_INTERVAL}s",
        ]  # fmt: skip
        self.server = start_hook_server(root / "data", args)
        self._attach(self.server, root / "data")

    def plan(self, event: str, **plan: Any) -> None:
        if plan.pop("fail", False):
            plan["exit"] = 1
        if plan.pop("garbage", False):
            plan["stdout"] = "<html>this is not JSON</html>"
        self.hooks.plan(event, **plan)

    def calls(self, event: str | None = None) -> list[dict[str, Any]]:
        return [dict(c["input"], env=c["env"]) for c in self.hooks.calls(event)]

    def clear(self) -> None:
        self.hooks.clear()

    def close(self) -> None:
        self.server.stop()


class HttpHarness(Harness):
    name = "http"

    def __init__(self, root: Path) -> None:
        self.plans: dict[str, dict[str, Any]] = {}
        self.endpoint = HookEndpoint()
        self._running = self.endpoint.running()
        self._running.__enter__()
        for event in ALL_EVENTS:
            self.endpoint.plans[event] = self._respond
        args = [
            "--hooks-http", self.endpoint.url, "--hooks-enabled-events", EVERY_EVENT,
            "--hooks-http-timeout", f"{HOOK_TIMEOUT}s", "--hooks-http-retry", "1", "--hooks-http-backoff", "50ms",
            "--hooks-http-forward-headers", "Authorization", "--progress-hooks-interval", f"{PROGRESS_INTERVAL}s",
        ]  # fmt: skip
        self.server = start_hook_server(root / "data", args)
        self._attach(self.server, root / "data")

    def _respond(self, document: dict[str, Any]) -> tuple[int, bytes, Mapping[str, str]]:
        plan = self.plans.get(str(document["Type"]), {})
        if not plan_applies(plan, document):
            plan = {}
        if plan.get("sleep"):
            time.sleep(plan["sleep"])
        if plan.get("fail"):
            return 500, b"hook crashed", {}
        if plan.get("garbage"):
            return 200, b"<html>this is not JSON</html>", {"content-type": "text/html"}
        return 200, json.dumps(plan.get("response", {})).encode(), {"content-type": "application/json"}

    def plan(self, event: str, **plan: Any) -> None:
        self.plans[event] = plan

    def calls(self, event: str | None = None) -> list[dict[str, Any]]:
        with self.endpoint.lock:
            found = [dict(c.document, forwarded=c.headers) for c in self.endpoint.calls]
        return [c for c in found if event is None or c["Type"] == event]

    def clear(self) -> None:
        self.plans.clear()
        with self.endpoint.lock:
            self.endpoint.calls.clear()

    def close(self) -> None:
        self.server.stop()
        self._running.__exit__(None, None, None)


class PythonHarness(Harness):
    name = "python"

    def __init__(self, root: Path) -> None:
        from pytusd import Config, TusApp
        from pytusd.hooks import HookCall, PythonHooks
        from pytusd.locks.file import FileLocker
        from pytusd.stores.file import FileStore

        self.plans: dict[str, dict[str, Any]] = {}
        self.recorded: list[dict[str, Any]] = []
        self.lock = threading.Lock()

        async def hook(call: HookCall) -> Any:
            document = call.to_json()
            with self.lock:
                self.recorded.append(document)
            plan = self.plans.get(str(call.event), {})
            if not plan_applies(plan, document):
                return None
            if plan.get("sleep"):
                await asyncio.sleep(plan["sleep"])
            if plan.get("fail"):
                raise RuntimeError("hook crashed")
            if plan.get("garbage"):
                return 42
            return plan.get("response")

        hooks = PythonHooks(dict.fromkeys(ALL_EVENTS, hook), timeout=HOOK_TIMEOUT, progress_interval=PROGRESS_INTERVAL)
        directory = root / "data"
        directory.mkdir(parents=True)
        app = TusApp(FileStore(directory), Config(), locker=FileLocker(directory), hooks=hooks)
        self.server = InProcessServer(app).__enter__()
        self._attach(self.server, directory)

    def plan(self, event: str, **plan: Any) -> None:
        self.plans[event] = plan

    def calls(self, event: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            found = list(self.recorded)
        return [c for c in found if event is None or c["Type"] == event]

    def clear(self) -> None:
        self.plans.clear()
        with self.lock:
            self.recorded.clear()

    def close(self) -> None:
        self.server.__exit__(None, None, None)


class GrpcHarness(Harness):
    """A grpcio server implementing tusd's HookHandler; plans are tusd JSON, translated to its proto.

    tusd's proto has no RejectTermination or RejectAccess: those flags are dropped (a status of 400
    or more still rejects). Calls are turned back into tusd's JSON shape (Header values as lists).
    """

    name = "grpc"

    def __init__(self, root: Path) -> None:
        from tests.integration.grpc_hook_helpers import GrpcHookServer

        self.plans: dict[str, dict[str, Any]] = {}
        self.server_side = GrpcHookServer()
        self._running = self.server_side.running()
        self._running.__enter__()
        for event in ALL_EVENTS:
            self.server_side.plans[event] = self._respond
        args = [
            "--hooks-grpc", self.server_side.address, "--hooks-enabled-events", EVERY_EVENT,
            "--hooks-grpc-timeout", f"{HOOK_TIMEOUT}s", "--hooks-grpc-retry", "1", "--hooks-grpc-backoff", "50ms",
            "--hooks-grpc-forward-headers", "Authorization", "--progress-hooks-interval", f"{PROGRESS_INTERVAL}s",
        ]  # fmt: skip
        self.server = start_hook_server(root / "data", args)
        self._attach(self.server, root / "data")

    @staticmethod
    def document(request: Any) -> dict[str, Any]:
        upload, http = request.event.upload, request.event.httpRequest
        return {
            "Type": request.type,
            "Event": {
                "Upload": {
                    "ID": upload.id, "Size": upload.size, "SizeIsDeferred": upload.sizeIsDeferred,
                    "Offset": upload.offset, "MetaData": dict(upload.metaData), "IsPartial": upload.isPartial,
                    "IsFinal": upload.isFinal, "PartialUploads": list(upload.partialUploads) or None,
                    "Storage": dict(upload.storage) or None,
                },
                "HTTPRequest": {
                    "Method": http.method, "URI": http.uri, "RemoteAddr": http.remoteAddr,
                    "Header": {k: [v] for k, v in http.header.items()},
                },
            },
        }  # fmt: skip

    def _respond(self, request: Any) -> Any:
        import grpc

        from pytusd.hooks.proto import hook_pb2

        plan = self.plans.get(request.type, {})
        if not plan_applies(plan, self.document(request)):
            plan = {}
        if plan.get("sleep"):
            time.sleep(plan["sleep"])
        if plan.get("fail"):
            raise grpc.RpcError("hook crashed")  # the server answers UNKNOWN
        if plan.get("garbage"):
            return hook_pb2.HookResponse(httpResponse=hook_pb2.HTTPResponse(statusCode=1000))
        answer = plan.get("response", {})
        http = answer.get("HTTPResponse")
        changes = answer.get("ChangeFileInfo")
        return hook_pb2.HookResponse(
            rejectUpload=bool(answer.get("RejectUpload")),
            stopUpload=bool(answer.get("StopUpload")),
            httpResponse=hook_pb2.HTTPResponse(
                statusCode=http.get("StatusCode", 0), body=http.get("Body", ""), header=http.get("Header", {})
            )
            if http
            else None,
            changeFileInfo=hook_pb2.FileInfoChanges(
                id=changes.get("ID", ""), metaData=changes.get("MetaData"), storage=changes.get("Storage")
            )
            if changes
            else None,
        )

    def plan(self, event: str, **plan: Any) -> None:
        self.plans[event] = plan

    def calls(self, event: str | None = None) -> list[dict[str, Any]]:
        with self.server_side.lock:
            found = [dict(self.document(c.request), forwarded=c.metadata) for c in self.server_side.calls]
        return [c for c in found if event is None or c["Type"] == event]

    def clear(self) -> None:
        self.plans.clear()
        with self.server_side.lock:
            self.server_side.calls.clear()

    def close(self) -> None:
        self.server.stop()
        self._running.__exit__(None, None, None)


HARNESSES: dict[str, type[Harness]] = {
    "file": FileHarness, "grpc": GrpcHarness, "http": HttpHarness, "python": PythonHarness,
}  # fmt: skip
