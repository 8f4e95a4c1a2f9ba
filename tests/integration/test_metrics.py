"""Prometheus metrics on the server's port: tusd's names and labels, exact counts, several workers.

Each test starts its own server, so every count is known from the requests the test made.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
from tests.conftest import TUS
from tests.integration.hook_helpers import write_program
from tests.integration.ietf_helpers import append, create
from tests.integration.test_locking import connect, worker_pids
from tests.support.server import ServerProcess, current_backend
from tests.support.wait import wait_until

METHODS = ("GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS")
HOOK_TYPES = (
    "pre-create", "post-create", "post-receive", "pre-finish", "post-finish", "pre-terminate", "post-terminate",
    "pre-access",
)  # fmt: skip
OCTET = {**TUS, "Content-Type": "application/offset+octet-stream"}
_SAMPLE = re.compile(r"^(\S+) (\S+)$")

Factory = Callable[..., ServerProcess]


def parse(text: str) -> dict[str, float]:
    """Samples by name and labels as exposed (prometheus_client sorts labels by name)."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            match = _SAMPLE.match(line)
            assert match is not None, line
            samples[match.group(1)] = float(match.group(2))
    return samples


def scrape(server: ServerProcess, path: str = "/metrics") -> dict[str, float]:
    response = httpx.get(server.base_url + path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse(response.text)


def requests_total(samples: dict[str, float], since: dict[str, float] | None = None) -> dict[str, float]:
    """Requests per method (``since``: minus an earlier scrape's counts)."""
    before = requests_total(since) if since is not None else dict.fromkeys(METHODS, 0.0)
    return {m: samples[f'tusd_requests_total{{method="{m}"}}'] - before[m] for m in METHODS}


def hook_counts(samples: dict[str, float], family: str) -> dict[str, float]:
    return {h: samples[f'{family}{{hooktype="{h}"}}'] for h in HOOK_TYPES}


def errors(samples: dict[str, float]) -> dict[tuple[str, str], float]:
    found = {}
    for name, value in samples.items():
        match = re.fullmatch(r'tusd_errors_total\{code="([A-Z_]+)",status="(\d+)"\}', name)
        if match:
            found[(match.group(2), match.group(1))] = value
    return found


def test_fresh_server_has_every_family_from_zero_and_scrapes_are_not_counted(server_factory: Factory) -> None:
    server = server_factory(["--metrics-path", "/custom"])
    first = scrape(server, "/custom")
    # Only the OPTIONS requests that found the server ready have been made.
    assert {m: n for m, n in requests_total(first).items() if m != "OPTIONS"} == dict.fromkeys(METHODS[:5], 0.0)
    for _ in range(3):
        samples = scrape(server, "/custom")
        assert requests_total(samples, since=first) == dict.fromkeys(METHODS, 0.0)
        assert hook_counts(samples, "tusd_hook_invocations_total") == dict.fromkeys(HOOK_TYPES, 0.0)
        assert hook_counts(samples, "tusd_hook_errors_total") == dict.fromkeys(HOOK_TYPES, 0.0)
        for name in ("tusd_bytes_received", "tusd_uploads_created", "tusd_uploads_finished", "tusd_uploads_terminated"):
            assert samples[name] == 0.0
        assert samples["pytusd_uploads_in_progress"] == 0.0
        assert errors(samples) == {}
    text = httpx.get(server.base_url + "/custom").text
    # tusd's exact names, without prometheus_client's _total and _created series
    assert "# TYPE tusd_bytes_received counter\n" in text
    assert "# HELP tusd_uploads_created Number of created uploads.\n" in text
    assert "# TYPE tusd_connections_open gauge\n" in text
    names = {name.split("{")[0] for name in parse(text)}
    assert {n for n in names if n.endswith("_created")} == {"tusd_uploads_created"}
    assert {n for n in names if n.startswith("tusd_") and n.endswith("_total")} == {
        "tusd_requests_total", "tusd_hook_invocations_total", "tusd_hook_errors_total",
    }  # fmt: skip
    # The default path is then an ordinary (unknown) path of the server.
    assert httpx.get(server.base_url + "/metrics").status_code == 404


def test_no_expose_metrics(server_factory: Factory) -> None:
    server = server_factory(["--no-expose-metrics"])
    assert httpx.get(server.base_url + "/metrics").status_code == 404


def test_counts_after_a_known_sequence(server_factory: Factory, tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for name in ("pre-create", "post-create", "pre-finish", "post-finish", "pre-terminate"):
        write_program(hooks / name, "#!/bin/sh\nexit 0\n")
    write_program(hooks / "post-terminate", "#!/bin/sh\nexit 1\n")  # a failure: counted, only logged
    events = "pre-create,post-create,pre-finish,post-finish,pre-terminate,post-terminate"
    server = server_factory(["--hooks-dir", str(hooks), "--hooks-enabled-events", events])
    first = scrape(server)
    with httpx.Client(base_url=server.base_url, headers=TUS) as client:
        created = client.post("/files/", headers={"Upload-Length": "10"})
        assert created.status_code == 201
        location = created.headers["location"]
        assert client.patch(location, headers={**OCTET, "Upload-Offset": "0"}, content=b"abcd").status_code == 204
        assert client.head(location).status_code == 200
        assert client.patch(location, headers={**OCTET, "Upload-Offset": "0"}, content=b"ab").status_code == 409
        assert client.patch(location, headers={**OCTET, "Upload-Offset": "4"}, content=b"efghij").status_code == 204
        assert client.head("/files/nope").status_code == 404
        assert client.get(location).content == b"abcdefghij"
        assert client.delete(location).status_code == 204
        assert client.options("/files/").status_code == 200
        assert httpx.post(server.url, headers={"Upload-Length": "1"}).status_code == 412  # no Tus-Resumable
        with socket.create_connection((server.host, server.port)) as sock:  # HTTP/1.1 without Host
            sock.sendall(b"HEAD /files/ HTTP/1.1\r\nTus-Resumable: 1.0.0\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 400")

    def post_hooks_ran() -> dict[str, float] | None:
        samples = scrape(server)
        done = samples['tusd_hook_errors_total{hooktype="post-terminate"}'] == 1
        return samples if done and samples['tusd_hook_invocations_total{hooktype="post-finish"}'] == 1 else None

    samples = wait_until(post_hooks_ran, message="the post-* hooks to be counted", server=server)
    for _ in range(2):  # scrapes change nothing
        assert requests_total(samples, since=first) == {
            "GET": 1,
            "HEAD": 3,
            "POST": 2,
            "PATCH": 3,
            "DELETE": 1,
            "OPTIONS": 1,
        }
        assert errors(samples) == {
            ("409", "ERR_MISMATCHED_OFFSET"): 1,
            ("404", "ERR_UPLOAD_NOT_FOUND"): 1,
            ("412", "ERR_UNSUPPORTED_VERSION"): 1,
            ("400", "ERR_BAD_REQUEST"): 1,
        }
        assert samples["tusd_bytes_received"] == 10
        assert samples["tusd_uploads_created"] == 1
        assert samples["tusd_uploads_finished"] == 1
        assert samples["tusd_uploads_terminated"] == 1
        assert samples["pytusd_uploads_in_progress"] == 0
        assert hook_counts(samples, "tusd_hook_invocations_total") == {
            **dict.fromkeys(HOOK_TYPES, 0),
            **dict.fromkeys(("pre-create", "post-create", "pre-finish", "post-finish"), 1),
            **dict.fromkeys(("pre-terminate", "post-terminate"), 1),
        }
        assert hook_counts(samples, "tusd_hook_errors_total") == {**dict.fromkeys(HOOK_TYPES, 0), "post-terminate": 1}
        assert samples['pytusd_request_duration_seconds_count{method="PATCH"}'] == 3
        assert samples['pytusd_request_duration_seconds_count{method="GET"}'] == 1
        samples = scrape(server)
    calls = {
        n.split("{", 1)[1]: v for n, v in samples.items() if n.startswith("pytusd_store_request_duration_seconds_count")
    }
    # Each call to an object store timed, by store and operation: the info object is written at
    # creation and read at HEAD; the data went up as a part, a block or an object.
    written, read, data = {
        "s3": ("put_object", "get_object", "upload_part"),
        "gcs": ("put_object", "get_object", "put_object"),
        "azure": ("upload_blob", "download_blob", "stage_block"),
    }.get(current_backend(), ("", "", ""))
    if written:
        store = current_backend()
        for operation in (written, read, data):
            assert calls[f'operation="{operation}",store="{store}"}}'] >= 1, calls
        assert all(name.endswith(f'store="{store}"}}') for name in calls), calls
    else:
        assert calls == {}  # local disk: no requests to time
    # Only the scrape's own connection is left open (the client's closed above).
    wait_until(lambda: scrape(server)["tusd_connections_open"] == 1, message="one open connection", server=server)


def test_workers_answer_with_the_whole_servers_numbers(server_factory: Factory) -> None:
    server = server_factory(["--workers", "2"])
    pids = worker_pids(server, 2)
    first = scrape(server)
    per_worker = 3
    for pid in pids:
        conn = connect(server, on=pid)
        with conn:
            for _ in range(per_worker):
                reply = conn.request("POST", "/files/", [*OCTET.items(), ("Upload-Length", "1")], b"x")
                assert reply.status == 201
            assert conn.request("HEAD", "/files/nope", list(TUS.items())).status == 404
    for pid in pids * 2:  # every worker answers a scrape, twice: all see the same totals
        with connect(server, on=pid) as conn:
            reply = conn.request("GET", "/metrics")
        assert reply.status == 200
        samples = parse(reply.body.decode())
        assert requests_total(samples, since=first) == {**dict.fromkeys(METHODS, 0), "POST": 2 * per_worker, "HEAD": 2}
        assert samples["tusd_uploads_created"] == 2 * per_worker
        assert samples["tusd_uploads_finished"] == 2 * per_worker  # each completed by its creation's body
        assert samples["tusd_bytes_received"] == 2 * per_worker
        assert errors(samples) == {("404", "ERR_UPLOAD_NOT_FOUND"): 2}
        assert samples['pytusd_request_duration_seconds_count{method="POST"}'] == 2 * per_worker
        assert samples["tusd_connections_open"] >= 1


def test_a_killed_workers_connections_stop_counting_and_its_counts_stay(server_factory: Factory) -> None:
    server = server_factory(["--workers", "2"])
    first = scrape(server)
    victim, survivor = worker_pids(server, 2)
    held = connect(server, on=victim)  # open when the worker dies: its gauge must not count it forever
    assert held.request("POST", "/files/", [*TUS.items(), ("Upload-Length", "1")]).status == 201
    os.kill(victim, signal.SIGKILL)

    def settled() -> dict[str, float] | None:
        with connect(server, on=survivor) as conn:
            samples = parse(conn.request("GET", "/metrics").body.decode())
        return samples if samples["tusd_connections_open"] == 1 else None  # the scrape's own

    samples = wait_until(settled, message="the dead worker's connections to stop counting", server=server)
    held.close()
    # What the dead worker counted stays in the totals (Prometheus sees no counter reset).
    assert samples["tusd_uploads_created"] == 1
    assert requests_total(samples, since=first)["POST"] == 1


def test_flags_from_the_environment(server_factory: Factory) -> None:
    server = server_factory(env={"PYTUSD_METRICS_PATH": "/stats"})
    assert "tusd_requests_total" in httpx.get(server.base_url + "/stats").text
    server = server_factory(env={"PYTUSD_EXPOSE_METRICS": "0", "PYTUSD_METRICS_PATH": "/stats"})
    assert httpx.get(server.base_url + "/stats").status_code == 404


def test_bad_metrics_paths_are_refused() -> None:
    for args in (["--metrics-path", "metrics"], ["--metrics-path", "/files"], ["--metrics-path", "/files/"]):
        out = subprocess.run([sys.executable, "-m", "pytusd", *args], capture_output=True, text=True)
        assert out.returncode == 2, args
        assert "--metrics-path must" in out.stderr


def test_ietf_draft_uploads_count_alike(server_factory: Factory) -> None:
    server = server_factory()
    first = scrape(server)
    path, _ = create(server, 8, b"hello ")
    assert append(server, 8, path, 6, b"world", complete=True).status == 204
    assert append(server, 8, path, 0, b"x").status == 409  # a stale offset: tusd's mismatched-offset code
    samples = scrape(server)
    assert requests_total(samples, since=first) == {**dict.fromkeys(METHODS, 0), "POST": 1, "PATCH": 2}
    assert samples["tusd_bytes_received"] == 11
    assert (samples["tusd_uploads_created"], samples["tusd_uploads_finished"]) == (1, 1)
    assert errors(samples) == {("409", "ERR_MISMATCHED_OFFSET"): 1}
