"""Shared test helpers: a secret, tiny inline apps, and a raw ASGI driver."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The 24 official languages of the EU, the languages the banner ships in.
EU_LANGUAGES = (
    "bg", "cs", "da", "de", "el", "en", "es", "et", "fi", "fr", "ga", "hr",
    "hu", "it", "lt", "lv", "mt", "nl", "pl", "pt", "ro", "sk", "sl", "sv",
)  # fmt: skip
SECRET = "test-secret-key-0123456789-abcdefghijklmnop"
OLD_SECRET = "old-secret-key-0123456789-abcdefghijklmnopq"
ORIGIN = "http://testserver"

settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


#: What the middleware injects: the Consent Mode snippet after <head>, and after <body> the block that
#: runs from the banner stylesheet to the banner script (banner or settings control).
INJECTED = re.compile(
    rb"<script(?: nonce=\"[^\"]*\")?>window\.dataLayer=window\.dataLayer\|\|\[\];.*?</script>"
    rb"|<link rel=\"stylesheet\" href=\"/_consent/static/banner\.[0-9a-f]+\.css\".*?"
    rb"<script type=\"module\" src=\"/_consent/static/banner\.[0-9a-f]+\.js\"[^>]*></script>\n?",
    re.S,
)


def without_injections(page: bytes) -> bytes:
    return INJECTED.sub(b"", page)


def html_page(body: str = "<p>Hello</p>") -> bytes:
    return (
        f'<!doctype html><html><head><title>T</title></head><body class="page">{body}</body></html>'.encode()
    )


def raw_app(*messages: Message) -> ASGIApp:
    """An app that sends exactly ``messages``."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        for message in messages:
            await send(dict(message))

    return app


def html_app(
    body: bytes | None = None, *, headers: list[tuple[bytes, bytes]] | None = None, status: int = 200
) -> ASGIApp:
    content = html_page() if body is None else body
    start_headers = (
        headers
        if headers is not None
        else [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"content-length", str(len(content)).encode()),
        ]
    )
    return raw_app(
        {"type": "http.response.start", "status": status, "headers": start_headers},
        {"type": "http.response.body", "body": content},
    )


def http_scope(
    path: str = "/", method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None, **extra: Any
) -> Scope:
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *(headers or [])],
        "client": ("203.0.113.7", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    scope.update(extra)
    return scope


async def drive(app: ASGIApp, scope: Scope, body: bytes = b"") -> list[Message]:
    """Call an ASGI app directly, as a server would, and collect what it sends."""
    sent: list[Message] = []
    requests = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        return requests.pop(0) if requests else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def body_of(messages: list[Message]) -> bytes:
    return b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")


def headers_of(messages: list[Message]) -> dict[str, list[str]]:
    start = next(m for m in messages if m["type"] == "http.response.start")
    found: dict[str, list[str]] = {}
    for name, value in start["headers"]:
        found.setdefault(name.decode().lower(), []).append(value.decode())
    return found


@pytest.fixture(autouse=True)
def in_its_own_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default consent log (``sqlite:///consent-log.sqlite3``) and spool land in a fresh folder."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


MiddlewareFactory = Callable[..., ASGIApp]
