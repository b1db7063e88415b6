"""Faults (issue 8, "Hardening"): a bad geolocation database, an app that raises, a client that leaves.

- A missing or corrupt geolocation database (a file of random bytes, a real MMDB cut short, a real one
  whose search tree is garbage) is a single warning at start-up naming the file and saying what
  happens; requests are served and the banner language comes from the browser.
- An app that raises (before ``http.response.start``, after it, or in the middle of an HTML body being
  rewritten): the same exception comes out of the middleware, and through uvicorn the client sees what
  it sees from the same app without the middleware (status, complete or cut body, connection kept).
- A client that closes its socket in the middle of a long streamed HTML page: the app's generator is
  cancelled (its ``finally:`` runs), other requests are served, and nothing hangs.

uvicorn runs in this process (``uvicorn.Server`` in a thread, ``log_config=None`` so the test's logging
is left alone), so the app's generator can report through a ``threading.Event``. Every wait is bounded
and waits for a real condition.
"""

from __future__ import annotations

import http.client
import logging
import os
import socket
import threading
import traceback
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import anyio.lowlevel
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet
from starlette.responses import StreamingResponse
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consent_middleware import ConsentMiddleware
from consent_middleware.geo import GeoLocator
from tests.conftest import SECRET, html_app, http_scope
from tests.geodata import BELGIAN_IP, write_country_db
from tests.servers import ServerThread

SUPPORTED: Final = ["en", "nl", "fr", "de"]
BANNER: Final = b'id="consent-banner"'
#: Bound on every wait: server start and stop, a socket read, the generator's clean-up.
TIMEOUT: Final = 15.0


# -- a missing or corrupt geolocation database -------------------------------------------------------


def bad_database(kind: str, folder: Path) -> Path:
    """A geolocation database path that cannot be used, of the given ``kind``."""
    path = folder / f"{kind}.mmdb"
    if kind == "missing":
        return path
    if kind == "random-bytes":
        path.write_bytes(os.urandom(4096))
        return path
    real = write_country_db(folder / "real.mmdb").read_bytes()
    if kind == "truncated":  # cut short, as by an interrupted copy: its metadata (at the end) is gone
        path.write_bytes(real[: len(real) // 2])
        return path
    assert kind == "corrupt-tree"  # metadata intact, search tree and data overwritten with garbage
    metadata = real.rindex(b"\xab\xcd\xefMaxMind.com")
    path.write_bytes(os.urandom(metadata) + real[metadata:])
    return path


def geo_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "consent_middleware" and record.levelno >= logging.WARNING
    ]


@pytest.mark.parametrize("kind", ["missing", "random-bytes", "truncated", "corrupt-tree"])
def test_an_unusable_geolocation_database_is_one_warning_and_the_browser_decides(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = bad_database(kind, tmp_path)
    with caplog.at_level(logging.WARNING, logger="consent_middleware"):
        app = ConsentMiddleware(
            html_app(), secret_key=SECRET, geoip_database=path, languages=SUPPORTED, consent_log=None
        )
        at_start_up = geo_warnings(caplog)
        # A Belgian address: with a working database, "en-US" would get Dutch (BE's most spoken language).
        client = TestClient(app, client=(BELGIAN_IP, 50000))
        for accept_language, expected in [("en-US,en;q=0.9", "en"), ("fr-BE,fr;q=0.9", "fr"), ("ja", "en")]:
            headers = {"Accept-Language": accept_language}
            page = client.get("/", headers=headers)
            assert page.status_code == 200
            assert f'<div id="consent-banner" lang="{expected}"'.encode() in page.content
            assert client.get("/_consent", headers=headers).json()["language"] == expected
        decided = client.post(
            "/_consent", json={"decision": "reject_all"}, headers={"Origin": "http://testserver"}
        )
        assert decided.status_code == 200
        assert client.get("/_consent/cookies").status_code == 200
    assert len(at_start_up) == 1, [record.getMessage() for record in at_start_up]
    message = at_start_up[0].getMessage()
    assert str(path) in message
    assert "geolocation is off" in message
    assert "language comes from the browser" in message
    # Said once, at start-up: not again on the first request nor on any later one.
    assert geo_warnings(caplog) == at_start_up


def test_the_same_requests_with_a_working_database_are_located(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The control for the test above: a real database makes "en-US" from Belgium Dutch."""
    path = write_country_db(tmp_path / "real.mmdb")
    with caplog.at_level(logging.WARNING, logger="consent_middleware"):
        app = ConsentMiddleware(
            html_app(), secret_key=SECRET, geoip_database=path, languages=SUPPORTED, consent_log=None
        )
        client = TestClient(app, client=(BELGIAN_IP, 50000))
        assert (
            client.get("/_consent", headers={"Accept-Language": "en-US,en;q=0.9"}).json()["language"] == "nl"
        )
    assert geo_warnings(caplog) == []


def test_an_ipv4_only_database_is_not_taken_for_a_corrupt_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Asking an IPv4-only file (some DB-IP and older files) for an IPv6 address is a ValueError in
    maxminddb: that is no corruption, only an address the file cannot know."""
    writer = MMDBWriter(ip_version=4, database_type="Test-Country", languages=["en"], description={"en": "4"})
    writer.insert_network(IPSet(["81.246.0.0/16"]), {"country": {"iso_code": "BE", "names": {"en": "BE"}}})
    path = tmp_path / "ipv4.mmdb"
    writer.to_db_file(str(path))
    with caplog.at_level(logging.WARNING, logger="consent_middleware"):
        locator = GeoLocator(path)
        assert locator.available
        assert locator.country(BELGIAN_IP) == "BE"
        assert locator.country("2a02:a03f:1234::7") is None
    assert geo_warnings(caplog) == []


def test_a_bad_replacement_keeps_the_database_in_use_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_country_db(tmp_path / "country.mmdb", {"BE": ["81.246.0.0/16"]})
    locator = GeoLocator(path)
    assert locator.country(BELGIAN_IP) == "BE"
    cut = tmp_path / "cut.mmdb"
    cut.write_bytes(path.read_bytes()[:700])
    os.replace(cut, path)  # as a botched `geo update` would, atomically
    with caplog.at_level(logging.WARNING, logger="consent_middleware"):
        for _ in range(3):
            locator._next_check = 0.0  # the periodic file check is due (every 10 s in service)
            assert locator.country("81.246.1.2") == "BE"  # the old file stays open and in use
    warnings = geo_warnings(caplog)
    assert len(warnings) == 1, [record.getMessage() for record in warnings]
    assert str(path) in warnings[0].getMessage()
    assert "stays in use" in warnings[0].getMessage()
    good = write_country_db(tmp_path / "good.mmdb", {"NL": ["81.246.0.0/16"]})
    os.replace(good, path)
    locator._next_check = 0.0
    assert locator.country("81.246.3.4") == "NL"


def test_a_database_that_appears_after_start_up_is_picked_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "later.mmdb"
    with caplog.at_level(logging.WARNING, logger="consent_middleware"):
        locator = GeoLocator(path)
        assert locator.country(BELGIAN_IP) is None
        write_country_db(path)
        locator._next_check = 0.0
        assert locator.country("81.246.9.9") == "BE"
    assert len(geo_warnings(caplog)) == 1  # the start-up one


# -- an app that raises --------------------------------------------------------------------------------


class AppFailure(Exception):
    """What the apps below raise; each test checks that this very object comes out."""


#: Where the app raises: before ``http.response.start``, after it (no body yet), in the middle of the body.
WHERE: Final = ("before-start", "after-start", "mid-body")
#: What it was sending: an HTML page the middleware rewrites, or JSON it passes through.
KINDS: Final = {"html": b"text/html; charset=utf-8", "json": b"application/json"}
FIRST_CHUNK: Final = {
    "html": b"<!doctype html><html><head><title>T</title></head><body><p>first part</p>" + b"x" * 2000,
    "json": b'{"items": [' + b'"x", ' * 400,
}


def raising_app(where: str, kind: str, error: AppFailure) -> ASGIApp:
    """An app that fails at ``where`` while sending a ``kind`` response (streamed: no Content-Length)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if where == "before-start":
            raise error
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", KINDS[kind])]}
        )
        if where == "after-start":
            raise error
        await send({"type": "http.response.body", "body": FIRST_CHUNK[kind], "more_body": True})
        raise error

    return app


def wrapped(app: ASGIApp) -> ConsentMiddleware:
    return ConsentMiddleware(app, secret_key=SECRET, geoip_database=None, consent_log=None)


async def failing_call(app: ASGIApp) -> tuple[list[Message], BaseException]:
    """Drive ``app`` as a server would; what it sent, and what it raised."""
    sent: list[Message] = []
    received = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> Message:
        return received.pop(0) if received else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    try:
        await app(http_scope(), receive, send)
    except BaseException as raised:
        return sent, raised
    raise AssertionError("the app did not raise")


@pytest.mark.anyio
@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("where", WHERE)
async def test_the_apps_exception_comes_out_of_the_middleware_unchanged(where: str, kind: str) -> None:
    error = AppFailure(f"failed {where}")
    sent, raised = await failing_call(wrapped(raising_app(where, kind, error)))
    assert raised is error  # the very object: not wrapped, replaced, or put in an exception group
    assert raised.__traceback__ is not None
    frames = [frame.name for frame in traceback.extract_tb(raised.__traceback__)]
    assert frames[-1] == "app", frames  # raised where the app raised it
    # The middleware answers nothing of its own (no 500 page, no error body): what to do is the server's.
    assert all(message.get("status", 200) == 200 for message in sent)
    if where == "mid-body":
        assert [message["type"] for message in sent] == ["http.response.start", "http.response.body"]


@pytest.mark.anyio
@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("where", WHERE)
async def test_the_server_gets_the_messages_it_gets_without_the_middleware(where: str, kind: str) -> None:
    """What a server does with a raising app depends on whether the response had started (uvicorn: a
    500 if not, else it drops the connection): the middleware must not change that. It holds an HTML
    page's ``http.response.start`` until the first body chunk; if the app raises in between, the held
    start must still reach the server before the exception does."""
    bare_sent, _ = await failing_call(raising_app(where, kind, AppFailure(where)))
    sent, _ = await failing_call(wrapped(raising_app(where, kind, AppFailure(where))))
    assert [message["type"] for message in sent] == [message["type"] for message in bare_sent]


@dataclass(frozen=True)
class Seen:
    """What an HTTP client sees of one GET: the status, whether the body came whole, and whether the
    connection could carry another request afterwards."""

    status: int | None
    complete: bool
    kept_alive: bool
    body_start: bytes


def get(port: int, path: str = "/") -> Seen:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        try:
            connection.request("GET", path, headers={"Accept-Language": "en"})
            response = connection.getresponse()
        except (OSError, http.client.HTTPException):
            return Seen(None, False, False, b"")
        try:
            body, complete = response.read(), True
        except http.client.IncompleteRead as cut:
            body, complete = cut.partial, False
        except (OSError, http.client.HTTPException):
            body, complete = b"", False
        kept_alive = False
        if complete and not response.will_close:
            try:  # a second request on the same connection
                connection.request("GET", "/second", headers={"Accept-Language": "en"})
                again = connection.getresponse()
                again.read()
                kept_alive = again.status == 200
            except (OSError, http.client.HTTPException):
                kept_alive = False
        return Seen(response.status, complete, kept_alive, body[:200])
    finally:
        connection.close()


def routed(failing: ASGIApp) -> ASGIApp:
    """``failing`` on ``/``; a small page on any other path (the second request on a connection)."""
    other = html_app()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await (failing if scope["path"] == "/" else other)(scope, receive, send)

    return app


def uvicorn_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name.startswith("uvicorn.error")]


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("where", WHERE)
def test_through_uvicorn_the_client_sees_what_it_sees_without_the_middleware(
    where: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    seen: dict[str, Seen] = {}
    logged: dict[str, list[BaseException | None]] = {}
    for name in ("bare", "middleware"):
        error = AppFailure(f"{name} failed {where}")
        app = routed(raising_app(where, kind, error))
        caplog.clear()
        with (
            caplog.at_level(logging.ERROR, logger="uvicorn.error"),
            ServerThread(app if name == "bare" else wrapped(app)) as server,
        ):
            seen[name] = get(server.port)
        logged[name] = [record.exc_info[1] if record.exc_info else None for record in uvicorn_errors(caplog)]
        # uvicorn reported the app's own exception, once.
        assert logged[name] == [error], (name, logged[name])
    bare, middleware = seen["bare"], seen["middleware"]
    assert (middleware.status, middleware.complete, middleware.kept_alive) == (
        bare.status,
        bare.complete,
        bare.kept_alive,
    ), f"without the middleware: {bare}; with it: {middleware}"
    if where == "before-start":
        assert middleware.body_start == bare.body_start == b"Internal Server Error"


# -- a client that leaves in the middle of a streamed page -----------------------------------------------


@dataclass
class StreamProbe:
    """What the streamed page's generator reports from its ``finally:`` block."""

    started: threading.Event
    ended: threading.Event
    chunks: int = 0
    how: str = ""


STREAM_CHUNKS: Final = 200_000  # ~200 MB if nobody stopped it: far more than any socket buffer


def streaming_site(probe: StreamProbe) -> ASGIApp:
    """``/stream``: a long HTML page streamed by an async generator; anything else: a small page."""
    small = html_app()

    async def page() -> AsyncIterator[bytes]:
        probe.started.set()
        probe.how = "running"
        try:
            yield b"<!doctype html><html><head><title>Stream</title></head><body>"
            for number in range(STREAM_CHUNKS):
                await anyio.lowlevel.checkpoint()  # as a page built from a database would await it
                probe.chunks = number + 1
                yield b'<p class="row">row %d <a href="/item/%d">item</a></p>' % (number, number) + b" " * 900
            yield b"</body></html>"
            probe.how = "finished"
        except BaseException as exc:
            probe.how = type(exc).__name__
            raise
        finally:
            probe.ended.set()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/stream":
            response = StreamingResponse(page(), media_type="text/html")
            await response(scope, receive, send)
        else:
            await small(scope, receive, send)

    return app


def read_some_then_leave(port: int, wanted: int) -> bytes:
    """GET ``/stream``, read at least ``wanted`` bytes, and close the socket without reading more."""
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as client:
        client.sendall(b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Language: en\r\n\r\n")
        while len(received) < wanted:
            data = client.recv(65536)
            if not data:
                break
            received += data
        # An abortive close (RST), as a browser tab closed mid-page often gives, with unread data queued.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    return bytes(received)


@pytest.mark.parametrize("mounted", ["middleware", "bare"])
def test_a_client_leaving_mid_stream_cancels_the_page_and_the_server_carries_on(
    mounted: str, caplog: pytest.LogCaptureFixture
) -> None:
    probe = StreamProbe(threading.Event(), threading.Event())
    site = streaming_site(probe)
    app = wrapped(site) if mounted == "middleware" else site
    with caplog.at_level(logging.WARNING), ServerThread(app) as server:
        received = read_some_then_leave(server.port, 64 * 1024)
        assert received.startswith(b"HTTP/1.1 200 "), received[:200]
        assert b"transfer-encoding: chunked" in received.lower().split(b"\r\n\r\n", 1)[0]
        assert (BANNER in received) == (mounted == "middleware")
        # The generator is stopped (cancelled through Starlette's disconnect listener), not run to its end.
        assert probe.ended.wait(TIMEOUT), (
            f"the page's generator was still running {TIMEOUT:.0f} s after the client left "
            f"({probe.chunks} chunks made)"
        )
        assert probe.how in ("CancelledError", "GeneratorExit"), probe.how
        assert probe.chunks < STREAM_CHUNKS
        made = probe.chunks
        # The server serves others, and the next streamed page too.
        after = get(server.port, "/after")
        assert (after.status, after.complete, after.kept_alive) == (200, True, True)
        probe.started.clear()
        probe.ended.clear()
        again = read_some_then_leave(server.port, 8 * 1024)
        assert again.startswith(b"HTTP/1.1 200 ")
        assert probe.ended.wait(TIMEOUT), "the second streamed page was not stopped either"
    assert probe.chunks < STREAM_CHUNKS
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], errors  # a client leaving is no error of the app's
    print(f"\n{mounted}: the generator stopped after {made} chunks ({probe.how})")  # shown with -s


@pytest.fixture(autouse=True)
def _no_stray_threads() -> Iterator[None]:
    """Every uvicorn thread a test started has stopped when it ends."""
    before = {thread.ident for thread in threading.enumerate()}
    yield
    stray = [t.name for t in threading.enumerate() if t.ident not in before and t.name == "uvicorn"]
    assert stray == [], stray
