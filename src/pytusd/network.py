"""TLS and network timeout flags of the ``pytusd`` command, with tusd's names, defaults and meanings.

tusd (cmd/tusd/cli/serve.go) defines the TLS modes:

- ``tls12`` (default): TLS 1.2 or newer; for TLS 1.2 only ECDHE key exchange with AES-GCM or
  ChaCha20-Poly1305 (Mozilla's "intermediate" list); TLS 1.3 with its usual suites;
- ``tls12-strong``: TLS 1.2 only, with ECDHE and AES-256-GCM alone;
- ``tls13``: TLS 1.3 only.

``--network-timeout`` bounds each wait for the client: a request head must be complete that long
after it began (or the connection was opened), an idle keep-alive connection closes after it, a
client that reads nothing of a response that long is reset (pytusd.serving.deadline), and a body
that sends nothing for that long is stopped (what arrived is kept; see pytusd.idle).
``--shutdown-timeout`` bounds a graceful stop.
"""

from __future__ import annotations

import functools
import inspect
import ssl
from typing import Any

from pytusd.flags import Flag

TLS_MODES = ("tls12", "tls12-strong", "tls13")

NETWORK_FLAGS: tuple[Flag, ...] = (
    Flag(
        "tls-certificate", "str", "",
        "PEM file with the x509 certificate (followed by intermediate ones) to serve HTTPS with",
    ),
    Flag("tls-key", "str", "", "PEM file with the key of --tls-certificate"),
    Flag("tls-mode", "str", "tls12", "TLS versions and ciphers: tls12, tls12-strong or tls13 (as tusd)"),
    Flag(
        "network-timeout", "duration", 60.0,
        "a request head not complete, a body sending nothing, or a keep-alive connection idle this long is cut",
    ),
    Flag("shutdown-timeout", "duration", 10.0, "on SIGTERM/SIGINT, wait this long for requests, then exit"),
)  # fmt: skip

#: OpenSSL names of the TLS 1.2 suites of tusd's tls12 mode, in its (the server's) order.
TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)
#: ... and of tls12-strong.
TLS12_STRONG_CIPHERS = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"


def tls_context(certificate: str, key: str, mode: str) -> ssl.SSLContext:
    """The server's TLS context for one of tusd's modes (ValueError for an unknown mode)."""
    if mode not in TLS_MODES:
        raise ValueError(f"--tls-mode must be one of {', '.join(TLS_MODES)}, not {mode!r}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if mode == "tls13":
        context.minimum_version = ssl.TLSVersion.TLSv1_3
    elif mode == "tls12-strong":
        # As tusd: TLS 1.3 is off here (its suites cannot be narrowed to AES-256 alone).
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(TLS12_STRONG_CIPHERS)
    else:
        context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    context.set_alpn_protocols(["http/1.1"])  # only HTTP/1.1 is served
    context.load_cert_chain(certificate, key)
    return context


def _uvicorn_tls_factory(config: Any, default: Any, *, certificate: str, key: str, mode: str) -> ssl.SSLContext:
    """uvicorn's ``ssl_context_factory``: called in each worker process (so it must pickle)."""
    return tls_context(certificate, key, mode)


def uvicorn_supports_tls_factory() -> bool:
    import uvicorn

    return "ssl_context_factory" in inspect.signature(uvicorn.Config).parameters


def check_network_settings(settings: dict[str, Any]) -> None:
    """Raise ValueError for network settings that cannot work (before any worker starts)."""
    if settings["network_timeout"] <= 0:
        raise ValueError("--network-timeout must be > 0")
    if settings["shutdown_timeout"] < 0:
        raise ValueError("--shutdown-timeout must be >= 0")
    certificate, key = settings["tls_certificate"], settings["tls_key"]
    if settings["tls_mode"] not in TLS_MODES:
        raise ValueError(f"--tls-mode must be one of {', '.join(TLS_MODES)}")
    if bool(certificate) != bool(key):
        raise ValueError("--tls-certificate and --tls-key go together")
    if certificate:
        if not uvicorn_supports_tls_factory():
            raise ValueError("--tls-certificate needs uvicorn 0.47 or newer (its ssl_context_factory)")
        try:
            tls_context(certificate, key, settings["tls_mode"])
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot use --tls-certificate/--tls-key: {exc}") from None


def uses_tls(settings: dict[str, Any]) -> bool:
    return bool(settings["tls_certificate"])


def uvicorn_options(settings: dict[str, Any]) -> dict[str, Any]:
    """What the network flags mean to ``uvicorn.run`` (the body timeout is the app's: Config)."""
    options: dict[str, Any] = {
        "timeout_keep_alive": settings["network_timeout"],
        "timeout_graceful_shutdown": settings["shutdown_timeout"],
    }
    if uses_tls(settings):
        options["ssl_context_factory"] = functools.partial(
            _uvicorn_tls_factory,
            certificate=settings["tls_certificate"],
            key=settings["tls_key"],
            mode=settings["tls_mode"],
        )
    return options
