"""Cost of reading a request's consent state and language, per request, and of verifying the
consent cookie.

Run from the repository root: ``python -m benchmarks.bench_language``. It times
``VisitReader.read`` plus reading the language (as an HTML page does: peer, cookies, decision
cookie, geolocation, language) on a few typical requests with warm caches, for a visitor already
known by its identifying headers and for one worked out anew, ``resolve_language``
alone, a cached geolocation lookup, and ``DecisionCodec.decode`` on a cookie value seen for the
first time (HMAC and JSON) and on one seen before (cached by value, the time window still checked),
each against an empty loop of the same size.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from consent_middleware.config import ConsentConfig
from consent_middleware.cookies import CookieRules
from consent_middleware.language import resolve_language
from consent_middleware.request import VisitReader
from consent_middleware.state import Decision, DecisionCodec, new_consent_id

ROUNDS = 7
CALLS = 20_000


def best_per_call(function: Callable[[], object]) -> float:
    """Minimum over rounds of the mean time per call, in microseconds."""
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(CALLS):
            function()
        best = min(best, (time.perf_counter() - start) / CALLS)
    return best * 1e6


def read_with_language(reader: VisitReader, request_scope: dict[str, object]) -> str:
    return reader.read(request_scope)[0].state.language


def afresh_with_language(reader: VisitReader, request_scope: dict[str, Any]) -> str:
    """A visitor worked out anew (the first request with these headers), its parts' caches warm."""
    fields = dict(reversed(request_scope["headers"]))
    return reader.visitor(fields, request_scope["client"][0], None).state.language


def scope(client: str, headers: dict[str, str]) -> dict[str, object]:
    return {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": b"",
        "scheme": "https",
        "client": (client, 50000),
        "server": ("example.be", 443),
        "headers": [
            (b"host", b"example.be"),
            *((k.lower().encode(), v.encode()) for k, v in headers.items()),
        ],
    }


def main() -> None:
    config = ConsentConfig(
        secret_key=("benchmark-secret-key-0123456789-abcdef",), languages=("en", "nl", "fr", "de")
    )
    codec = DecisionCodec.for_config(config)
    rules = CookieRules(registry=config.registry, block_unknown=config.block_unknown_cookies)
    reader = VisitReader(config=config, codec=codec, rules=rules)
    cookie = codec.encode(
        Decision(new_consent_id(), "1", frozenset({"analytics"}), int(time.time()), "custom")
    )
    browser = {
        "Accept-Language": "fr-BE,fr;q=0.9,en;q=0.5",
        "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
    }
    cases = {
        "new visitor, Belgian IP, geolocated": scope("81.246.0.1", browser),
        "returning visitor (signed cookie), geolocated": scope(
            "81.246.0.1", {**browser, "Cookie": f"consent={cookie}"}
        ),
        "explicit language cookie": scope("81.246.0.1", {**browser, "Cookie": "consent_lang=de"}),
    }
    empty = best_per_call(lambda: None)
    print(f"geolocation database: {reader.geo.credit}")
    print(f"{'case':62} {'µs/request':>11}")
    for name, request_scope in cases.items():
        read = functools.partial(read_with_language, reader, request_scope)
        read()  # warm the caches
        print(f"{name + ', visitor known':62} {best_per_call(read) - empty:11.2f}")
        afresh = functools.partial(afresh_with_language, reader, request_scope)
        print(f"{name + ', worked out':62} {best_per_call(afresh) - empty:11.2f}")
    languages = ("en", "nl", "fr", "de")
    resolve = best_per_call(
        lambda: resolve_language(
            explicit=None,
            accept_language="fr-BE,fr;q=0.9,en;q=0.5",
            supported=languages,
            default="en",
            country="BE",
        )
    )
    print(f"{'resolve_language alone (country known)':62} {resolve - empty:11.2f}")
    lookup = best_per_call(lambda: reader.geo.country("81.246.0.1"))
    print(f"{'geolocation lookup, cached':62} {lookup - empty:11.2f}")
    fresh = [
        codec.encode(Decision(new_consent_id(), "1", frozenset({"analytics"}), int(time.time()), "custom"))
        for _ in range(ROUNDS * CALLS)
    ]
    values = iter(fresh)
    first_sight = best_per_call(lambda: codec.decode(next(values)))
    print(f"{'consent cookie verified, first sight':62} {first_sight - empty:11.2f}")
    again = best_per_call(lambda: codec.decode(cookie))
    print(f"{'consent cookie verified, seen before (cached)':62} {again - empty:11.2f}")


if __name__ == "__main__":
    main()
