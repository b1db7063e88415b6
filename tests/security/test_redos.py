"""ReDoS and quadratic-time probes: 100 KB request headers, each handled in under 50 ms (SECURITY.md §7).

The bound is generous (a request takes about a millisecond): it catches super-linear parsing, not a
slow machine. Each probe is the best of five requests, each with a value that differs in its first
bytes, so no per-value cache answers (other test runs share this machine). The peer is a trusted
proxy, so ``X-Forwarded-For`` and ``Forwarded`` are really parsed.
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import drive, http_scope
from tests.security.helpers import VISITOR, middleware

pytestmark = pytest.mark.anyio

SIZE = 100_000
BOUND = 0.05
TRIES = 5
FORM = [(b"content-type", b"application/x-www-form-urlencoded")]


def sized(unit: str, tail: str = "") -> str:
    return (unit * (SIZE // len(unit) + 1))[: SIZE - len(tail)] + tail


SHAPES: dict[str, list[str]] = {
    "Accept-Language": [
        sized("a=1; "),
        sized("en-"),
        sized("en-US;q=0.9, "),
        sized("en;q="),
        sized(" ", "en"),
        sized(","),
        sized("a"),
        sized("en-" + "a" * 8),
        sized("*;q=0.", "1"),
    ],
    "User-Agent": [
        sized("Mozilla/5.0 ("),
        sized("a"),
        sized(" "),
        sized("("),
        sized("Mozilla/5.0 (Linux; Android 1."),
        sized("Googlebot/"),
        sized("AppleWebKit/537.36 (KHTML, like Gecko) "),
        sized("0."),
    ],
    "Cookie": [
        sized("a=1; "),
        sized(";"),
        sized("="),
        sized('a="'),
        sized("_ga_x=1; "),
        sized("consent=", "A"),
        sized("consent_lang=nl; "),
    ],
    "X-Forwarded-For": [
        sized("203.0.113.9, "),
        sized(","),
        sized("["),
        sized("::"),
        sized("a"),
        sized("1."),
        sized("[::1]:80, "),
    ],
    "Forwarded": [
        sized("for=203.0.113.9;"),
        sized('for="\\"'),
        sized("for="),
        sized(";"),
        sized(","),
        sized('for="[' + ":"),
        sized("a"),
        sized(" "),
        sized("for=203.0.113.9;proto=https;host=example.com, "),
    ],
}
CASES = [(name, shape) for name, shapes in SHAPES.items() for shape in shapes]


async def best_of(path: str, name: str, value: str, *, method: str = "GET", body: bytes = b"") -> float:
    """The fastest of a few requests (one ASGI call each, as a server makes it: the HTTP client's own
    handling of a 100 KB header is not timed), each with a value unique in its first bytes."""
    app = middleware(trusted_proxies=[VISITOR[0]], consent_log=None)
    timings = []
    for attempt in range(TRIES + 1):  # the first is a warm-up: imports, template caches
        unique = f"{attempt}-{time.perf_counter_ns()}"
        varied = (unique + value[len(unique) :]).encode("latin-1")
        headers = [(name.lower().encode(), varied), *FORM]
        scope = http_scope(path, method, headers, client=VISITOR)
        started = time.perf_counter()
        messages = await drive(app, scope, body)
        elapsed = time.perf_counter() - started
        assert messages[0]["status"] in (200, 303, 400, 403), messages[0]["status"]
        if attempt:
            timings.append(elapsed)
    return min(timings)


@pytest.mark.parametrize(
    ("name", "value"), CASES, ids=[f"{n}-{i}" for n, s in SHAPES.items() for i in range(len(s))]
)
@pytest.mark.parametrize("path", ["/", "/_consent", "/_consent/preferences"])
async def test_a_100_kb_header_is_handled_quickly(name: str, value: str, path: str) -> None:
    assert len(value) == SIZE
    elapsed = await best_of(path, name, value)
    assert elapsed < BOUND, f"{name} on {path}: {elapsed * 1000:.1f} ms"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Origin", sized("http://testserver")),
        ("Referer", sized("http://testserver/")),
        ("Referer", sized("http://[")),
        ("Referer", sized("http://testserver/", "?" + "&" * 10)),
        ("Sec-Fetch-Site", sized("cross-site")),
    ],
)
async def test_a_100_kb_origin_or_referer_on_a_post_is_handled_quickly(name: str, value: str) -> None:
    elapsed = await best_of("/_consent", name, value, method="POST", body=b"decision=reject_all")
    assert elapsed < BOUND, f"{name}: {elapsed * 1000:.1f} ms"


async def test_a_16_kb_form_is_refused_quickly() -> None:
    body = b"decision=" + b"accept_all" * 1600
    elapsed = await best_of("/_consent", "Origin", "http://testserver", method="POST", body=body)
    assert elapsed < BOUND, f"{elapsed * 1000:.1f} ms"
