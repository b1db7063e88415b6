"""A real PostgreSQL server for the tests, and a TCP proxy that can make it unreachable.

``CONSENT_TEST_POSTGRES_URL`` (exported by ``.ci/run``) names a server the tests may create schemas in.
Without it, a throwaway cluster is made here: ``initdb`` into a temporary directory (as the ``postgres``
user when running as root, since PostgreSQL refuses to run as root), on its own port and socket
directory, stopped and removed afterwards. With ``CI`` set, a missing or unreachable server fails the
tests; elsewhere they are skipped with a message saying how to get one.

``private_cluster()`` always makes a throwaway server (a ``Cluster``), even in CI, for the tests that kill
it (``stop_immediately()``) and start it again (``start()``): the shared server is never stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

ENV_VAR = "CONSENT_TEST_POSTGRES_URL"
HOW_TO = (
    f"set {ENV_VAR}=postgresql://USER:PASSWORD@HOST:PORT/DB (a role that may create schemas), or install "
    "PostgreSQL's server binaries (Debian: apt-get install postgresql) so the tests start a throwaway one"
)


def unavailable(reason: str) -> None:
    """Fail in CI (a server is part of the test setup there), skip elsewhere."""
    message = f"PostgreSQL tests need a server: {reason}. {HOW_TO}"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def make_url(params: dict[str, Any]) -> str:
    """A ``postgresql://`` URL from libpq parameters (the form ``open_log`` takes)."""
    params = dict(params)
    user, password = params.pop("user", None), params.pop("password", None)
    host, port, dbname = params.pop("host", "localhost"), params.pop("port", None), params.pop("dbname", "")
    auth = ""
    if user:
        auth = quote(str(user), safe="") + (":" + quote(str(password), safe="") if password else "") + "@"
    if str(host).startswith("/"):  # a socket directory goes in the query
        params["host"] = host
        host = ""
    location = f"{host}:{port}" if port and host else str(host)
    if port and not host:
        params["port"] = port
    query = f"?{urlencode({key: str(value) for key, value in params.items()})}" if params else ""
    return f"postgresql://{auth}{location}/{quote(str(dbname), safe='')}{query}"


def _binaries() -> Path | None:
    """The directory of the newest installed server's initdb and pg_ctl."""
    candidates = [Path(path) for path in glob.glob("/usr/lib/postgresql/*/bin")]
    candidates.sort(key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(os.path.realpath(initdb)).parent)
    for candidate in candidates:
        if os.access(candidate / "initdb", os.X_OK) and os.access(candidate / "pg_ctl", os.X_OK):
            return candidate
    return None


class Cluster:
    """A private PostgreSQL server this process made and owns (``initdb`` into a temporary directory).

    ``stop_immediately()`` kills it as a crash would (``pg_ctl -m immediate``: every connection cut, no
    checkpoint) and ``start()`` brings it back on the same port and data directory (crash recovery),
    so a test may take it down without harming any other server. Use it through ``private_cluster()``.
    """

    def __init__(self, binaries: Path, base: Path, run_as: dict[str, Any]) -> None:
        self._binaries = binaries
        self._base = base
        self._run_as = run_as
        self._data = base / "data"
        self.log_path = base / "server.log"
        self.port = free_port()
        #: The superuser's URL (trust authentication on 127.0.0.1).
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.running = False
        self._started = False
        self._env = {**os.environ, "LC_ALL": "C", "LANG": "C"}

    def __repr__(self) -> str:
        return f"<Cluster 127.0.0.1:{self.port} {'running' if self.running else 'stopped'}>"

    def _run(self, *command: str, timeout: float = 120) -> None:
        result = subprocess.run(  # noqa: S603 (our own binaries, fixed arguments)
            command,
            cwd=self._base,
            env=self._env,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            **self._run_as,
        )
        if result.returncode:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")

    def _pg_ctl(self, *arguments: str, timeout: float = 120) -> None:
        self._run(str(self._binaries / "pg_ctl"), "-D", str(self._data), *arguments, timeout=timeout)

    def init(self) -> None:
        self._run(str(self._binaries / "initdb"), "-D", str(self._data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--locale=C", "--no-sync")  # fmt: skip

    def start(self) -> None:
        """Start the server (again) and return once it accepts connections."""
        options = f"-p {self.port} -k {self._base} -c listen_addresses=127.0.0.1 -c max_connections=100"
        self._started = True
        self._pg_ctl("-l", str(self.log_path), "-o", options, "-w", "-t", "60", "start", timeout=90)
        self.running = True

    def stop_immediately(self) -> None:
        """Kill the server (immediate mode: no shutdown checkpoint, connections cut); return once gone."""
        self._pg_ctl("-m", "immediate", "-w", "-t", "60", "stop", timeout=90)
        self.running = False

    def server_log(self) -> str:
        """The end of the server's log, for failure messages."""
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError as error:
            return f"(no server log: {error})"

    def close(self) -> None:
        """Stop the server if it may run and remove its directory (never raises)."""
        if self._started:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.stop_immediately()
        shutil.rmtree(self._base, ignore_errors=True)


@contextlib.contextmanager
def private_cluster() -> Iterator[Cluster]:
    """A throwaway server of this process's own, started, even where ``CONSENT_TEST_POSTGRES_URL`` names a
    shared one: for tests that stop and start the server. Skipped (failed with ``CI`` set) without
    PostgreSQL's server binaries."""
    binaries = _binaries()
    if binaries is None:
        unavailable("no initdb/pg_ctl was found to start a server of the test's own")
        raise AssertionError  # pragma: no cover (unavailable raises)
    run_as: dict[str, Any] = {}
    base = Path(tempfile.mkdtemp(prefix="consent-log-pg-"))
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base)
            unavailable("running as root and there is no 'postgres' user to run a throwaway server as")
            raise AssertionError from None  # pragma: no cover
        os.chown(base, account.pw_uid, account.pw_gid)
        run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    os.chmod(base, 0o700)
    cluster = Cluster(binaries, base, run_as)
    try:
        try:
            cluster.init()
            cluster.start()
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            unavailable(f"could not start a throwaway server: {error}")
        yield cluster
    finally:
        cluster.close()


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[str]:
    """Start a private PostgreSQL server; its superuser URL."""
    with private_cluster() as cluster:
        yield cluster.url


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A URL of a reachable server where schemas may be created (from the environment, or throwaway)."""
    url = os.environ.get(ENV_VAR)
    if not url:
        with throwaway_cluster() as throwaway:
            yield throwaway
        return
    try:
        with psycopg.connect(url, connect_timeout=10):
            pass
    except psycopg.Error as error:
        unavailable(f"{ENV_VAR} is set but the server does not answer ({error})")
    yield url


def with_search_path(url: str, schema: str) -> str:
    params = conninfo_to_dict(url)
    params["options"] = f"{params.get('options', '')} -csearch_path={schema}".strip()
    return make_url(params)


class Proxy:
    """A TCP proxy to the server, on its own thread: ``stop()`` makes the server unreachable (and cuts
    every open connection), ``start()`` brings it back on the same port."""

    def __init__(self, url: str) -> None:
        params = conninfo_to_dict(url)
        self._target_host = str(params.get("host") or "localhost")
        self._target_port = int(params.get("port") or 5432)
        self.port = free_port()
        params.update(host="127.0.0.1", port=self.port)
        self.url = make_url(params)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pg-proxy", daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)

    async def _open_target(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._target_host.startswith("/"):
            return await asyncio.open_unix_connection(f"{self._target_host}/.s.PGSQL.{self._target_port}")
        return await asyncio.open_connection(self._target_host, self._target_port)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            target_reader, target_writer = await self._open_target()
        except OSError:
            writer.close()
            return
        self._writers.update((writer, target_writer))
        try:
            await asyncio.gather(self._pipe(reader, target_writer), self._pipe(target_reader, writer))
        finally:
            self._writers.discard(writer)
            self._writers.discard(target_writer)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                transport = writer.transport
                transport.abort()
            self._writers.clear()
            await self._server.wait_closed()
            self._server = None

    def start(self) -> None:
        self._call(self._start())

    def stop(self) -> None:
        self._call(self._stop())

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
