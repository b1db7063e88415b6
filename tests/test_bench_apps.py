"""The benchmark's variants (benchmarks/apps.py): the limit variant adds what the middleware adds."""

from __future__ import annotations

import asyncio
from pathlib import Path

from benchmarks.apps import SITES, call, consent, injection_limit, request_scope


def test_the_limit_variant_sends_the_middlewares_page_headers_and_length() -> None:
    site = SITES["starlette"]()
    bare_headers, bare_body = asyncio.run(call(site, request_scope("/page")))
    limit_headers, limit_body = asyncio.run(call(injection_limit(site), request_scope("/page")))
    consent_headers, consent_body = asyncio.run(
        call(consent(site, Path("/nonexistent")), request_scope("/page"))
    )
    assert len(limit_body) == len(consent_body) > len(bare_body)
    assert {name for name, _ in limit_headers} > {name for name, _ in bare_headers}  # Vary, Cache-Control
    assert sorted(limit_headers) == sorted(consent_headers)
    assert (b"content-length", b"%d" % len(limit_body)) in limit_headers


def test_the_limit_variant_leaves_a_json_response_alone() -> None:
    site = SITES["starlette"]()
    bare = asyncio.run(call(site, request_scope("/json")))
    assert asyncio.run(call(injection_limit(site), request_scope("/json"))) == bare
