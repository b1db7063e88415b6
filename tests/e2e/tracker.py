"""A local stand-in for Google Analytics (and YouTube's embed host), at the network level.

Chromium is started with ``--host-resolver-rules`` that map each tracker host to its own port on
127.0.0.1, served here; so whatever the browser does with such a host opens a TCP connection here:
a script, an image, a beacon, an iframe, and also a ``preconnect`` (TCP and TLS handshake, no
request) that no request interception would see. Pages ask for ``https://...``: the server peeks
at each connection's first byte and speaks TLS (a throwaway self-signed certificate made with
``openssl``; the browser runs with ``--ignore-certificate-errors``) or plain HTTP. Every connection
is recorded when it is accepted (so an attempt counts even when no request or no handshake
follows), with the TLS server name once the handshake tells it, and every request as a ``Hit``.

A ``<link rel="dns-prefetch">`` of a mapped host never reaches the wire (the mapping answers it):
the tests find it in Chromium's own network log instead (``netlog.py``), where it shows as a
speculative resolution of the host's port.

Two more names, ``preconnect.control.test`` and ``dns-prefetch.control.test``, get ports of their
own: a control page hints at them, to prove that this browser does preconnect and prefetch, so
that seeing none for the trackers means something.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

#: The hosts mapped to the stand-in: Google's tag and collection hosts, and YouTube's embed host.
TRACKER_HOSTS = (
    "www.googletagmanager.com",
    "www.google-analytics.com",
    "region1.google-analytics.com",
    "analytics.google.com",
    "www.youtube-nocookie.com",
)
GOOGLE_ANALYTICS_HOSTS = TRACKER_HOSTS[:4]
#: Hinted at by the control page only (see the module's docstring).
PRECONNECT_CONTROL = "preconnect.control.test"
DNS_PREFETCH_CONTROL = "dns-prefetch.control.test"
CONTROL_HOSTS = (PRECONNECT_CONTROL, DNS_PREFETCH_CONTROL)
GTAG_JS = (Path(__file__).parent / "fixtures" / "gtag.js").read_bytes()
#: How long a connection may take to send its first byte or a request before it is dropped.
IDLE_TIMEOUT = 10.0
TLS_RECORD_HANDSHAKE = 0x16


@dataclass(frozen=True)
class Connection:
    """One TCP connection the browser opened to a mapped host."""

    number: int
    host: str
    peer_port: int
    tls: bool = False
    #: The host the browser named in the TLS handshake (SNI), ``None`` for plain HTTP or before it.
    server_name: str | None = None


@dataclass(frozen=True)
class Hit:
    """One HTTP request that reached the stand-in."""

    connection: int
    method: str
    host: str
    path: str
    query: str
    referer: str
    cookie: str

    @property
    def url(self) -> str:
        return f"https://{self.host}{self.path}" + (f"?{self.query}" if self.query else "")


class Traffic:
    """Everything the stand-in saw, in order; thread-safe, with waits on a condition."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.connections: list[Connection] = []
        self.hits: list[Hit] = []
        #: The peer ports of the tests' own barrier connections, which are not traffic.
        self._barriers: set[tuple[str, int]] = set()

    def opened(self, host: str, peer_port: int) -> int:
        with self.changed:
            number = len(self.connections)
            self.connections.append(Connection(number, host, peer_port))
            self.changed.notify_all()
            return number

    def named(self, number: int, *, tls: bool, server_name: str | None) -> None:
        with self.changed:
            old = self.connections[number]
            self.connections[number] = Connection(number, old.host, old.peer_port, tls, server_name)
            self.changed.notify_all()

    def hit(self, hit: Hit) -> None:
        with self.changed:
            self.hits.append(hit)
            self.changed.notify_all()

    def mark(self) -> tuple[int, int]:
        """Where the record stands now: pass it to ``since`` to see what came after."""
        with self.changed:
            return len(self.connections), len(self.hits)

    def since(self, mark: tuple[int, int] = (0, 0)) -> tuple[list[Connection], list[Hit]]:
        """The connections and requests after ``mark``, the barriers and the control hosts left out."""
        with self.changed:
            connections = [
                c
                for c in self.connections[mark[0] :]
                if (c.host, c.peer_port) not in self._barriers and c.host not in CONTROL_HOSTS
            ]
            return connections, [h for h in self.hits[mark[1] :] if h.host not in CONTROL_HOSTS]

    def wait(self, what: str, found: Any, timeout: float = 15.0) -> Any:
        """``found()``'s first true value, waiting on the condition for new traffic (never polling)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not (result := found()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {what} within {timeout}s; saw:\n{describe(*self.since())}")
                self.changed.wait(remaining)
            return result

    def wait_for_hit(self, host: str, path: str, *, after: tuple[int, int] = (0, 0)) -> Hit:
        def found() -> Hit | None:
            return next((h for h in self.hits[after[1] :] if h.host == host and h.path == path), None)

        hit: Hit = self.wait(f"request for https://{host}{path}", found)
        return hit

    def wait_for_connection(self, host: str, *, after: tuple[int, int] = (0, 0)) -> Connection:
        def found() -> Connection | None:
            return next((c for c in self.connections[after[0] :] if c.host == host), None)

        connection: Connection = self.wait(f"connection to {host}", found)
        return connection

    def barrier(self, host: str, port: int) -> None:
        """Return once every connection the browser opened to ``port`` so far has been recorded.

        A connection waits in the listening socket's backlog until the server accepts it, and the
        server accepts (and records) in order: so once our own connection is recorded, every one
        before it is too.
        """
        with socket.create_connection(("127.0.0.1", port), timeout=IDLE_TIMEOUT) as probe:
            mine = (host, int(probe.getsockname()[1]))
            with self.changed:
                self._barriers.add(mine)
            self.wait(
                f"barrier connection to {host}",
                lambda: any((c.host, c.peer_port) == mine for c in self.connections),
            )


def describe(connections: list[Connection], hits: list[Hit]) -> str:
    """A readable account of tracker traffic, for assertion messages."""
    lines = [
        f"connection #{c.number} to {c.host}: " + (f"TLS, server name {c.server_name}" if c.tls else "no TLS")
        for c in connections
    ]
    lines += [f"request on #{h.connection}: {h.method} {h.url}" for h in hits]
    return "\n".join(lines) or "nothing"


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for the mapped hosts, made with the ``openssl`` command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise FileNotFoundError("the e2e tests need the openssl command (apt-get install openssl)")
    cert, key = directory / "stand-in-cert.pem", directory / "stand-in-key.pem"
    names = ",".join(f"DNS:{host}" for host in (*TRACKER_HOSTS, *CONTROL_HOSTS))
    subprocess.run(  # noqa: S603 (fixed arguments)
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
         "/CN=consent-middleware e2e stand-in", "-addext", f"subjectAltName={names}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


class TLS:
    """The servers' TLS context, and the server name (SNI) each connection's handshake gave."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.context.set_alpn_protocols(["http/1.1"])
        self.context.sni_callback = self._server_name
        self.server_names: dict[int, str] = {}

    def _server_name(self, sock: ssl.SSLSocket | ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        if name:
            self.server_names[id(sock)] = name  # the socket being handshaken: one key per connection


class HostServer(ThreadingHTTPServer):
    """One mapped host: plain HTTP and TLS on one port of 127.0.0.1."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, host: str, traffic: Traffic, tls: TLS) -> None:
        self.host = host
        self.traffic = traffic
        self.tls = tls
        #: Each accepted connection's number in the traffic record, by the client's address.
        self.numbers: dict[Any, int] = {}
        super().__init__(("127.0.0.1", 0), StandInHandler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        # Record here, in the accepting thread, in accept order (see Traffic.barrier).
        self.numbers[client_address] = self.traffic.opened(self.host, int(client_address[1]))
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser closing a connection, or an unused preconnect timing out, is no error."""


class StandInHandler(BaseHTTPRequestHandler):
    """Serves the gtag.js stand-in and a video page; takes every other request with a 204."""

    protocol_version = "HTTP/1.1"
    server: HostServer
    number: int
    types: ClassVar[dict[str, str]] = {"js": "text/javascript", "html": "text/html; charset=utf-8"}

    def setup(self) -> None:
        sock: socket.socket = self.request
        self.number = self.server.numbers.pop(self.client_address)
        sock.settimeout(IDLE_TIMEOUT)
        first = sock.recv(1, socket.MSG_PEEK)
        if first and first[0] == TLS_RECORD_HANDSHAKE:
            wrapped = self.server.tls.context.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            )
            try:
                wrapped.do_handshake()
            except BaseException:
                wrapped.close()
                raise
            finally:
                name = self.server.tls.server_names.pop(id(wrapped), None)
                self.server.traffic.named(self.number, tls=True, server_name=name)
            self.request = wrapped
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.request.close()  # the TLS socket: the server closes only the one it accepted

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the traffic record says it all."""

    def record(self) -> str:
        url = urlsplit(self.path)
        host = (self.headers.get("Host") or self.server.host).rsplit(":", 1)[0]
        self.server.traffic.hit(
            Hit(
                connection=self.number,
                method=self.command,
                host=host,
                path=url.path,
                query=url.query,
                referer=self.headers.get("Referer", ""),
                cookie=self.headers.get("Cookie", ""),
            )
        )
        return host

    def reply(self, status: int, body: bytes = b"", kind: str | None = None) -> None:
        self.send_response(status)
        if kind:
            self.send_header("Content-Type", self.types[kind])
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        host = self.record()
        path = urlsplit(self.path).path
        if host == "www.googletagmanager.com" and path == "/gtag/js":
            self.reply(200, GTAG_JS, "js")
        elif host == "www.youtube-nocookie.com" and path.startswith("/embed/"):
            self.reply(200, b"<!doctype html><title>Video stand-in</title><p id=video>Playing</p>", "html")
        else:
            self.reply(204)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 1 << 20))
        self.record()
        self.reply(204)

    do_HEAD = do_GET


class StandIn:
    """The running servers, one per mapped host, and what they saw."""

    def __init__(self, servers: dict[str, HostServer], traffic: Traffic) -> None:
        self.servers = servers
        self.traffic = traffic

    def port(self, host: str) -> int:
        return self.servers[host].port

    def tracker_ports(self) -> dict[str, int]:
        return {host: self.servers[host].port for host in TRACKER_HOSTS}

    def barrier(self) -> None:
        """Every connection opened so far, to any mapped host, is in ``traffic`` on return."""
        for host, server in self.servers.items():
            self.traffic.barrier(host, server.port)

    def resolver_rules(self, site_host: str, site_port: int) -> str:
        """Chromium's ``--host-resolver-rules``: each mapped host to its port, the site's name to the
        site, and every other name unresolvable, so that nothing leaves 127.0.0.1."""
        rules = [f"MAP {host} 127.0.0.1:{server.port}" for host, server in self.servers.items()]
        rules += [f"MAP {site_host} 127.0.0.1:{site_port}", "MAP * ~NOTFOUND", "EXCLUDE 127.0.0.1"]
        return ", ".join(rules)


@contextlib.contextmanager
def stand_in(directory: Path) -> Iterator[StandIn]:
    """The stand-in servers, running until the block ends."""
    tls = TLS(*make_certificate(directory))
    traffic = Traffic()
    servers: dict[str, HostServer] = {}
    threads: list[threading.Thread] = []
    try:
        for host in (*TRACKER_HOSTS, *CONTROL_HOSTS):
            server = servers[host] = HostServer(host, traffic, tls)
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"stand-in {host}",
                daemon=True,
            )
            thread.start()
            threads.append(thread)
        yield StandIn(servers, traffic)
    finally:
        for server in servers.values():
            server.shutdown()
            server.server_close()
        for thread in threads:
            thread.join(timeout=10)
