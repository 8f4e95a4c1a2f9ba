"""Server settings shared by the handler, the ASGI app and the command line."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Config:
    #: Public path under which uploads live; always starts and ends with '/'.
    base_path: str = "/files/"
    #: Largest upload in bytes; 0 means no limit.
    max_size: int = 0
    #: Seconds after the last write at which an unfinished upload expires; 0 means never.
    expire_after: float = 0.0
    #: How often the sweeper looks for expired uploads (seconds).
    expire_interval: float = 60.0
    #: Trust X-Forwarded-Host/-Proto and Forwarded when building absolute URLs.
    behind_proxy: bool = False
    #: Regular expression a whole browser Origin must match (else 403); None disables CORS.
    cors_allow_origin: str | None = ".*"
    cors_allow_credentials: bool = False
    cors_max_age: int = 86400
    #: Comma-separated names added to the default CORS lists (as tusd's flags).
    cors_allow_methods: str = ""
    cors_allow_headers: str = ""
    cors_expose_headers: str = ""
    disable_download: bool = False
    disable_termination: bool = False
    disable_concatenation: bool = False
    #: Seconds a request waits for another request holding the upload to let go before 423.
    lock_timeout: float = 20.0
    #: A request holding an upload whose body received bytes this recently keeps it against newer
    #: requests (they wait); one quiet for longer is stopped (see pytusd.handover).
    lock_grace: float = 0.5
    #: Send 1xx interim responses where the web server can (104 to IETF draft clients). Off behind
    #: a proxy that takes a 1xx for the final response (Debian 12's nginx 1.22 does).
    interim_responses: bool = True
    #: Seconds between 104 progress responses to IETF draft clients while a body arrives; 0 disables.
    progress_interval: float = 1.0
    #: A body whose client sends nothing for this many seconds is stopped (saving what arrived);
    #: 0 disables the check (pytusd.idle).
    network_timeout: float = 60.0

    def __post_init__(self) -> None:
        path = "/" + self.base_path.strip("/") + "/"
        self.base_path = "/" if path == "//" else path
        if self.max_size < 0:
            raise ValueError("max_size must be >= 0")
        if self.network_timeout < 0:
            raise ValueError("network_timeout must be >= 0")
        if self.expire_after < 0:
            raise ValueError("expire_after must be >= 0")
