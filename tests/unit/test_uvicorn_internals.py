"""The check that uvicorn still has the internals pytusd's serving layer relies on.

A uvicorn release that renames one must fail at import, naming the version and what is missing,
not break uploads at run time. Here the check runs against stand-ins that lack one piece each.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http import flow_control, httptools_impl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from pytusd.serving import uvicorn_internals
from pytusd.serving.uvicorn_internals import UvicornMismatch, missing_internals, require

REAL: dict[str, Any] = {
    "protocol": HttpToolsProtocol,
    "cycle": RequestResponseCycle,
    "status_line": httptools_impl.STATUS_LINE,
    "high_water": flow_control.HIGH_WATER_LIMIT,
    "flow": flow_control.FlowControl,
}


def without(cls: type, name: str) -> type:
    """A copy of ``cls`` (same methods, same bases) that lacks ``name``."""
    namespace = {k: v for k, v in vars(cls).items() if k not in (name, "__dict__", "__weakref__")}
    return type(cls.__name__, cls.__bases__, namespace)


def with_method(cls: type, name: str, method: Any) -> type:
    return type(cls.__name__, (cls,), {name: method})


def test_the_installed_uvicorn_has_everything() -> None:
    assert missing_internals(**REAL) == []


@pytest.mark.parametrize("name", ["on_body", "on_headers_complete", "send_400_response", "_should_upgrade"])
def test_a_missing_protocol_method_is_named(name: str) -> None:
    assert missing_internals(**{**REAL, "protocol": without(HttpToolsProtocol, name)}) == [
        f"HttpToolsProtocol.{name}()"
    ]


def test_a_protocol_method_with_another_signature_is_named() -> None:
    def on_header(self: Any, name: bytes) -> None:
        """A stand-in that lost its value argument."""

    assert missing_internals(**{**REAL, "protocol": with_method(HttpToolsProtocol, "on_header", on_header)}) == [
        "HttpToolsProtocol.on_header() with 2 argument(s)"
    ]


def test_a_protocol_that_no_longer_takes_uvicorns_keyword_arguments_is_named() -> None:
    def __init__(self: Any, config: Any, server_state: Any) -> None:
        """A stand-in without uvicorn's other keyword arguments."""

    missing = missing_internals(**{**REAL, "protocol": with_method(HttpToolsProtocol, "__init__", __init__)})
    assert missing == ["HttpToolsProtocol(app_state=...)", "HttpToolsProtocol(_loop=...)"]


def test_a_cycle_attribute_no_longer_set_is_named() -> None:
    """Instance attributes are found in the names the class's code uses: here, one renamed."""

    class Cycle:  # uvicorn's, but ``more_body`` renamed
        def __init__(self) -> None:
            self.body = bytearray()
            self.more_request_body = True

        async def receive(self) -> Any:
            return {"type": "http.request", "body": bytes(self.body), "more_body": self.more_request_body}

    stand_in = type("RequestResponseCycle", (Cycle,), {})
    missing = missing_internals(**{**REAL, "cycle": stand_in})
    assert "RequestResponseCycle.more_body" in missing
    assert "RequestResponseCycle.body" not in missing


def test_a_cycle_whose_receive_is_not_a_coroutine_is_named() -> None:
    def receive(self: Any) -> None:
        """A stand-in that is a plain function, not a coroutine."""

    missing = missing_internals(**{**REAL, "cycle": with_method(RequestResponseCycle, "receive", receive)})
    assert missing == ["async RequestResponseCycle.receive()"]


def test_missing_classes_are_named() -> None:
    missing = missing_internals(**{**REAL, "protocol": None, "cycle": None, "flow": None})
    assert missing == [
        "httptools_impl.HttpToolsProtocol",
        "httptools_impl.RequestResponseCycle",
        "flow_control.FlowControl",
    ]


def test_missing_constants_are_named() -> None:
    missing = missing_internals(**{**REAL, "status_line": None, "high_water": None})
    assert missing == [
        "httptools_impl.STATUS_LINE (a dict of status code -> status line)",
        "flow_control.HIGH_WATER_LIMIT (an int)",
    ]


def test_require_names_the_version_and_what_it_lacks() -> None:
    require([], "0.55.0")  # nothing missing: nothing raised
    with pytest.raises(UvicornMismatch) as info:
        require(["HttpToolsProtocol.on_body()", "RequestResponseCycle.more_body"], "0.61.0")
    message = str(info.value)
    assert "uvicorn 0.61.0" in message
    assert "HttpToolsProtocol.on_body(); RequestResponseCycle.more_body" in message
    assert "<0.60" in message
    assert isinstance(info.value, ImportError)


def test_the_check_fires_at_import() -> None:
    """A uvicorn without what the serving layer needs: importing pytusd.serving fails, and says why."""
    code = (
        "from uvicorn.protocols.http import httptools_impl\n"
        "del httptools_impl.RequestResponseCycle.receive\n"
        "import pytusd.serving\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("pytusd.serving.uvicorn_internals.UvicornMismatch:"), result.stderr
    assert f"uvicorn {uvicorn.__version__}" in last and "async RequestResponseCycle.receive()" in last


def test_the_module_is_the_only_one_importing_uvicorns_protocols() -> None:
    """Every reach into uvicorn's internals stays in uvicorn_internals."""
    package = pathlib.Path(uvicorn_internals.__file__).parent
    importing = re.compile(r"^\s*(from|import)\s+uvicorn\b", re.MULTILINE)
    users = sorted(module.name for module in package.glob("*.py") if importing.search(module.read_text()))
    assert users == ["uvicorn_internals.py"]
