"""The IETF "Resumable Uploads for HTTP" draft, interop versions 3 to 8, over raw TCP.

Every request goes through :mod:`tests.integration.ietf_helpers`, which returns ALL responses of
a request in order (interim 1xx included), so the tests can check what the draft says about 104
Upload Resumption Supported: before the final response, with the same ``Location``, the interop
version echoed, ``Upload-Limit`` when limits apply, progress ``Upload-Offset`` (v5+), and never
instead of a 100 Continue.

Texts: draft-ietf-httpbis-resumable-upload-11 (interop version 8) and the editors' copy after it
(still version 8), in /work/shared/spec/. Sections are quoted in the tests that rely on them.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from tests.integration.ietf_helpers import (
    COMPLETED_UPLOAD,
    INCONSISTENT_LENGTH,
    MISMATCHING_OFFSET,
    OCTET,
    PARTIAL,
    TIMEOUT,
    VERSIONS,
    Exchange,
    Message,
    append,
    append_headers,
    completeness,
    create,
    draft,
    exchange,
    head,
    limits,
    offset_of,
    path_of,
    problem,
    read_exchange,
    read_interim,
    version_header,
)
from tests.support.rawhttp import Connection, build_head, split
from tests.support.server import ServerProcess
from tests.support.wait import wait_until
from tusclient import client as tus_client

MAX_SIZE = 1_000_000
EXPIRE = 3600
INTERNAL_DIRS = (".pytusd-tmp", ".pytusd-locks")

# -- servers ----------------------------------------------------------------------------------------


def _start(tmp_path_factory: pytest.TempPathFactory, args: list[str]) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("ietf") / "data", args).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """No limits; progress 104s every 50 ms."""
    yield from _start(tmp_path_factory, ["--progress-interval", "0.05"])


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``--max-size`` and ``--expire-after``: the draft's ``Upload-Limit`` applies (v6+)."""
    args = ["--progress-interval", "0.05", "--max-size", str(MAX_SIZE), "--expire-after", f"{EXPIRE}s"]
    yield from _start(tmp_path_factory, args)


versions = pytest.mark.parametrize("version", VERSIONS)


# -- checks -----------------------------------------------------------------------------------------


def payload(n: int, seed: int = 0) -> bytes:
    return bytes((i * 31 + seed * 7 + i // 251) % 256 for i in range(n))


def is_2xx(message: Message) -> bool:
    return 200 <= message.status < 300


def assert_announced(result: Exchange, version: int) -> Message:
    """A 104 came before the final response, with the final ``Location`` and the version echoed."""
    assert result.messages[0].status == 104, result
    announce = result.messages[0]
    location = announce.get("location")
    assert location, announce
    assert announce.count("location") == 1, announce
    final = result.final
    # -11, Upload Creation: "all interim and final response messages for the same request MUST
    # contain an identical Location value" (final ?1 responses are exempt, but if they carry one...)
    if final.get("location") is not None or not completeness(final, version):
        assert final.get("location") == location, result
    for interim in result.interims:
        if interim.status == 104:
            # Draft Version Identification: "MUST also send a header field Upload-Draft-Interop-Version"
            assert interim.get("upload-draft-interop-version") == str(version), interim
    return announce


def assert_version_only_104s(result: Exchange, version: int) -> None:
    for interim in result.of_status(104):
        assert interim.get("upload-draft-interop-version") == str(version), interim


def assert_limits(message: Message, version: int, *, max_age: bool = True) -> None:
    """``Upload-Limit`` as the version spells it: none before v6, ``expires`` in v6, ``max-age`` after."""
    parsed = limits(message)
    if version < 6:
        assert parsed is None, message
        return
    assert parsed is not None, message
    assert parsed.get("max-size") == MAX_SIZE, parsed
    age_key, other_key = ("expires", "max-age") if version == 6 else ("max-age", "expires")
    assert other_key not in parsed, parsed
    if max_age:
        assert type(parsed.get(age_key)) is int and 0 < parsed[age_key] <= EXPIRE, parsed


def assert_no_limits(message: Message) -> None:
    parsed = limits(message)
    assert parsed is None or ("max-size" not in parsed and "max-age" not in parsed and "expires" not in parsed)


def assert_problem(message: Message, *types: str) -> dict[str, object]:
    document = problem(message)
    assert document.get("type") in types, document
    return document


def assert_complete(message: Message, version: int, expected: bool) -> None:
    assert completeness(message, version) is expected, message
    if version >= 4:
        assert message.get("upload-incomplete") is None, message


def download(server: ServerProcess, path: str) -> bytes:
    result = exchange(server, "GET", path)
    assert result.status == 200, result
    return result.final.body


def upload_count(server: ServerProcess) -> int:
    return len([n for n in os.listdir(server.upload_dir) if n not in INTERNAL_DIRS])


def data_size(server: ServerProcess, path: str) -> int:
    return os.path.getsize(server.upload_dir / path.rsplit("/", 1)[1])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def sf_digest(algorithm: str, data: bytes) -> str:
    function = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}[algorithm]
    return f"{algorithm}=:{b64(function(data).digest())}:"


# -- creation -----------------------------------------------------------------------------------


@versions
def test_creation_with_complete_body(plain: ServerProcess, version: int) -> None:
    data = payload(1000)
    result = exchange(plain, "POST", "/files/", draft(version, True), data)
    assert is_2xx(result.final), result
    assert_announced(result, version)
    assert_complete(result.final, version, True)
    path = path_of(result.messages[0].get("location") or "")

    state = head(plain, path, version)
    assert is_2xx(state), state
    assert offset_of(state) == len(data)
    assert_complete(state, version, True)
    assert state.get("upload-length") == str(len(data))
    assert download(plain, path) == data


@versions
def test_creation_with_incomplete_body(plain: ServerProcess, version: int) -> None:
    data = payload(700, 1)
    result = exchange(plain, "POST", "/files/", draft(version, False), data)
    assert is_2xx(result.final), result
    announce = assert_announced(result, version)
    # ?0: "the server MUST include the Location response header field pointing to the upload resource"
    assert result.final.get("location") == announce.get("location")
    assert_complete(result.final, version, False)

    state = head(plain, path_of(announce.get("location") or ""), version)
    assert offset_of(state) == len(data)
    assert_complete(state, version, False)
    assert state.get("upload-length") is None, state  # the client has not said


@versions
def test_creation_with_empty_body(plain: ServerProcess, version: int) -> None:
    result = exchange(plain, "POST", "/files/", draft(version, False), b"")
    assert is_2xx(result.final), result
    announce = assert_announced(result, version)
    assert result.final.get("location") == announce.get("location")
    path = path_of(announce.get("location") or "")
    state = head(plain, path, version)
    assert offset_of(state) == 0
    assert_complete(state, version, False)

    # ?1 with no content: the client uploads an empty representation, complete at once.
    empty = exchange(plain, "POST", "/files/", draft(version, True), b"")
    assert is_2xx(empty.final), empty
    assert_announced(empty, version)
    state = head(plain, path_of(empty.messages[0].get("location") or ""), version)
    assert offset_of(state) == 0
    assert_complete(state, version, True)
    assert state.get("upload-length") == "0"


@versions
def test_creation_missing_completeness_is_rejected(plain: ServerProcess, version: int) -> None:
    """No (valid) completeness header of the version's own name: not an upload creation."""
    before = upload_count(plain)
    wrong = ("Upload-Complete", "?1") if version == 3 else ("Upload-Incomplete", "?0")
    for extra in ([], [wrong], [("Upload-Complete" if version > 3 else "Upload-Incomplete", "1")]):
        result = exchange(plain, "POST", "/files/", draft(version, None, *extra), b"abc")
        assert 400 <= result.status < 500, (extra, result)
        assert not result.of_status(104), result
    assert upload_count(plain) == before


@versions
def test_creation_announces_limits(limited: ServerProcess, version: int) -> None:
    """-11: the 104 "MUST include the Upload-Limit header field with the corresponding limits"."""
    result = exchange(limited, "POST", "/files/", draft(version, False), b"abc")
    assert is_2xx(result.final), result
    announce = assert_announced(result, version)
    assert_limits(announce, version)
    # ?0 final response: "MUST include the Upload-Limit header field with the corresponding limits"
    assert_limits(result.final, version)


@versions
def test_creation_without_limits_announces_none(plain: ServerProcess, version: int) -> None:
    result = exchange(plain, "POST", "/files/", draft(version, False), b"abc")
    assert_no_limits(assert_announced(result, version))
    assert_no_limits(result.final)


@versions
def test_creation_larger_than_max_size_is_refused(limited: ServerProcess, version: int) -> None:
    before = upload_count(limited)
    result = exchange(limited, "POST", "/files/", draft(version, True, ("Content-Length", str(MAX_SIZE + 1))))
    assert result.status == 413, result
    assert upload_count(limited) == before


@versions
def test_expect_continue_creation_gets_104_and_100(plain: ServerProcess, version: int) -> None:
    """-11 §104: "the server MUST NOT omit the 100 (Continue) response because it has sent" a 104."""
    data = payload(300, 2)
    result = exchange(plain, "POST", "/files/", draft(version, False), data, expect_continue=True)
    assert result.before_body is not None, result
    statuses = [m.status for m in result.messages[: result.before_body]]
    assert statuses == [104, 100], result
    assert is_2xx(result.final), result
    announce = assert_announced(result, version)
    assert offset_of(head(plain, path_of(announce.get("location") or ""), version)) == len(data)


@versions
def test_expect_continue_append_gets_100(plain: ServerProcess, version: int) -> None:
    path, _ = create(plain, version)
    data = payload(200, 3)
    result = append(plain, version, path, 0, data, expect_continue=True)
    assert result.before_body is not None, result
    assert [m.status for m in result.messages[: result.before_body]] == [100], result
    assert is_2xx(result.final), result
    assert offset_of(head(plain, path, version)) == len(data)


# -- progress 104s --------------------------------------------------------------------------------


def _send_and_watch(conn: Connection, result: Exchange, parts: list[bytes], start: int) -> None:
    """Send the parts one by one; after each but the last (which ends the body, so the final
    response may come first), read 104s until one reports everything sent so far."""
    sent = start
    for i, part in enumerate(parts):
        conn.send(part)
        sent += len(part)
        while i < len(parts) - 1:
            message = read_interim(conn, result)
            if message.status == 104 and message.get("upload-offset") == str(sent):
                break


@pytest.mark.parametrize("version", [5, 6, 7, 8])
def test_progress_104s_on_append(plain: ServerProcess, version: int) -> None:
    """v5+ (-03): "the server SHOULD send interim responses with a 104 ... and the Upload-Offset
    header field set to the current offset ... These interim responses MUST NOT include the
    Location header field." Each piece is followed by a 104 reporting it (no clock involved)."""
    path, _ = create(plain, version, b"12345")
    data = payload(3000, 4)
    parts = split(data, 3)
    result = Exchange()
    with Connection(plain) as conn:
        conn.send(build_head("PATCH", path, append_headers(version, 5, False), content_length=len(data)))
        _send_and_watch(conn, result, parts, 5)
        read_exchange(conn, "PATCH", result)
    assert is_2xx(result.final), result
    progress = result.of_status(104)
    assert len(progress) >= len(parts) - 1
    for message in progress:
        assert message.get("location") is None, message
        assert message.get("upload-draft-interop-version") == str(version), message
    offsets = [offset_of(m) for m in progress]
    assert offsets == sorted(offsets) and offsets[-1] <= 5 + len(data)
    assert offset_of(head(plain, path, version)) == 5 + len(data)


@pytest.mark.parametrize("version", [5, 6, 7, 8])
def test_progress_104s_on_creation(plain: ServerProcess, version: int) -> None:
    data = payload(3000, 5)
    parts = split(data, 3)
    result = Exchange()
    with Connection(plain) as conn:
        conn.send(build_head("POST", "/files/", draft(version, True), content_length=len(data)))
        announce = read_interim(conn, result)
        assert announce.status == 104 and announce.get("location"), announce
        _send_and_watch(conn, result, parts, 0)
        read_exchange(conn, "POST", result)
    assert is_2xx(result.final), result
    assert_announced(result, version)
    progress = [m for m in result.of_status(104)[1:]]
    assert progress and all(m.get("upload-offset") for m in progress), result
    assert download(plain, path_of(announce.get("location") or "")) == data


@pytest.mark.parametrize("version", [3, 4])
def test_no_progress_104s_before_v5(plain: ServerProcess, version: int) -> None:
    """Progress 104s arrived with -03 (interop 5): older clients get the announcing 104 only."""
    data = payload(900, 6)
    created = exchange(plain, "POST", "/files/", draft(version, False), data[:300], pieces=3, pause=0.15)
    assert is_2xx(created.final), created
    assert [m.status for m in created.interims] == [104], created
    assert created.messages[0].get("upload-offset") is None, created
    path = path_of(created.final.get("location") or "")

    appended = append(plain, version, path, 300, data[300:], pieces=3, pause=0.15)
    assert is_2xx(appended.final), appended
    assert appended.interims == [], appended
    assert offset_of(head(plain, path, version)) == len(data)


# -- offset retrieval -------------------------------------------------------------------------------


@versions
def test_head_reports_state(limited: ServerProcess, version: int) -> None:
    """-11 Offset Retrieval: Upload-Offset, Upload-Complete, Upload-Length unless unknown,
    Upload-Limit, Cache-Control: no-store."""
    path, _ = create(limited, version, b"abcdef")
    state = head(limited, path, version)
    assert is_2xx(state), state
    assert offset_of(state) == 6
    assert_complete(state, version, False)
    assert state.get("upload-length") is None
    assert "no-store" in (state.get("cache-control") or ""), state
    assert_limits(state, version)
    assert state.get("tus-resumable") is None, state

    done = append(limited, version, path, 6, b"ghij", complete=True)
    assert is_2xx(done.final), done
    state = head(limited, path, version)
    assert offset_of(state) == 10
    assert_complete(state, version, True)
    assert state.get("upload-length") == "10"
    assert_limits(state, version, max_age=False)


@pytest.mark.parametrize("version", [6, 7, 8])
def test_head_reports_length_given_at_creation(limited: ServerProcess, version: int) -> None:
    """v6 (-05) added ``Upload-Length`` at creation; HEAD then reports it."""
    path, _ = create(limited, version, b"abc", extra=[("Upload-Length", "10")])
    state = head(limited, path, version)
    assert offset_of(state) == 3
    assert state.get("upload-length") == "10"
    assert_complete(state, version, False)


def test_head_unknown_upload_is_404(plain: ServerProcess) -> None:
    assert head(plain, "/files/does-not-exist", 8).status == 404


# -- append -----------------------------------------------------------------------------------------


@versions
def test_append_in_several_requests(plain: ServerProcess, version: int) -> None:
    data = payload(5000, 7)
    path, _ = create(plain, version, data[:1000])
    offset = 1000
    for part, last in ((data[1000:2500], False), (data[2500:], True)):
        result = append(plain, version, path, offset, part, complete=last)
        assert is_2xx(result.final), result
        offset += len(part)
        assert_complete(result.final, version, last)
        assert_version_only_104s(result, version)
    state = head(plain, path, version)
    assert offset_of(state) == len(data)
    assert_complete(state, version, True)
    assert download(plain, path) == data


@versions
def test_append_empty_request_completes(plain: ServerProcess, version: int) -> None:
    """-11 Upload Append: Upload-Complete is true when "the request has no content ... This usage
    requires the full representation data to have been received via prior requests"."""
    path, _ = create(plain, version, b"whole thing")
    result = append(plain, version, path, 11, b"", complete=True)
    assert is_2xx(result.final), result
    assert_complete(result.final, version, True)
    state = head(plain, path, version)
    assert_complete(state, version, True)
    assert state.get("upload-length") == "11"


@pytest.mark.parametrize("version", [6, 7, 8])
@pytest.mark.parametrize("content_type", [None, OCTET, "text/plain", "application/partial-uploads"])
def test_append_needs_partial_upload_type_from_v6(plain: ServerProcess, version: int, content_type: str | None) -> None:
    """v6 (-04): "Require application/partial-upload for appending to uploads" -> 415 otherwise."""
    path, _ = create(plain, version, b"abc")
    headers = draft(version, False, ("Upload-Offset", "3"))
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    result = exchange(plain, "PATCH", path, headers, b"def")
    assert result.status == 415, result
    assert offset_of(head(plain, path, version)) == 3

    ok = exchange(plain, "PATCH", path, [*headers[:3], ("Content-Type", PARTIAL + "; charset=binary")], b"def")
    assert is_2xx(ok.final), ok
    assert offset_of(head(plain, path, version)) == 6


@pytest.mark.parametrize("version", [6, 8])
def test_partial_upload_type_is_case_insensitive(plain: ServerProcess, version: int) -> None:
    """RFC 9110 section 8.3.1: "The type and subtype tokens are case-insensitive"."""
    path, _ = create(plain, version, b"abc")
    headers = draft(version, False, ("Upload-Offset", "3"), ("Content-Type", "Application/Partial-Upload"))
    result = exchange(plain, "PATCH", path, headers, b"def")
    assert is_2xx(result.final), result
    assert offset_of(head(plain, path, version)) == 6


@pytest.mark.parametrize("version", [3, 4, 5])
def test_append_without_content_type_before_v6(plain: ServerProcess, version: int) -> None:
    path, _ = create(plain, version, b"abc")
    result = exchange(plain, "PATCH", path, draft(version, True, ("Upload-Offset", "3")), b"def")
    assert is_2xx(result.final), result
    assert_complete(result.final, version, True)
    assert download(plain, path) == b"abcdef"


@versions
def test_append_with_wrong_offset_is_409(plain: ServerProcess, version: int) -> None:
    """-11: "MUST reject the request with a 409 (Conflict) status code. The response MUST include
    the correct offset in the Upload-Offset header field." Problem type from v6 (-04)."""
    path, _ = create(plain, version, b"0123456789")
    for provided in (0, 5, 11, 1000):
        result = append(plain, version, path, provided, b"xyz")
        assert result.status == 409, result
        assert result.final.get("upload-offset") == "10", result
        if version >= 6:
            document = assert_problem(result.final, MISMATCHING_OFFSET)
            assert document.get("expected-offset") == 10, document
            assert document.get("provided-offset") == provided, document
    state = head(plain, path, version)
    assert offset_of(state) == 10
    assert complete_and_download(plain, path, b"0123456789", version)


def complete_and_download(server: ServerProcess, path: str, expected: bytes, version: int) -> bool:
    """Complete the upload with an empty append and compare the bytes (nothing was added)."""
    done = append(server, version, path, len(expected), b"", complete=True)
    assert is_2xx(done.final), done
    return download(server, path) == expected


@versions
def test_append_with_invalid_offset_is_400(plain: ServerProcess, version: int) -> None:
    path, _ = create(plain, version, b"abc")
    for value in (None, "-1", "3.0", "abc", "3, 3"):
        headers = draft(version, False)
        if value is not None:
            headers.append(("Upload-Offset", value))
        if version >= 6:
            headers.append(("Content-Type", PARTIAL))
        result = exchange(plain, "PATCH", path, headers, b"def")
        assert 400 <= result.status < 500 and result.status != 409, (value, result)
    assert offset_of(head(plain, path, version)) == 3


@versions
def test_append_to_completed_upload(plain: ServerProcess, version: int) -> None:
    """-11: "If the upload is already complete, the server MUST NOT modify the upload resource and
    MUST reject the request": non-empty -> inconsistent length; empty -> completed-upload."""
    path, _ = create(plain, version, b"done", complete=True)

    more = append(plain, version, path, 4, b"more")
    assert 400 <= more.status < 500, more
    if version >= 7:
        assert_problem(more.final, INCONSISTENT_LENGTH)
    elif version == 6:  # -04/-05 had only mismatching-offset and completed-upload
        assert_problem(more.final, INCONSISTENT_LENGTH, COMPLETED_UPLOAD)

    more_final = append(plain, version, path, 4, b"more", complete=True)
    assert 400 <= more_final.status < 500, more_final

    empty = append(plain, version, path, 4, b"", complete=False)
    assert 400 <= empty.status < 500, empty
    if version >= 6:
        assert_problem(empty.final, COMPLETED_UPLOAD)

    state = head(plain, path, version)
    assert offset_of(state) == 4
    assert_complete(state, version, True)
    assert download(plain, path) == b"done"


@pytest.mark.parametrize("version", [6, 7, 8])
def test_inconsistent_length_at_creation(plain: ServerProcess, version: int) -> None:
    """-11 Length: "If indicators (1) and (2) are both present in the same request, their indicated
    lengths MUST match" -> 400, problem type inconsistent-upload-length (defined from v7)."""
    before = upload_count(plain)
    result = exchange(plain, "POST", "/files/", draft(version, True, ("Upload-Length", "10")), b"12345")
    assert result.status == 400, result
    if version >= 7:
        assert_problem(result.final, INCONSISTENT_LENGTH)
    assert result.final.get("location") is None, result
    assert upload_count(plain) == before


@pytest.mark.parametrize("version", [6, 7, 8])
def test_inconsistent_length_on_append(plain: ServerProcess, version: int) -> None:
    """-11: "If multiple requests include indicators, their indicated values MUST match"."""
    path, _ = create(plain, version, b"abc", extra=[("Upload-Length", "10")])
    other = append(plain, version, path, 3, b"", extra=[("Upload-Length", "11")])
    assert other.status == 400, other
    short = append(plain, version, path, 3, b"defg", complete=True)  # 3 + 4 != 10
    assert short.status == 400, short
    both = append(plain, version, path, 3, b"defg", complete=True, extra=[("Upload-Length", "7")])
    assert both.status == 400, both
    if version >= 7:
        for result in (other, short, both):
            assert_problem(result.final, INCONSISTENT_LENGTH)
    state = head(plain, path, version)
    assert state.get("upload-length") == "10"
    assert_complete(state, version, False)
    assert offset_of(state) == 3


# From version 7 only: up to 6 the server lets the length complete an upload, because tus-js-client's
# draft modes (5 and 6) never send Upload-Complete: ?1 for file sources (docs/decisions.md).
@pytest.mark.parametrize("version", [7, 8])
def test_offset_reaching_length_does_not_complete(plain: ServerProcess, version: int) -> None:
    """-11 Length: "the length and offset values do not determine whether an upload is complete.
    Instead, the client uses the Upload-Complete header field ... The offset could match the
    length, but the upload can still be incomplete." And Completeness: "An upload is marked as
    completed if a request ... included the Upload-Complete header field with a true value"."""
    path, created = create(plain, version, b"0123456789", extra=[("Upload-Length", "10")])
    assert_complete(created.final, version, False)
    state = head(plain, path, version)
    assert offset_of(state) == 10
    assert_complete(state, version, False)
    done = append(plain, version, path, 10, b"", complete=True)
    assert is_2xx(done.final), done
    assert_complete(head(plain, path, version), version, True)


# -- cancellation -----------------------------------------------------------------------------------


@versions
def test_delete_then_head_is_404(plain: ServerProcess, version: int) -> None:
    path, _ = create(plain, version, b"to be deleted")
    result = exchange(plain, "DELETE", path, draft(version))
    if version < 8:
        assert result.status == 204, result
    else:  # -09: "Remove requirement for 204 status code for DELETE responses"
        assert is_2xx(result.final), result
    assert head(plain, path, version).status == 404
    assert append(plain, version, path, 13, b"x").status == 404


def test_max_age_is_the_remaining_lifetime(server_factory: Callable[..., ServerProcess]) -> None:
    """-11 Limits: "max-age: Specifies the remaining lifetime of the upload resource in seconds
    counted from the generation of the response". Uploads expire --expire-after seconds after
    their last write. Here: a real server reports it; how it counts down is tested exactly with a
    fake clock in process (tests/unit/test_expiry.py), without sleeping."""
    short = server_factory(["--expire-after", "1h"])
    path, created = create(short, 8, b"abc")
    # Whole seconds, rounded down, counted from the last write: at most the hour, less the time passed.
    for response in (created.final, head(short, path, 8)):
        assert is_2xx(response), response
        parsed = limits(response)
        assert parsed is not None and set(parsed) == {"max-age"}, response
        assert 3000 < parsed["max-age"] <= 3600, response


def test_no_104_for_http_1_0_clients(plain: ServerProcess) -> None:
    """RFC 9110 section 15.2: "Since HTTP/1.0 did not define any 1xx status codes, a server MUST
    NOT send a 1xx response to an HTTP/1.0 client." (The upload itself still works.)"""
    head_bytes = build_head("POST", "/files/", draft(8, True), content_length=5).replace(b"HTTP/1.1", b"HTTP/1.0", 1)
    with Connection(plain) as conn:
        conn.send(head_bytes + b"hello")
        result = read_exchange(conn, "POST")
    assert result.interims == [], result
    assert is_2xx(result.final), result


@pytest.mark.parametrize("version", [3, 8])
def test_delete_stops_append_in_flight(plain: ServerProcess, version: int) -> None:
    """-11 Cancellation: "The server SHOULD terminate any in-flight requests to the upload resource
    before sending the response"."""
    path, _ = create(plain, version, b"x" * 100)
    with Connection(plain) as stuck:
        stuck.send(build_head("PATCH", path, append_headers(version, 100, True), content_length=100_000))
        stuck.send(b"y" * 5000)
        wait_until(lambda: data_size(plain, path) >= 5100, interval=0.01, message="5100 bytes on disk", server=plain)
        result = exchange(plain, "DELETE", path, draft(version))  # would hang for --lock-timeout
        assert is_2xx(result.final), result
        assert head(plain, path, version).status == 404


@pytest.mark.parametrize("version", [5, 8])
def test_new_append_stops_append_in_flight(plain: ServerProcess, version: int) -> None:
    """-11 Concurrency: a new append while one is ongoing SHOULD terminate the previous one; the
    client resumes from what the server stored, without asking first (it saw the offset in a 104)."""
    data = payload(30_000, 21)
    path, _ = create(plain, version)
    with Connection(plain) as stuck:
        stuck.send(build_head("PATCH", path, append_headers(version, 0, True), content_length=len(data)))
        stuck.send(data[:10_000])
        progress = Exchange()
        while read_interim(stuck, progress).get("upload-offset") != "10000":
            pass
        rest = append(plain, version, path, 10_000, data[10_000:], complete=True)
        assert is_2xx(rest.final), rest
    assert download(plain, path) == data


# -- offsets never decrease -------------------------------------------------------------------------


@versions
def test_offset_never_decreases(plain: ServerProcess, version: int) -> None:
    """-11 Offset: "the offset MUST NOT decrease" - across creation, an interrupted append, a
    conflict, HEADs and the final append, every Upload-Offset seen is >= the ones before it."""
    data = payload(20_000, 8)
    seen: list[int] = []

    def note(result: Exchange | Message) -> None:
        for message in result.messages if isinstance(result, Exchange) else [result]:
            if message.get("upload-offset") is not None:
                seen.append(offset_of(message))

    path, created = create(plain, version, data[:1000])
    note(created)
    note(head(plain, path, version))

    # An append whose client goes away after 4000 of its 10000 bytes.
    with Connection(plain) as conn:
        conn.send(build_head("PATCH", path, append_headers(version, 1000, False), content_length=10_000))
        conn.send(data[1000:5000])
        wait_until(lambda: data_size(plain, path) >= 5000, interval=0.01, message="5000 bytes on disk", server=plain)
    state = head(plain, path, version)
    note(state)
    offset = offset_of(state)
    assert 1000 <= offset <= 5000

    conflict = append(plain, version, path, 0, b"x")
    assert conflict.status == 409, conflict
    note(conflict)
    note(head(plain, path, version))

    rest = append(plain, version, path, offset, data[offset:], complete=True)
    assert is_2xx(rest.final), rest
    note(rest)
    note(head(plain, path, version))
    assert seen == sorted(seen), seen
    assert seen[-1] == len(data)
    assert download(plain, path) == data


# -- interop version header -------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["2", "9", "99", "0", "-1", "1000000"])
def test_unknown_version_is_refused(plain: ServerProcess, value: str) -> None:
    """A version the server does not speak: a clear 4xx, no upload, and no 104 (Draft Version
    Identification: "MUST NOT send a 104 ... when the interop version ... is ... mismatching")."""
    before = upload_count(plain)
    headers = [version_header(value), ("Upload-Complete", "?1"), ("Upload-Incomplete", "?0")]
    result = exchange(plain, "POST", "/files/", headers, b"hello")
    assert 400 <= result.status < 500, result
    assert result.interims == [], result
    assert result.final.get("location") is None
    assert result.final.body.strip(), result  # says why
    assert upload_count(plain) == before
    assert 400 <= exchange(plain, "OPTIONS", "/files/", [version_header(value)]).status < 500


@pytest.mark.parametrize(
    "values",
    [["abc"], ["8.0"], ['"8"'], ["?1"], ["8, 8"], ["8 8"], [":OA==:"], ["8", "8"], ["8a"], ["(8)"], [""]],
    ids=["token", "decimal", "string", "boolean", "list", "two-items", "bytes", "repeated", "junk", "inner-list",
         "empty"],
)  # fmt: skip
def test_unparseable_version_is_ignored(plain: ServerProcess, values: list[str]) -> None:
    """RFC 9651: a field that does not parse is ignored, so the request is a tus request, and
    one without Tus-Resumable gets 412 (and no 104)."""
    headers = [version_header(v) for v in values] + [("Upload-Complete", "?1")]
    result = exchange(plain, "POST", "/files/", headers, b"hello")
    assert result.status == 412, result
    assert result.interims == [], result
    assert result.final.get("tus-version") == "1.0.0", result


def test_unparseable_version_with_tus_headers_is_a_tus_request(plain: ServerProcess) -> None:
    headers = [version_header("8.0"), ("Tus-Resumable", "1.0.0"), ("Upload-Length", "5"), ("Content-Type", OCTET)]
    result = exchange(plain, "POST", "/files/", headers, b"hello")
    assert result.status == 201, result
    assert result.interims == [], result
    assert result.final.get("tus-resumable") == "1.0.0"
    assert result.final.get("upload-offset") == "5"


# -- OPTIONS ----------------------------------------------------------------------------------------


@versions
def test_options(limited: ServerProcess, version: int) -> None:
    result = exchange(limited, "OPTIONS", "/files/", draft(version))
    assert is_2xx(result.final), result
    assert_limits(result.final, version)
    if version >= 8:
        # -11: "MUST include the Accept-Patch ... The value ... MUST include the full
        # application/partial-upload media type"
        accepted = [part.split(";")[0].strip() for part in (result.final.get("accept-patch") or "").split(",")]
        assert PARTIAL in accepted, result


def test_options_v8_without_limits_says_min_size_zero(plain: ServerProcess) -> None:
    """Editors' copy (interop 8): "When responding to an OPTIONS request without the
    Upload-Complete header field, if the resource ... supports the creation of a resumable upload
    resource, the server MUST include the Upload-Limit header field ... If the server does not
    apply any limits, it MUST use min-size=0 instead of an empty header value." (-11 only said
    SHOULD, when limits apply; ``min-size=0`` satisfies both.)"""
    result = exchange(plain, "OPTIONS", "/files/", draft(8))
    parsed = limits(result.final)
    assert parsed is not None, result
    assert parsed, result


def test_options_without_any_version_header_carries_the_latest_limits(
    plain: ServerProcess, limited: ServerProcess
) -> None:
    """A client of the coming RFC sends no version header; the OPTIONS rule above still holds for
    it. A tus OPTIONS answer stays what it was besides (Tus-Version and friends)."""
    result = exchange(plain, "OPTIONS", "/files/", [])
    assert limits(result.final) == {"min-size": 0}, result
    assert result.final.get("tus-version"), result
    result = exchange(limited, "OPTIONS", "/files/", [("Tus-Resumable", "1.0.0")])
    assert_limits(result.final, 8)


# -- editors' copy (still interop 8) ---------------------------------------------------------------


def test_v8_conflict_says_upload_complete_false(plain: ServerProcess) -> None:
    """Editors' copy, Upload Append: "the server MUST reject the request with a 409 (Conflict) status
    code and the Upload-Complete header field set to false"."""
    path, _ = create(plain, 8, b"abc")
    result = append(plain, 8, path, 0, b"x")
    assert result.status == 409, result
    assert result.final.get("upload-complete") == "?0", result


@pytest.mark.parametrize("version", [8, None])
def test_v8_get_retrieves_the_offset(limited: ServerProcess, version: int | None) -> None:
    """Editors' copy, Offset Retrieval: "It can fetch the offset by sending a HEAD or GET request";
    a successful response carries what HEAD's does, and content "is unexpected": none is sent.
    Without any version header (the coming RFC), a GET stays tus' download."""
    path, _ = create(limited, 8, b"abcdef")
    headers = draft(8) if version else []
    result = exchange(limited, "GET", path, headers)
    if version is None:
        assert result.status == 409, result  # tus: an unfinished upload cannot be downloaded
        return
    assert result.status == 204 and result.final.body == b"", result
    assert offset_of(result.final) == 6
    assert_complete(result.final, 8, False)
    assert "no-store" in (result.final.get("cache-control") or ""), result
    assert_limits(result.final, 8)
    assert result.final.get("tus-resumable") is None, result
    assert is_2xx(append(limited, 8, path, 6, b"ghij", complete=True).final)
    done = exchange(limited, "GET", path, draft(8)).final
    assert done.status == 204 and done.body == b"", done
    assert offset_of(done) == 10 and done.get("upload-length") == "10"
    assert_complete(done, 8, True)
    assert exchange(limited, "GET", path).final.body == b"abcdefghij"  # no version: tus' download
    assert exchange(limited, "GET", "/files/does-not-exist", draft(8)).status == 404


@pytest.mark.parametrize("version", [3, 6, 7])
def test_get_before_v8_downloads(plain: ServerProcess, version: int) -> None:
    """-11 and before define offset retrieval by HEAD only: GET is the tus download, as before."""
    path, _ = create(plain, version, b"whole", complete=True)
    result = exchange(plain, "GET", path, draft(version))
    assert result.status == 200 and result.final.body == b"whole", result


def test_get_stops_append_in_flight(plain: ServerProcess) -> None:
    """Offset retrieval by GET settles an append in flight as HEAD does (Concurrency)."""
    data = payload(30_000, 11)
    path, _ = create(plain, 8, data[:1000])
    with Connection(plain) as stuck:
        stuck.send(build_head("PATCH", path, append_headers(8, 1000, True), content_length=len(data) - 1000))
        stuck.send(data[1000:9000])
        wait_until(lambda: data_size(plain, path) >= 9000, interval=0.01, message="9000 bytes on disk", server=plain)
        state = exchange(plain, "GET", path, draft(8)).final
        assert state.status == 204 and offset_of(state) == 9000, state
    rest = append(plain, 8, path, 9000, data[9000:], complete=True)
    assert is_2xx(rest.final), rest
    assert download(plain, path) == data


# -- ahead of the RFC: no version header at all -----------------------------------------------------


def test_rfc_client_without_any_version_header(plain: ServerProcess) -> None:
    """A client of the coming RFC sends no Upload-Draft-Interop-Version. Its requests are served by
    the latest draft's rules, not refused as tus requests without Tus-Resumable; but a draft server
    "MUST NOT send a 104 ... when the interop version ... is missing"."""
    created = exchange(plain, "POST", "/files/", [("Upload-Complete", "?0")], b"abc")
    assert created.status == 201, created
    assert created.interims == [], created
    assert created.final.get("upload-complete") == "?0", created
    assert created.final.get("tus-resumable") is None and created.final.get("upload-draft-interop-version") is None
    path = path_of(created.final.get("location") or "")

    state = exchange(plain, "HEAD", path, content_length=False).final
    assert state.status == 204 and offset_of(state) == 3, state
    assert state.get("upload-complete") == "?0" and state.get("tus-resumable") is None, state

    conflict = exchange(plain, "PATCH", path, [("Upload-Offset", "0"), ("Content-Type", PARTIAL),
                                               ("Upload-Complete", "?0")], b"x")  # fmt: skip
    assert conflict.status == 409 and conflict.final.get("upload-offset") == "3", conflict
    assert_problem(conflict.final, MISMATCHING_OFFSET)

    middle = exchange(plain, "PATCH", path, [("Upload-Offset", "3"), ("Content-Type", PARTIAL),
                                             ("Upload-Complete", "?0")], b"def", pieces=3, pause=0.1)  # fmt: skip
    assert middle.status == 204 and middle.interims == [], middle  # no progress 104s either
    last = exchange(plain, "PATCH", path, [("Upload-Offset", "6"), ("Content-Type", PARTIAL),
                                           ("Upload-Complete", "?1")], b"ghi")  # fmt: skip
    assert is_2xx(last.final) and last.final.get("upload-complete") == "?1", last
    assert download(plain, path) == b"abcdefghi"  # GET without headers: tus' download

    assert is_2xx(exchange(plain, "DELETE", path).final)
    assert exchange(plain, "HEAD", path, content_length=False).status == 404


def test_rfc_client_single_request_upload(plain: ServerProcess) -> None:
    """Upgrading a plain upload: ``Upload-Complete: ?1`` on a POST (or PUT) with the whole body."""
    for method in ("POST", "PUT"):
        result = exchange(plain, method, "/files/", [("Upload-Complete", "?1"), ("Content-Type", "text/plain")], b"hi")
        assert result.status == 201 and result.interims == [], result
        assert result.final.get("upload-complete") == "?1", result
        assert download(plain, path_of(result.final.get("location") or "")) == b"hi"


def test_rfc_append_without_upload_complete_is_400(plain: ServerProcess) -> None:
    """An append typed application/partial-upload is the RFC's: its rules apply ("The request MUST
    include the Upload-Complete header field"), not tus' 412."""
    path, _ = create(plain, 8, b"abc")
    result = exchange(plain, "PATCH", path, [("Upload-Offset", "3"), ("Content-Type", PARTIAL)], b"d")
    assert result.status == 400 and result.final.get("tus-version") is None, result
    assert offset_of(head(plain, path, 8)) == 3


@pytest.mark.parametrize("complete", [None, "?1"])
def test_tus_patch_without_tus_resumable_is_still_412(plain: ServerProcess, complete: str | None) -> None:
    """application/offset+octet-stream is tus' own: without Tus-Resumable, 412 and nothing written,
    whatever else the request carries."""
    path, _ = create(plain, 8, b"abc")
    headers = [("Upload-Offset", "3"), ("Content-Type", OCTET)]
    if complete:
        headers.append(("Upload-Complete", complete))
    result = exchange(plain, "PATCH", path, headers, b"def")
    assert result.status == 412 and result.final.get("tus-version") == "1.0.0", result
    assert offset_of(head(plain, path, 8)) == 3


# -- concurrency ------------------------------------------------------------------------------------


@versions
def test_head_stops_append_in_flight(plain: ServerProcess, version: int) -> None:
    """-11 Concurrency: a new offset retrieval while an append is ongoing SHOULD terminate the
    previous request; "the server MUST NOT send outdated information in responses when retrieving
    the offset ... the offset sent by the server MUST be accepted in a subsequent request"."""
    data = payload(50_000, 9)
    path, _ = create(plain, version, data[:2000])
    with Connection(plain) as stuck:
        stuck.send(build_head("PATCH", path, append_headers(version, 2000, True), content_length=len(data) - 2000))
        stuck.send(data[2000:12_000])
        wait_until(
            lambda: data_size(plain, path) >= 12_000, interval=0.01, message="12_000 bytes on disk", server=plain
        )

        started = time.monotonic()
        state = head(plain, path, version)  # a hang here ends in the socket timeout (TIMEOUT)
        assert time.monotonic() - started < TIMEOUT
        assert is_2xx(state), state
        assert offset_of(state) == 12_000
        assert_complete(state, version, False)

        # The stopped request got its answer (or its connection closed); either way, not a 2xx.
        if stuck.readable(TIMEOUT):
            try:
                answer = read_exchange(stuck, "PATCH")
                assert not is_2xx(answer.final), answer
            except ConnectionError:
                pass

        rest = append(plain, version, path, 12_000, data[12_000:], complete=True)
        assert is_2xx(rest.final), rest
        assert_complete(rest.final, version, True)
    assert download(plain, path) == data


@versions
def test_head_stops_creation_in_flight(plain: ServerProcess, version: int) -> None:
    """Example 1 of the draft: creation interrupted after the 104, HEAD, then append the rest."""
    data = payload(40_000, 10)
    with Connection(plain) as stuck:
        stuck.send(build_head("POST", "/files/", draft(version, True), content_length=len(data)))
        result = Exchange()
        announce = read_interim(stuck, result)
        assert announce.status == 104, result
        path = path_of(announce.get("location") or "")
        stuck.send(data[:15_000])
        wait_until(
            lambda: data_size(plain, path) >= 15_000, interval=0.01, message="15_000 bytes on disk", server=plain
        )
        state = head(plain, path, version)
        assert offset_of(state) == 15_000
        assert_complete(state, version, False)
        assert state.get("upload-length") == str(len(data))  # ?1 + Content-Length told the length
    rest = append(plain, version, path, 15_000, data[15_000:], complete=True)
    assert is_2xx(rest.final), rest
    assert download(plain, path) == data


@versions
def test_interrupted_creation_is_not_complete(plain: ServerProcess, version: int) -> None:
    """-11 Creation: "the upload resource MUST NOT be considered complete then"."""
    data = payload(8000, 11)
    with Connection(plain) as conn:
        conn.send(build_head("POST", "/files/", draft(version, True), content_length=len(data)))
        result = Exchange()
        announce = read_interim(conn, result)
        path = path_of(announce.get("location") or "")
        conn.send(data[:3000])
        wait_until(lambda: data_size(plain, path) >= 3000, interval=0.01, message="3000 bytes on disk", server=plain)
    state = head(plain, path, version)
    assert_complete(state, version, False)
    offset = offset_of(state)
    assert offset == 3000
    rest = append(plain, version, path, offset, data[offset:], complete=True)
    assert is_2xx(rest.final), rest
    assert download(plain, path) == data


# -- digests (RFC 9530) -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", [6, 8])
@pytest.mark.parametrize("algorithm", ["sha-256", "sha-512"])
def test_content_digest_on_append(plain: ServerProcess, version: int, algorithm: str) -> None:
    """-11 Content Digests: "If the digests don't match the server SHOULD consider the transfer
    failed, not append the content to the upload resource, and signal the failure"."""
    path, _ = create(plain, version, b"start:")
    good = payload(4000, 12)
    bad = append(plain, version, path, 6, good, extra=[("Content-Digest", sf_digest(algorithm, good + b"!"))])
    assert 400 <= bad.status < 500, bad
    assert offset_of(head(plain, path, version)) == 6

    ok = append(plain, version, path, 6, good, extra=[("Content-Digest", sf_digest(algorithm, good))])
    assert is_2xx(ok.final), ok
    assert offset_of(head(plain, path, version)) == 6 + len(good)


@pytest.mark.parametrize("algorithm", ["sha-256", "sha-512"])
def test_content_digest_on_creation(plain: ServerProcess, algorithm: str) -> None:
    data = payload(3000, 13)
    bad = exchange(plain, "POST", "/files/", draft(8, False, ("Content-Digest", sf_digest(algorithm, b"other"))), data)
    assert 400 <= bad.status < 500, bad
    announce = bad.messages[0] if bad.messages[0].status == 104 else bad.final
    location = announce.get("location")
    if location:
        assert offset_of(head(plain, path_of(location), 8)) == 0

    ok = exchange(plain, "POST", "/files/", draft(8, True, ("Content-Digest", sf_digest(algorithm, data))), data)
    assert is_2xx(ok.final), ok
    assert download(plain, path_of(ok.messages[0].get("location") or "")) == data


def test_content_digest_with_several_algorithms(plain: ServerProcess) -> None:
    data = payload(1000, 14)
    path, _ = create(plain, 8)
    mixed = f"{sf_digest('sha-256', data)}, {sf_digest('sha-512', b'wrong')}"
    bad = append(plain, 8, path, 0, data, extra=[("Content-Digest", mixed)])
    assert 400 <= bad.status < 500, bad  # the strongest one does not match
    assert offset_of(head(plain, path, 8)) == 0


@pytest.mark.parametrize("version", [6, 8])
@pytest.mark.parametrize("algorithm", ["sha-256", "sha-512"])
def test_repr_digest_on_completing_request(plain: ServerProcess, version: int, algorithm: str) -> None:
    """-11 Representation Digests: "Once the upload is completed, the server can compute the
    integrity digest of the received representation data and compare it ... If the digests don't
    match, the server SHOULD consider the upload failed"."""
    data = payload(6000, 15)
    path, _ = create(plain, version, data[:2500])
    middle = append(plain, version, path, 2500, data[2500:4000])
    assert is_2xx(middle.final), middle

    bad = append(plain, version, path, 4000, data[4000:], complete=True,
                 extra=[("Repr-Digest", sf_digest(algorithm, data[4000:]))])  # fmt: skip
    assert 400 <= bad.status < 500, bad
    state = head(plain, path, version)
    assert offset_of(state) == 4000
    assert_complete(state, version, False)

    good = append(plain, version, path, 4000, data[4000:], complete=True,
                  extra=[("Repr-Digest", sf_digest(algorithm, data))])  # fmt: skip
    assert is_2xx(good.final), good
    assert_complete(head(plain, path, version), version, True)
    assert download(plain, path) == data


def test_repr_digest_on_single_request_creation(plain: ServerProcess) -> None:
    data = payload(2000, 16)
    bad = exchange(plain, "POST", "/files/", draft(8, True, ("Repr-Digest", sf_digest("sha-256", b"x"))), data)
    assert 400 <= bad.status < 500, bad
    path = path_of(bad.messages[0].get("location") or "") if bad.messages[0].status == 104 else None
    if path:
        state = head(plain, path, 8)
        assert offset_of(state) == 0
        assert_complete(state, 8, False)
    good = exchange(plain, "POST", "/files/", draft(8, True, ("Repr-Digest", sf_digest("sha-256", data))), data)
    assert is_2xx(good.final), good


def test_unsupported_digest_algorithm_is_ignored(plain: ServerProcess) -> None:
    """RFC 9530 lets a recipient ignore algorithms it does not support."""
    path, _ = create(plain, 8)
    value = f"md5=:{b64(hashlib.md5(b'whatever').digest())}:"
    result = append(plain, 8, path, 0, b"data", extra=[("Content-Digest", value)])
    assert is_2xx(result.final), result


# -- a tus client and a draft client on the same server ---------------------------------------------


def test_tus_and_draft_clients_share_uploads(plain: ServerProcess) -> None:
    tus_data = payload(25_000, 17)
    draft_data = payload(12_000, 18)

    uploader = tus_client.TusClient(plain.url).uploader(
        file_stream=io.BytesIO(tus_data), chunk_size=10_000, metadata={"filename": "tus.bin"}
    )
    uploader.upload()
    tus_path = path_of(uploader.url)

    draft_path, _ = create(plain, 8, draft_data[:5000])
    done = append(plain, 8, draft_path, 5000, draft_data[5000:], complete=True)
    assert is_2xx(done.final), done

    # The draft client looks at the tus upload ...
    state = head(plain, tus_path, 8)
    assert is_2xx(state), state
    assert offset_of(state) == len(tus_data)
    assert_complete(state, 8, True)
    assert state.get("upload-length") == str(len(tus_data))
    # ... and the tus client at the draft upload.
    with httpx.Client(base_url=plain.base_url, headers={"Tus-Resumable": "1.0.0"}, timeout=TIMEOUT) as http:
        tus_state = http.head(draft_path)
        assert tus_state.status_code == 200, tus_state
        assert tus_state.headers["upload-offset"] == str(len(draft_data))
        assert tus_state.headers["upload-length"] == str(len(draft_data))
        assert tus_state.headers.get("tus-resumable") == "1.0.0"
        assert http.get(tus_path).content == tus_data
        assert http.get(draft_path).content == draft_data


def test_draft_upload_resumed_by_tus_client(plain: ServerProcess) -> None:
    data = payload(9000, 19)
    path, _ = create(plain, 8, data[:4000])
    with httpx.Client(base_url=plain.base_url, headers={"Tus-Resumable": "1.0.0"}, timeout=TIMEOUT) as http:
        state = http.head(path)
        assert state.status_code == 200
        assert state.headers["upload-offset"] == "4000"
        assert state.headers.get("upload-defer-length") == "1"
        patched = http.patch(
            path,
            content=data[4000:],
            headers={"Upload-Offset": "4000", "Upload-Length": str(len(data)), "Content-Type": OCTET},
        )
        assert patched.status_code == 204, patched.text
    state = head(plain, path, 8)
    assert offset_of(state) == len(data)
    assert_complete(state, 8, True)
    assert download(plain, path) == data


def test_tus_upload_resumed_by_draft_client(plain: ServerProcess) -> None:
    data = payload(7000, 20)
    with httpx.Client(base_url=plain.base_url, headers={"Tus-Resumable": "1.0.0"}, timeout=TIMEOUT) as http:
        created = http.post("/files/", headers={"Upload-Length": str(len(data))})
        assert created.status_code == 201
        path = path_of(created.headers["location"])
        first = http.patch(path, content=data[:3000], headers={"Upload-Offset": "0", "Content-Type": OCTET})
        assert first.status_code == 204
    state = head(plain, path, 8)
    assert offset_of(state) == 3000
    assert_complete(state, 8, False)
    assert state.get("upload-length") == str(len(data))
    rest = append(plain, 8, path, 3000, data[3000:], complete=True)
    assert is_2xx(rest.final), rest
    assert download(plain, path) == data
