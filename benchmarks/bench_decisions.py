"""Decisions per second and latency through uvicorn, on each consent-log store (SPEC §5).

Run from the repository root: ``python -m benchmarks.bench_decisions`` (``--help`` for the options).

For each target, uvicorn (one worker; ``--loop uvloop --http httptools`` when both are installed;
``--no-access-log``) serves, in a subprocess pinned with ``taskset`` to one core:

- ``bare``: an ASGI app answering 200 to the POST (reads the body, sends a small JSON), the baseline;
- ``nolog``: ``ConsentMiddleware`` over that app with ``consent_log=None`` (the decision without its log);
- ``sqlite``: ``ConsentMiddleware`` over that app, logging to an SQLite file (WAL, ``synchronous=FULL``);
- ``postgres``: the same on PostgreSQL: ``CONSENT_TEST_POSTGRES_URL`` (in a schema of its own, dropped
  afterwards) when set, else a throwaway cluster (``tests/postgres.py``; its server is not pinned).

The load generator, this process pinned to the other core, holds N keep-alive HTTP/1.1 connections
(raw asyncio protocol, uvloop when installed), each posting ``{"decision": "accept_all"}`` as a fresh
visitor (no cookie: every decision is a new consent id, a new log entry), one request in flight per
connection, for a fixed duration. A warm-up round is dropped; the table gives the median over the
rounds of decisions/s, p50 and p99 latency, and the errors (non-200 answers, lost connections).
After each target the server is stopped and the log's entries are counted against the 200 answers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import secrets
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Final, cast

from starlette.types import ASGIApp, Receive, Scope, Send

from consent_middleware import ConsentMiddleware

SECRET: Final = "benchmark-secret-key-0123456789-abcdef"  # noqa: S105 (the benchmark's own)
#: What is served: "bare" (no middleware), "nolog" (the middleware with ``consent_log=None``), or the
#: middleware logging to this ``consent_log`` URL.
TARGET_ENV: Final = "CONSENT_BENCH_LOG"
SPOOL_ENV: Final = "CONSENT_BENCH_SPOOL"
SERVER_CPU: Final = 0
LOAD_CPU: Final = 1
BODY: Final = b'{"decision":"accept_all"}'
#: How long a round may overrun its duration (a stuck server) before it is abandoned.
ROUND_GRACE: Final = 15.0
START_TIMEOUT: Final = 30.0
STOP_TIMEOUT: Final = 60.0
ROOT: Final = Path(__file__).resolve().parent.parent


# -- the served app (imported by the uvicorn subprocess) --------------------------------------------


async def bare_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer 200 to anything, after reading the whole body."""
    if scope["type"] != "http":
        return
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    body = b'{"ok":true}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def app() -> ASGIApp:
    """The app for ``uvicorn --factory``, from the environment this benchmark sets."""
    target = os.environ.get(TARGET_ENV, "bare")
    if target == "bare":
        return bare_app
    if target == "nolog":
        return ConsentMiddleware(bare_app, secret_key=SECRET, consent_log=None)
    return ConsentMiddleware(
        bare_app, secret_key=SECRET, consent_log=target, log_spool=os.environ.get(SPOOL_ENV)
    )


# -- the load generator -------------------------------------------------------------------------------


@dataclass
class Stats:
    until: float
    latencies: list[float] = field(default_factory=list)  # seconds, answers within the round's window
    ok: int = 0  # 200 answers, in the window or not (each one is a logged decision)
    errors: int = 0
    first_error: str = ""

    def error(self, what: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or what


class Client(asyncio.Protocol):
    """One keep-alive connection: post, read the whole answer, post again, until the round ends."""

    def __init__(self, request: bytes, stats: Stats, done: asyncio.Future[None]) -> None:
        self.request = request
        self.stats = stats
        self.done = done
        self.buffer = bytearray()
        self.sent_at = 0.0
        self.transport: asyncio.Transport | None = None
        self.finished = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.send()

    def send(self) -> None:
        assert self.transport is not None
        self.sent_at = time.perf_counter()
        self.transport.write(self.request)

    def finish(self) -> None:
        self.finished = True
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            self.done.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        marker = head.find(b"\r\ncontent-length:")
        if marker < 0:
            self.stats.error("an answer without Content-Length")
            self.finish()
            return
        line_end = head.find(b"\r\n", marker + 2)
        length = int(head[marker + 17 : line_end if line_end > 0 else len(head)])
        total = end + 4 + length
        if len(self.buffer) < total:
            return
        now = time.perf_counter()
        status = int(head[9:12])
        body = bytes(self.buffer[end + 4 : total])
        del self.buffer[:total]
        if status == 200:
            self.stats.ok += 1
            if now <= self.stats.until:
                self.stats.latencies.append(now - self.sent_at)
        else:
            self.stats.error(f"HTTP {status}: {body[:120]!r}")
        if now < self.stats.until and not self.buffer:
            self.send()
        else:
            self.finish()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished:
            self.stats.error(f"connection lost: {exc}")
        self.finished = True
        if not self.done.done():
            self.done.set_result(None)


@dataclass(frozen=True)
class Round:
    rate: float  # 200 answers per second within the window
    p50: float  # ms
    p99: float  # ms
    errors: int
    ok: int
    first_error: str
    cpu_us: float  # the server process's CPU time (user + system) per decision answered, microseconds
    busy: float  # the server process's CPU time over the round's wall time (1.0: one core, all of it)


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far; 0 where /proc cannot tell."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load_round(port: int, pid: int, connections: int, duration: float) -> Round:
    loop = asyncio.get_running_loop()
    request = (
        f"POST /_consent HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nAccept: application/json\r\nUser-Agent: bench-decisions\r\n"
        f"Content-Length: {len(BODY)}\r\n\r\n"
    ).encode() + BODY
    cpu_before = cpu_seconds(pid)
    start = time.perf_counter()
    stats = Stats(until=start + duration)
    dones: list[asyncio.Future[None]] = []
    transports: list[asyncio.Transport] = []
    for _ in range(connections):
        done: asyncio.Future[None] = loop.create_future()
        transport, _protocol = await loop.create_connection(
            lambda done=done: Client(request, stats, done),  # type: ignore[misc]
            "127.0.0.1",
            port,
        )
        dones.append(done)
        transports.append(transport)
    try:
        await asyncio.wait_for(asyncio.gather(*dones), duration + ROUND_GRACE)
    except TimeoutError:
        stats.error(f"round did not finish within {duration + ROUND_GRACE:.0f} s")
    finally:
        for transport in transports:
            transport.close()
    cpu = cpu_seconds(pid) - cpu_before
    wall = time.perf_counter() - start
    latencies = sorted(stats.latencies)
    return Round(
        rate=len(latencies) / duration,
        p50=percentile(latencies, 0.50) * 1000,
        p99=percentile(latencies, 0.99) * 1000,
        errors=stats.errors,
        ok=stats.ok,
        first_error=stats.first_error,
        cpu_us=cpu / max(stats.ok, 1) * 1e6,
        busy=cpu / wall,
    )


# -- servers and stores -------------------------------------------------------------------------------


@functools.cache
def pinning() -> bool:
    """Whether server and load get a core each (decided once, before this process pins itself)."""
    return shutil.which("taskset") is not None and {SERVER_CPU, LOAD_CPU} <= os.sched_getaffinity(0)


def fast_stack() -> bool:
    return find_spec("uvloop") is not None and find_spec("httptools") is not None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def server_command(
    port: int, factory: str = "benchmarks.bench_decisions:app", *, pin: bool | None = None
) -> list[str]:
    """The uvicorn command line; pinned to ``SERVER_CPU`` when ``pin`` (None: when ``pinning()``)."""
    command = [sys.executable, "-m", "uvicorn", factory, "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--no-access-log"]
    command += ["--lifespan", "off", "--log-level", "warning"]
    if fast_stack():
        command += ["--loop", "uvloop", "--http", "httptools"]
    if pinning() if pin is None else pin:
        command = ["taskset", "-c", str(SERVER_CPU), *command]
    return command


@contextlib.contextmanager
def server(target: str, spool: Path) -> Iterator[tuple[int, int]]:
    """uvicorn serving the app for ``target`` in a subprocess; its port and process id, once it accepts
    connections (``taskset`` execs uvicorn: the process id is uvicorn's)."""
    environment = {TARGET_ENV: target, SPOOL_ENV: str(spool)}
    with uvicorn_server("benchmarks.bench_decisions:app", environment) as (port, process):
        yield port, process.pid


@contextlib.contextmanager
def uvicorn_server(
    factory: str,
    environment: dict[str, str],
    *,
    pin: bool | None = None,
    cwd: Path = ROOT,
    log: Path | None = None,
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """uvicorn serving the app factory ``factory`` ("module:name") in a subprocess, with ``environment``
    added to this process's, pinned as ``server_command`` decides, its stderr in ``log`` when given;
    its port and process once it accepts connections (``taskset`` execs uvicorn: the process id is
    uvicorn's). Stopped with SIGTERM on the way out: uvicorn stops, then the log writes what is queued."""
    port = free_port()
    env = {**os.environ, **environment}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    command = server_command(port, factory, pin=pin)
    with contextlib.ExitStack() as stack:
        stderr = stack.enter_context(log.open("wb")) if log is not None else None
        process = subprocess.Popen(command, cwd=cwd, env=env, stderr=stderr)  # noqa: S603 (fixed arguments)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:  # poll a real condition: the port accepts a connection
                if process.poll() is not None:
                    tail = f": {log_tail(log)}" if log is not None else ""
                    raise RuntimeError(f"uvicorn exited with status {process.returncode}{tail}")
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"uvicorn did not accept connections within {START_TIMEOUT:.0f} s")
                time.sleep(0.05)
            yield port, process
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)


def log_tail(log: Path) -> str:
    """The end of a server's log, for an error message."""
    try:
        return log.read_text(errors="replace")[-4000:]
    except OSError:
        return ""


def count_sqlite(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        row = db.execute("SELECT count(*) FROM consent_log").fetchone()
        return int(row[0])


def count_postgres(url: str) -> int:
    import psycopg

    with psycopg.connect(url, connect_timeout=10) as db:
        row = db.execute("SELECT count(*) FROM consent_log").fetchone()
        return 0 if row is None else int(row[0])


@contextlib.contextmanager
def postgres_url(work: Path) -> Iterator[tuple[str, str]]:
    """A URL for the log on PostgreSQL, and where it comes from."""
    import psycopg
    from psycopg import sql

    shared = os.environ.get("CONSENT_TEST_POSTGRES_URL")
    if shared:
        from tests.postgres import with_search_path

        schema = f"consent_bench_{secrets.token_hex(4)}"
        with psycopg.connect(shared, autocommit=True) as db:
            db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            yield with_search_path(shared, schema), "CONSENT_TEST_POSTGRES_URL"
        finally:
            with psycopg.connect(shared, autocommit=True) as db:
                db.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        return
    import pytest

    from tests.postgres import private_cluster

    try:
        with private_cluster() as cluster:
            yield cluster.url, "a throwaway cluster (unpinned)"
    except (pytest.skip.Exception, pytest.fail.Exception) as error:
        raise RuntimeError(str(error)) from None


# -- the run --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    target: str
    connections: int
    rounds: list[Round]

    def median(self, name: str) -> float:
        return float(statistics.median(float(getattr(one, name)) for one in self.rounds))


@dataclass
class Target:
    name: str
    url: str  # "bare", "nolog" or a consent_log URL
    note: str
    count: Callable[[], int] | None = None  # the log's entries, read after the server stopped
    results: list[Result] = field(default_factory=list)
    answered: int = 0  # 200 answers, warm-up rounds included
    logged: int | None = None


def run_target(target: Target, work: Path, args: argparse.Namespace) -> None:
    with server(target.url, work / f"{target.name}.spool") as (port, pid):
        runner = asyncio.Runner(loop_factory=loop_factory())
        with runner:
            for connections in args.connections:
                warm = runner.run(load_round(port, pid, connections, args.warmup))
                target.answered += warm.ok
                print(
                    f"  {target.name} x{connections} warm-up: {warm.rate:,.0f}/s p99 {warm.p99:.1f} ms "
                    f"errors {warm.errors} {warm.first_error}",
                    flush=True,
                )
                rounds = []
                for number in range(args.rounds):
                    one = runner.run(load_round(port, pid, connections, args.duration))
                    target.answered += one.ok
                    rounds.append(one)
                    print(
                        f"  {target.name} x{connections} round {number + 1}: {one.rate:,.0f}/s "
                        f"p50 {one.p50:.2f} ms p99 {one.p99:.2f} ms, server {one.cpu_us:.0f} us CPU per "
                        f"decision, busy {one.busy:.0%}; errors {one.errors} {one.first_error}",
                        flush=True,
                    )
                target.results.append(Result(target.name, connections, rounds))
    # The server has stopped (and its log written everything queued): every 200 is one entry.
    if target.count is not None:
        target.logged = target.count()


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    if find_spec("uvloop") is None:
        return None
    import uvloop

    return uvloop.new_event_loop


def connection_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None
    if not counts or not all(1 <= count <= 1000 for count in counts):
        raise argparse.ArgumentTypeError("connection counts must be 1..1000")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per round (default 5)")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (default 5)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of the dropped warm-up round")
    parser.add_argument(
        "--connections",
        type=connection_counts,
        default=[16],
        help="concurrent connections, or a comma-separated list of counts, each run in turn (default 16)",
    )
    parser.add_argument(
        "--targets",
        default="bare,nolog,sqlite,postgres",
        help="comma-separated: bare, nolog (the middleware without a log), sqlite, postgres",
    )
    args = parser.parse_args()
    if not 0 < args.duration <= 120 or not 0 < args.warmup <= 60 or not 1 <= args.rounds <= 50:
        parser.error("--duration 0..120 s, --warmup 0..60 s, --rounds 1..50")
    names = [name.strip() for name in args.targets.split(",") if name.strip()]
    unknown = set(names) - {"bare", "nolog", "sqlite", "postgres"}
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")

    pinning()  # decided now, while this process may still run on every core
    targets: list[Target] = []
    with tempfile.TemporaryDirectory(prefix="bench-decisions-") as directory:
        work = Path(directory)
        with contextlib.ExitStack() as stack:
            for name in names:
                if name == "bare":
                    targets.append(Target("bare", "bare", "no middleware"))
                elif name == "nolog":
                    targets.append(Target("nolog", "nolog", "middleware, consent_log=None"))
                elif name == "sqlite":
                    path = work / "consent-log.sqlite3"
                    count = functools.partial(count_sqlite, path)
                    targets.append(Target("sqlite", f"sqlite:///{path}", "WAL, synchronous=FULL", count))
                else:
                    try:  # started before this process pins itself: its server is not on the load's core
                        url, where = stack.enter_context(postgres_url(work))
                    except RuntimeError as error:
                        print(f"postgres: skipped ({error})", flush=True)
                        continue
                    targets.append(Target("postgres", url, where, functools.partial(count_postgres, url)))
            if pinning():
                os.sched_setaffinity(0, {LOAD_CPU})
            print(f"load average before: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")
            print(
                f"uvicorn: {'uvloop + httptools' if fast_stack() else 'default loop and http'}; "
                f"{f'server on cpu {SERVER_CPU}, load on cpu {LOAD_CPU}' if pinning() else 'unpinned'}; "
                f"connections {', '.join(map(str, args.connections))}; warm-up {args.warmup:g} s, "
                f"{args.rounds} x {args.duration:g} s",
                flush=True,
            )
            for target in targets:
                run_target(target, work, args)
    report(targets, args)


def report(targets: list[Target], args: argparse.Namespace) -> None:
    bare = {
        result.connections: result for target in targets if target.name == "bare" for result in target.results
    }
    print()
    print(
        "| target | connections | decisions/s | p50 ms | p99 ms | server CPU µs/decision | server busy "
        "| errors | vs bare app |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for target in targets:
        for result in target.results:
            rate = result.median("rate")
            base = bare.get(result.connections)
            ratio = f"{rate / base.median('rate'):.3f}" if base is not None and target.name != "bare" else ""
            errors = sum(one.errors for one in result.rounds)
            print(
                f"| {target.name} ({target.note}) | {result.connections} | {rate:,.0f} | "
                f"{result.median('p50'):.2f} | {result.median('p99'):.2f} | {result.median('cpu_us'):.0f} | "
                f"{result.median('busy'):.0%} | {errors} | {ratio} |"
            )
    print()
    print(f"medians over {args.rounds} rounds of {args.duration:g} s, each after a {args.warmup:g} s warm-up")
    print(f"load average after: {' '.join(f'{value:.2f}' for value in os.getloadavg())} (1, 5, 15 min)")
    for target in targets:
        if target.logged is not None:
            verdict = "" if target.logged == target.answered else "  <-- MISMATCH"
            print(
                f"{target.name}: {target.logged:,} log entries for {target.answered:,} answers 200{verdict}"
            )


if __name__ == "__main__":
    main()
