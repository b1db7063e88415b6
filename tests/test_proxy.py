"""Client address, scheme and host: believed from proxy headers only for trusted proxies."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st
from starlette.datastructures import Headers

from consent_middleware.proxy import parse_ip, resolve_peer
from tests.conftest import http_scope

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32"))


def peer(client: str, headers: dict[str, str], trusted: tuple[object, ...] = TRUSTED):  # type: ignore[no-untyped-def]
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    scope = http_scope(headers=raw, client=(client, 1234))
    return resolve_peer(scope, Headers(scope=scope), trusted)  # type: ignore[arg-type]


def test_direct_client_is_the_asgi_client() -> None:
    result = peer("198.51.100.9", {"X-Forwarded-For": "1.2.3.4", "X-Forwarded-Proto": "https"})
    assert result.client_ip == "198.51.100.9"
    assert result.scheme == "http"


def test_trusted_proxy_supplies_client_scheme_and_host() -> None:
    result = peer(
        "10.0.0.2",
        {
            "X-Forwarded-For": "198.51.100.9, 10.0.0.5",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "www.example.be",
        },
    )
    assert (result.client_ip, result.scheme, result.host) == ("198.51.100.9", "https", "www.example.be")
    assert result.origin == "https://www.example.be"


def test_spoofed_left_entries_are_not_believed() -> None:
    result = peer("10.0.0.2", {"X-Forwarded-For": "6.6.6.6, 198.51.100.9"})
    assert result.client_ip == "198.51.100.9"


def test_forwarded_header_with_several_hops() -> None:
    result = peer(
        "10.0.0.2",
        {
            "Forwarded": 'for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=http, '
            "for=203.0.113.5;proto=https;host=example.be"
        },
    )
    assert result.client_ip == "203.0.113.5"
    assert result.scheme == "https"
    assert result.host == "example.be"


def test_ipv4_mapped_ipv6_reads_as_ipv4() -> None:
    assert str(parse_ip("::ffff:192.0.2.1")) == "192.0.2.1"
    assert peer("::ffff:198.51.100.9", {}).client_ip == "198.51.100.9"


def test_garbage_in_the_chain_stops_the_walk() -> None:
    result = peer("10.0.0.2", {"X-Forwarded-For": "198.51.100.9, unknown"})
    assert result.client_ip == "10.0.0.2"


@given(st.text(max_size=300), st.text(max_size=300))
def test_any_proxy_headers_never_raise(forwarded: str, forwarded_for: str) -> None:
    headers = Headers(
        raw=[
            (b"forwarded", forwarded.encode("utf-8", "replace")),
            (b"x-forwarded-for", forwarded_for.encode("utf-8", "replace")),
        ]
    )
    scope = http_scope(client=("10.1.1.1", 1))
    result = resolve_peer(scope, headers, TRUSTED)
    assert result.scheme in ("http", "https")
