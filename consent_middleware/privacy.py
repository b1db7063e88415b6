"""Device data and the full IP address, withheld from the app until the device category is granted
(SPEC §4): a truncated address, a generic ``User-Agent``, no client hints or forwarding headers.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from user_agents import parse as parse_user_agent

__all__ = [
    "ACCEPT_CH",
    "GENERIC_USER_AGENT",
    "WITHHELD_HEADERS",
    "Device",
    "HeaderReducer",
    "device_of",
    "is_bot",
    "reduce_headers",
    "truncate_ip",
]

#: Parsing time grows with the string; a real browser's user agent is far shorter than this.
MAX_USER_AGENT_CHARS: Final = 512
GENERIC_USER_AGENT: Final = b"Mozilla/5.0 (withheld until consent)"
GENERIC_USER_AGENT_HEADER: Final = (b"user-agent", GENERIC_USER_AGENT)
#: Headers the app does not see before consent (besides the reduced User-Agent).
WITHHELD_HEADERS: Final = ("x-forwarded-for", "forwarded", "x-real-ip")
CLIENT_HINT_PREFIX: Final = b"sec-ch-ua"
#: Asked for once the device category is granted: viewport width and pixel ratio.
ACCEPT_CH: Final = "Sec-CH-Viewport-Width, Sec-CH-DPR"
#: Request shapes (header names in order) HeaderReducer remembers, up to this many bytes of names each.
MAX_SHAPES: Final = 256
MAX_SHAPE_BYTES: Final = 1024
IPV4_PREFIX: Final = 24
IPV6_PREFIX: Final = 48


@dataclass(frozen=True, slots=True)
class Device:
    """The parsed user agent (``request.state.consent.device``), only after consent."""

    browser: str
    browser_version: str
    os: str
    os_version: str
    device: str
    brand: str | None
    model: str | None
    is_mobile: bool
    is_tablet: bool
    is_pc: bool
    is_touch_capable: bool
    is_bot: bool


def truncate_ip(ip: str | None) -> str | None:
    """The network part only: IPv4 to /24, IPv6 to /48 (``203.0.113.7`` → ``203.0.113.0``)."""
    return None if ip is None else _truncated(ip)


@functools.lru_cache(maxsize=4096)
def _truncated(ip: str) -> str | None:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    prefix = IPV4_PREFIX if address.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


@functools.lru_cache(maxsize=4096)
def _parse(user_agent: str) -> Device:
    parsed = parse_user_agent(user_agent)
    return Device(
        browser=parsed.browser.family,
        browser_version=parsed.browser.version_string,
        os=parsed.os.family,
        os_version=parsed.os.version_string,
        device=parsed.device.family,
        brand=parsed.device.brand,
        model=parsed.device.model,
        is_mobile=parsed.is_mobile,
        is_tablet=parsed.is_tablet,
        is_pc=parsed.is_pc,
        is_touch_capable=parsed.is_touch_capable,
        is_bot=parsed.is_bot,
    )


def device_of(user_agent: str) -> Device:
    """The parsed user agent, from its first 512 characters, cached per string."""
    return _parse(user_agent[:MAX_USER_AGENT_CHARS])


def is_bot(user_agent: str) -> bool:
    return bool(user_agent) and device_of(user_agent).is_bot


def reduce_headers(
    headers: Iterable[tuple[bytes, bytes]], withheld: Collection[bytes]
) -> list[tuple[bytes, bytes]]:
    """The request headers an app sees before consent (names are lower case in ASGI)."""
    reduced: list[tuple[bytes, bytes]] = []
    append = reduced.append  # a plain loop: cheaper than a comprehension here
    for pair in headers:
        name = pair[0]
        if name == b"user-agent":
            append((name, GENERIC_USER_AGENT))
        elif reaches_app(name, withheld):
            append(pair)
    return reduced


def reaches_app(name: bytes, withheld: Collection[bytes]) -> bool:
    """Whether a request header reaches the app before consent (the user agent does, reduced)."""
    return name == b"user-agent" or (name not in withheld and not name.startswith(CLIENT_HINT_PREFIX))


class HeaderReducer:
    """:func:`reduce_headers` for one set of withheld names, on every request before consent, at C
    speed for most requests: it remembers the shapes of the requests (their header names, in order)
    and how each is reduced: the positions of the headers kept (None: all; Chromium's client hints
    are dropped) and the user agent's; browsers of one kind send one shape."""

    def __init__(self, withheld: Iterable[bytes]) -> None:
        self._withheld = frozenset(withheld)
        # A request's header names, as the keys of its header dict (the names in reverse order, when
        # none repeats) -> the positions of the headers kept (None: all), the user agent's position
        # among them (None: it has none).
        self._shapes: dict[tuple[bytes, ...], tuple[tuple[int, ...] | None, int | None]] = {}

    def reduce(
        self, headers: Sequence[tuple[bytes, bytes]], fields: Mapping[bytes, bytes]
    ) -> list[tuple[bytes, bytes]]:
        """``headers`` reduced; ``fields`` is their dict (each name to its first value), built from
        this very list: equal lengths then mean that no name repeats."""
        no_repeats = len(fields) == len(headers)
        if no_repeats:
            shape = tuple(fields)
            known = self._shapes.get(shape)
            if known is not None:
                kept, agent = known
                reduced = list(headers) if kept is None else list(map(headers.__getitem__, kept))
                if agent is not None:
                    reduced[agent] = GENERIC_USER_AGENT_HEADER
                return reduced
        reduced = reduce_headers(headers, self._withheld)
        if no_repeats and sum(map(len, shape)) <= MAX_SHAPE_BYTES:
            if len(self._shapes) >= MAX_SHAPES:
                self._shapes.clear()  # at once: dropping the oldest one by one rescans the dict
            self._shapes[shape] = self._plan([pair[0] for pair in headers])
        return reduced

    def _plan(self, names: list[bytes]) -> tuple[tuple[int, ...] | None, int | None]:
        """How headers with these names (none repeats) are reduced: the positions kept, the user
        agent's among them."""
        kept = tuple(index for index, name in enumerate(names) if reaches_app(name, self._withheld))
        agent = next((position for position, index in enumerate(kept) if names[index] == b"user-agent"), None)
        return (None if len(kept) == len(names) else kept), agent
