"""--tls-certificate/--tls-key/--tls-mode on a real server, probed with Python's ssl client.

The modes are tusd's (cmd/tusd/cli/serve.go): tls12 takes TLS 1.2 with ECDHE and AEAD suites and
TLS 1.3; tls12-strong only TLS 1.2 with ECDHE and AES-256-GCM; tls13 only TLS 1.3. Uploads over
TLS are stored byte-exact (the body cannot be spliced from a TLS socket: it is read), and the
upload URLs the server hands out are https.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from tests.integration.test_locking import OCTET, payload
from tests.support.server import ServerProcess

TUS = {"Tus-Resumable": "1.0.0"}
MODES = ("tls12", "tls12-strong", "tls13")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed RSA certificate for 127.0.0.1 (RSA: so suites with RSA key exchange are candidates)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def servers(
    certificate: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServerProcess]]:
    cert, key = certificate
    started: dict[str, ServerProcess] = {}
    try:
        for mode in MODES:
            args = ["--tls-certificate", str(cert), "--tls-key", str(key), "--tls-mode", mode]
            started[mode] = ServerProcess(tmp_path_factory.mktemp(f"data-{mode}"), args).start()
        yield started
    finally:
        for server in started.values():
            server.kill()


def handshake(
    server: ServerProcess,
    cert: Path,
    *,
    versions: tuple[ssl.TLSVersion, ssl.TLSVersion] = (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3),
    ciphers: str | None = None,
) -> tuple[str, str]:
    """Connect with a client limited to ``versions`` (and TLS 1.2 ``ciphers``); (version, cipher) agreed.

    Raises ssl.SSLError if the server refuses."""
    context = ssl.create_default_context(cafile=str(cert))
    context.minimum_version, context.maximum_version = versions
    if ciphers is not None:
        context.set_ciphers(ciphers)
    raw = socket.create_connection((server.host, server.port), timeout=10)
    with raw, context.wrap_socket(raw, server_hostname=server.host) as tls:
        version, cipher = tls.version(), tls.cipher()
        assert version is not None and cipher is not None
        return version, cipher[0]


TLS12 = (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)
TLS13 = (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3)
#: (TLS 1.2 suite a client insists on, modes that must accept it)
SUITES = [
    ("ECDHE-RSA-AES128-GCM-SHA256", {"tls12"}),
    ("ECDHE-RSA-CHACHA20-POLY1305", {"tls12"}),
    ("ECDHE-RSA-AES256-GCM-SHA384", {"tls12", "tls12-strong"}),
    ("AES256-GCM-SHA384", set()),  # no forward secrecy (RSA key exchange)
    ("ECDHE-RSA-AES256-SHA384", set()),  # CBC
    ("ECDHE-RSA-AES128-SHA", set()),  # CBC, SHA-1
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("suite", "accepted_by"), SUITES, ids=[suite for suite, _ in SUITES])
def test_tls12_suites(
    servers: dict[str, ServerProcess], certificate: tuple[Path, Path], mode: str, suite: str, accepted_by: set[str]
) -> None:
    cert = certificate[0]
    if mode in accepted_by:
        assert handshake(servers[mode], cert, versions=TLS12, ciphers=suite) == ("TLSv1.2", suite)
    else:
        with pytest.raises(ssl.SSLError):
            handshake(servers[mode], cert, versions=TLS12, ciphers=suite)


@pytest.mark.parametrize(("mode", "tls12", "tls13"), [("tls12", True, True), ("tls12-strong", True, False),
                                                      ("tls13", False, True)])  # fmt: skip
def test_protocol_versions(
    servers: dict[str, ServerProcess], certificate: tuple[Path, Path], mode: str, tls12: bool, tls13: bool
) -> None:
    cert = certificate[0]
    for versions, accepted, name in ((TLS12, tls12, "TLSv1.2"), (TLS13, tls13, "TLSv1.3")):
        if accepted:
            assert handshake(servers[mode], cert, versions=versions)[0] == name
        else:
            with pytest.raises(ssl.SSLError):
                handshake(servers[mode], cert, versions=versions)


@pytest.mark.parametrize("mode", MODES)
def test_upload_over_tls_is_byte_exact_with_https_urls(
    servers: dict[str, ServerProcess], certificate: tuple[Path, Path], mode: str
) -> None:
    server = servers[mode]
    size = 3_000_000  # long enough that a plain socket would splice it
    data = payload(size, 11)
    trust = ssl.create_default_context(cafile=str(certificate[0]))
    with httpx.Client(verify=trust, headers=TUS, timeout=30.0) as client:
        created = client.post(server.url, headers={"Upload-Length": str(size)})
        assert created.status_code == 201, created.text
        location = created.headers["location"]
        assert location.startswith(f"https://{server.host}:{server.port}/files/"), location
        half = size // 2
        for offset, piece in ((0, data[:half]), (half, data[half:])):
            patched = client.patch(
                location, content=piece, headers={"Upload-Offset": str(offset), "Content-Type": OCTET}
            )
            assert patched.status_code == 204, patched.text
        assert client.head(location).headers["upload-offset"] == str(size)
        assert client.get(location).content == data
    if server.backend == "file":
        assert (server.upload_dir / urlsplit(location).path.rsplit("/", 1)[1]).read_bytes() == data


def test_tuspy_upload_over_tls(servers: dict[str, ServerProcess], tmp_path: Path) -> None:
    from tusclient import client as tus_client

    server = servers["tls12"]
    source = tmp_path / "source.bin"
    data = payload(2_500_000, 12)
    source.write_bytes(data)
    # tuspy takes no CA file: the handshake and modes are checked above, the bytes here.
    uploader = tus_client.TusClient(server.url).uploader(str(source), chunk_size=1_000_000, verify_tls_cert=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # urllib3's InsecureRequestWarning
        uploader.upload()
    assert uploader.url is not None and uploader.url.startswith("https://"), uploader.url
    with httpx.Client(verify=False, headers=TUS) as client:
        assert client.get(uploader.url).content == data


def test_the_printed_url_is_https(servers: dict[str, ServerProcess]) -> None:
    server = servers["tls12"]
    assert f"serving uploads on https://{server.host}:{server.port}/files/" in server.log()


def test_bad_tls_flags_are_refused(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = str(certificate[0]), str(certificate[1])
    bad = (
        ["--tls-certificate", cert, "--tls-key", key, "--tls-mode", "tls11"],
        ["--tls-certificate", cert],
        ["--tls-key", key],
        ["--tls-certificate", str(tmp_path / "missing.pem"), "--tls-key", key],
        ["--tls-certificate", cert, "--tls-key", cert],  # a certificate is no key
    )
    for args in bad:
        out = subprocess.run([sys.executable, "-m", "pytusd", "--upload-dir", str(tmp_path / "d"), *args],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
        assert out.returncode == 2, (args, out.stderr)
        assert "tls" in out.stderr, out.stderr


def test_tls_with_workers(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    """Each worker process builds its own TLS context (the factory travels to it pickled)."""
    cert, key = certificate
    args = ["--tls-certificate", str(cert), "--tls-key", str(key), "--tls-mode", "tls13", "--workers", "2"]
    server = ServerProcess(tmp_path / "data", args).start()
    try:
        trust = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(verify=trust, headers=TUS, timeout=30.0) as client:
            for _ in range(4):  # new connections: both workers get some
                created = client.post(server.url, headers={"Upload-Length": "3", "Connection": "close"})
                assert created.status_code == 201, created.text
                assert created.headers["location"].startswith("https://")
    finally:
        server.kill()
