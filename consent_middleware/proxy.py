"""Who is the client, and which scheme and host did they ask for (SPEC §4, "Client IP").

``X-Forwarded-*`` and ``Forwarded`` are believed only when the direct peer is one of the
``trusted_proxies``; a chain of proxies is walked from the right, stopping at the first address
that is not trusted.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from starlette.datastructures import Headers
from starlette.types import Scope

__all__ = ["Peer", "normal_ip", "parse_ip", "resolve_peer"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: A proxy chain longer than this is cut: no real deployment has more hops.
MAX_HOPS: Final = 32
MAX_HEADER_CHARS: Final = 4096
FORWARDED_PAIR: Final = re.compile(r'\s*([A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)\s*')
HOST_VALUE: Final = re.compile(r"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")


@dataclass(frozen=True, slots=True)
class Peer:
    """The client address (as text, IPv4-mapped IPv6 unwrapped) and the scheme and host it used."""

    client_ip: str | None
    scheme: str
    host: str

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def https(self) -> bool:
        return self.scheme == "https"


def parse_ip(value: str) -> IPAddress | None:
    """An address from a header or the ASGI client: brackets, ports and IPv4 mapping handled."""
    text = value.strip().strip('"')
    if text.startswith("["):  # [v6] or [v6]:port
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=4096)
def normal_ip(value: object) -> str | None:
    """:func:`parse_ip` as text, cached: the ASGI client address of every request goes through it."""
    address = parse_ip(str(value))
    return str(address) if address else None


def _trusted(address: IPAddress | None, networks: Sequence[Network]) -> bool:
    return address is not None and any(address in network for network in networks)


def _forwarded_elements(header: str) -> list[dict[str, str]]:
    """RFC 7239 elements, each a dict of lower-cased keys to unquoted values."""
    elements = []
    for element in header[:MAX_HEADER_CHARS].split(",")[-MAX_HOPS:]:
        pairs: dict[str, str] = {}
        for pair in element.split(";"):
            match = FORWARDED_PAIR.fullmatch(pair)
            if match:
                value = match.group(2)
                if value.startswith('"'):
                    value = re.sub(r"\\(.)", r"\1", value[1:-1])
                pairs[match.group(1).lower()] = value
        elements.append(pairs)
    return elements


def _last_value(header: str | None) -> str | None:
    if not header:
        return None
    value = header[-MAX_HEADER_CHARS:].rsplit(",", 1)[-1].strip()
    return value or None


def resolve_peer(scope: Scope, headers: Headers, trusted_proxies: Sequence[Network]) -> Peer:
    client = scope.get("client")
    peer_ip = parse_ip(str(client[0])) if client else None
    scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
    host = headers.get("host", "")
    if not _trusted(peer_ip, trusted_proxies):
        return Peer(str(peer_ip) if peer_ip else None, scheme, _clean_host(host, scope))

    forwarded = headers.get("forwarded")
    proxy_host: str | None
    if forwarded:
        elements = _forwarded_elements(forwarded)
        chain = [element.get("for", "") for element in elements]
        newest = elements[-1] if elements else {}
        proxy_scheme, proxy_host = newest.get("proto"), newest.get("host")
    else:
        chain = headers.get("x-forwarded-for", "")[:MAX_HEADER_CHARS].split(",")[-MAX_HOPS:]
        proxy_scheme = _last_value(headers.get("x-forwarded-proto"))
        proxy_host = _last_value(headers.get("x-forwarded-host"))

    client_ip = peer_ip
    for hop in reversed(chain):
        address = parse_ip(hop)
        if address is None:
            break  # "unknown", an obfuscated name, or garbage: stop believing the chain here
        client_ip = address
        if not _trusted(address, trusted_proxies):
            break
    if proxy_scheme and proxy_scheme.lower() in ("http", "https"):
        scheme = proxy_scheme.lower()
    if proxy_host and HOST_VALUE.fullmatch(proxy_host):
        host = proxy_host
    return Peer(str(client_ip) if client_ip else None, scheme, _clean_host(host, scope))


def _clean_host(host: str, scope: Scope) -> str:
    if HOST_VALUE.fullmatch(host):
        return host.lower()
    server = scope.get("server")
    if server and server[0]:
        port = server[1]
        return f"{server[0]}:{port}" if port not in (None, 80, 443) else str(server[0])
    return "localhost"
