"""The CORS flags (tusd's names and defaults) and the policy they make, without a server."""

from __future__ import annotations

import pytest

from pytusd.protocol.cors import ALLOW_METHODS, CORS_FLAGS, CorsPolicy, cors_settings


def settings(**values: object) -> dict[str, object]:
    return {**{flag.name.replace("-", "_"): flag.default for flag in CORS_FLAGS}, **values}


def test_tusd_names_and_defaults() -> None:
    defaults = {flag.name: flag.default for flag in CORS_FLAGS}
    assert defaults == {
        "disable-cors": False,
        "cors-allow-origin": ".*",
        "cors-allow-credentials": False,
        "cors-allow-methods": "",
        "cors-allow-headers": "",
        "cors-max-age": 86400,
        "cors-expose-headers": "",
    }


def test_refuses_only_cors_requests_of_other_origins() -> None:
    policy = CorsPolicy(r"https://a\.example")
    assert not policy.refuses(None) and not policy.refuses("")
    assert not policy.refuses("https://a.example")
    assert policy.refuses("https://b.example") and policy.refuses("junk")
    off = CorsPolicy(None)
    assert not off.enabled and not off.refuses("https://b.example") and not off.refuses("junk")


def test_lists_extend_the_defaults() -> None:
    policy = CorsPolicy(".*", allow_methods=" PUT ,, PROPFIND", expose_headers="X-Id")
    preflight = dict(policy.headers("https://a.example", preflight=True))
    assert preflight["access-control-allow-methods"] == ALLOW_METHODS + ", PUT, PROPFIND"
    simple = dict(policy.headers("https://a.example", preflight=False))
    assert simple["access-control-expose-headers"].endswith(", X-Id")


def test_settings() -> None:
    assert cors_settings(settings())["cors_allow_origin"] == ".*"
    assert cors_settings(settings(disable_cors=True))["cors_allow_origin"] is None
    assert cors_settings(settings(cors_allow_origin=""))["cors_allow_origin"] is None


@pytest.mark.parametrize(
    "values",
    [
        {"cors_allow_origin": "["},
        {"cors_allow_methods": "GET;"},
        {"cors_allow_headers": "X\nY"},
        {"cors_expose_headers": "a b"},
        {"cors_max_age": -5},
    ],
)
def test_bad_settings(values: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="--cors-"):
        cors_settings(settings(**values))
