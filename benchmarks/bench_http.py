"""Requests per second and latency through uvicorn, the middleware against the bare site (issue 7).

Run from the repository root: ``python -m benchmarks.bench_http`` (the full settings: about 40 minutes
on a 2-core machine; ``--help`` for shorter runs). Needs ``wrk`` (Debian/Ubuntu: ``apt-get install wrk``)
and uvicorn with uvloop and httptools. Prints its progress, then a Markdown report ready to paste
(``--output FILE`` also writes the report there); exits 1 when any run failed.

Servers. Every variant of ``benchmarks.apps`` the selected cases need (bare, passthrough, gzip, naive,
limit, consent) gets its own uvicorn (1 worker, ``--loop uvloop --http httptools --no-access-log``,
``--factory benchmarks.apps:served``) on its own port, pinned with ``taskset -c 0``. By default
(``--servers fresh``) every round starts a new set: a process's memory layout and string-hash seed are
a draw that moves its speed by a few percent for as long as it lives, so one server per variant for the
whole run made whole runs disagree (the same code measured 0.92 and 0.85 of bare); a new draw per round
puts that luck inside the medians. Each fresh server answers every case once and takes a warm-up run
of every case (``--warmup`` seconds, dropped) before the round's measured runs, so start-up (imports,
the limit variant's probe, first-call caches, the interpreter's specialisation) stays out of every
timing. ``--servers once`` keeps one set for the whole run (one warm-up round). The servers of a round
share core 0 but only one is loaded at a time; an idle uvicorn wakes ten times a second and costs
nothing measurable.

Throughput. Each case gets ``--duration`` (8) seconds of load per variant and round, as ``--slices``
(8) runs of ``wrk -t1 -c16 -d1s --latency`` (wrk pinned with ``taskset -c 1``, this process too), the
case's variants taking turns slice by slice (A B, B A, A B, ...): the host's speed drifts over seconds,
and a variant measured in one 8 s block and the bare app in the next differed by that drift (per-round
ratios spread twice as wide as with 1 s turns, session 8). A round's req/s is the mean of its slices',
its latencies the medians of theirs, its server CPU per request over all of them. Each run loads one
URL with fixed headers: a browser's (``benchmarks.apps.request_scope``: User-Agent, Accept,
Accept-Language, ``Accept-Encoding: gzip, deflate, br``), and for a decided visitor a
``Cookie: consent=...`` made by ``benchmarks.apps.decided_cookie``. Every variant gets the same
headers: only ``gzip`` acts on Accept-Encoding. Warm-up runs (see Servers) are dropped; then
``--rounds`` rounds; round r runs every (case, variant) once, cases in an order rotated by r and, in
each case, variants in an order rotated by r, so that a variant and the bare app it is compared with
run close together and every variant takes every position. Reported per case and variant: the
median req/s, p50 and p99 latency and server CPU per request (uvicorn's user + system time from
``/proc``) over the rounds, and the median over rounds of the ratio to the bare app of the same round
(for consent also to limit and to naive), with the 95% interval of that median (distribution-free: the
order statistics whose chance of enclosing the true median reaches 95%; for 7 rounds the smallest and
largest ratio, for 30 the 10th and 21st). A round's run with a non-2xx answer, a socket error or no
request in any slice is failed: left out of the medians, counted in the report.

Streaming. ``/stream`` (100 MB of HTML in 64 KiB chunks, no Content-Length) for bare and consent, an
undecided visitor, through a raw socket read as fast as this process can. Time to first byte is from
just before ``connect`` to the first byte of the response (its status line), as curl's
``time_starttransfer`` and a browser's ``responseStart``; the time to the first byte of the body is
reported too (the middleware may hold the response head until it has read the page's head). Each of
``--stream-tries`` (20) tries downloads the whole page, bare and consent interleaved, starting with
each in turn; the report gives medians and the median of the per-try differences to bare. Memory:
each server's VmRSS (``/proc/PID/status``) after a 1 MB warm-up download, then its peak during the
first full download (VmHWM, reset through ``/proc/PID/clear_refs`` just before, and VmRSS sampled every
2 ms), and the peak over all downloads. The stream runs first, on servers of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import math
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Final, TypeVar

from benchmarks.apps import (
    ACCEPT_ALL,
    SITE_ENV,
    SITES,
    STREAM_MB,
    VARIANT_ENV,
    VARIANTS,
    WORK_ENV,
    decided_cookie,
    request_scope,
)
from benchmarks.bench_decisions import LOAD_CPU, SERVER_CPU, cpu_seconds, fast_stack, pinning, uvicorn_server

FACTORY: Final = "benchmarks.apps:served"
ALL_VARIANTS: Final = tuple(VARIANTS)  # bare, passthrough, gzip, naive, limit, consent
NO_LIMIT: Final = tuple(name for name in ALL_VARIANTS if name != "limit")
STREAM: Final = "stream"
STREAM_VARIANTS: Final = ("bare", "consent")
WRK_GRACE: Final = 60.0  # seconds a wrk run may overrun its duration before it is abandoned
WRK_START: Final = 0.1  # seconds, about, a wrk run takes beyond its duration (for the estimate)
RSS_SAMPLE: Final = 0.002
SERVER_START: Final = 2.0  # seconds, about, to start a uvicorn and probe it (for the estimate)
MB: Final = 1_000_000
#: The confidence of the reported interval of a median ratio.
CONFIDENCE: Final = 0.95
_T = TypeVar("_T")


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    label: str
    cookie: str | None  # None (undecided), "accepted" or "rejected"
    variants: tuple[str, ...]


CASES: Final = (
    Case("page", "/page", "5 KB page, undecided", None, ALL_VARIANTS),
    Case("page-accepted", "/page", "5 KB page, decided: accepted all", "accepted", NO_LIMIT),
    Case("page-rejected", "/page", "5 KB page, decided: rejected all", "rejected", NO_LIMIT),
    Case("page-unique", "/page-unique", "5 KB page per request, undecided", None, ALL_VARIANTS),
    Case("page100k", "/page100k", "100 KB page, undecided", None, NO_LIMIT),
    Case("json", "/json", "JSON, undecided", None, NO_LIMIT),
    Case("json-decided", "/json", "JSON, decided: accepted all", "accepted", NO_LIMIT),
)
CASE_NAMES: Final = (*(case.name for case in CASES), STREAM)


# -- wrk ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkRun:
    rate: float  # requests/s, as wrk reports it
    p50: float  # ms
    p99: float  # ms
    requests: int
    non_2xx: int
    socket_errors: int  # connect + read + write + timeout
    cpu_us: float  # the server's CPU time (user + system) per request, microseconds
    busy: float  # the server's CPU time over the run's wall time (1.0: core 0, all of it)
    problem: str = ""
    socket_detail: str = ""  # wrk's "connect N, read N, write N, timeout N"

    @property
    def failed(self) -> bool:
        return bool(self.problem) or self.non_2xx > 0 or self.socket_errors > 0 or self.requests == 0

    def describe(self) -> str:
        text = (
            f"{self.rate:,.0f} req/s, p50 {self.p50:.2f} ms, p99 {self.p99:.2f} ms, server "
            f"{self.cpu_us:.0f} us/req, busy {self.busy:.0%}"
        )
        if self.failed:
            text += (
                f"  FAILED: {self.problem + '; ' if self.problem else ''}non-2xx {self.non_2xx}, "
                f"socket errors {self.socket_errors} ({self.socket_detail or 'none'}), "
                f"requests {self.requests}"
            )
        return text


_UNITS: Final = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_LATENCY: Final = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_REQUESTS: Final = re.compile(r"^\s*(\d+) requests in ", re.MULTILINE)
_RATE: Final = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_NON_2XX: Final = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET: Final = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def parse_wrk(output: str) -> tuple[float, float, float, int, int, int, str]:
    """Requests/s, p50 and p99 latency (ms), requests, non-2xx answers, socket errors and their detail
    from wrk's report (``--latency``); raises ValueError when a figure is missing."""
    latencies = {match[1]: float(match[2]) * _UNITS[match[3]] for match in _LATENCY.finditer(output)}
    rate = _RATE.search(output)
    requests = _REQUESTS.search(output)
    if rate is None or requests is None or set(latencies) != {"50", "99"}:
        raise ValueError(f"unexpected wrk output: {output!r}")
    non_2xx = _NON_2XX.search(output)
    sockets = _SOCKET.search(output)
    socket_errors = sum(int(value) for value in sockets.groups()) if sockets else 0
    return (
        float(rate[1]),
        latencies["50"],
        latencies["99"],
        int(requests[1]),
        int(non_2xx[1]) if non_2xx else 0,
        socket_errors,
        sockets[0].removeprefix("Socket errors: ") if sockets else "",
    )


def wrk_command(url: str, headers: Sequence[tuple[str, str]], connections: int, seconds: int) -> list[str]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in headers:
        command += ["-H", f"{name}: {value}"]
    command.append(url)
    if pinning():
        command = ["taskset", "-c", str(LOAD_CPU), *command]
    return command


def run_wrk(
    port: int, pid: int, path: str, headers: Sequence[tuple[str, str]], connections: int, seconds: int
) -> WrkRun:
    command = wrk_command(f"http://127.0.0.1:{port}{path}", headers, connections, seconds)
    cpu_before = cpu_seconds(pid)
    start = time.perf_counter()
    try:
        done = subprocess.run(  # noqa: S603 (fixed arguments)
            command, capture_output=True, text=True, timeout=seconds + WRK_GRACE, check=False
        )
    except subprocess.TimeoutExpired:
        return WrkRun(
            0.0, 0.0, 0.0, 0, 0, 0, 0.0, 0.0, problem=f"wrk did not finish in {seconds + WRK_GRACE:.0f} s"
        )
    wall = time.perf_counter() - start
    cpu = cpu_seconds(pid) - cpu_before
    try:
        rate, p50, p99, requests, non_2xx, socket_errors, detail = parse_wrk(done.stdout)
    except ValueError:
        problem = f"wrk exited with {done.returncode}: {(done.stderr or done.stdout).strip()[:300]}"
        return WrkRun(0.0, 0.0, 0.0, 0, 0, 0, 0.0, 0.0, problem=problem)
    problem = "" if done.returncode == 0 else f"wrk exited with {done.returncode}"
    cpu_us = cpu / max(requests, 1) * 1e6
    return WrkRun(rate, p50, p99, requests, non_2xx, socket_errors, cpu_us, cpu / wall, problem, detail)


# -- the servers --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    variant: str
    port: int
    pid: int


def browser_headers(cookie: str | None) -> list[tuple[str, str]]:
    """The headers of ``benchmarks.apps.request_scope`` (a browser's GET) but Host, which wrk sets."""
    extra = [(b"cookie", cookie.encode())] if cookie else None
    return [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in request_scope("/", extra)["headers"]
        if name != b"host"
    ]


def probe(server: Server, path: str, headers: Sequence[tuple[str, str]]) -> tuple[int, int, str]:
    """One request: its status, body size (as sent: compressed if compressed) and Content-Encoding."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("GET", path, headers=dict(headers))
        response = connection.getresponse()
        body = response.read()
        return response.status, len(body), response.getheader("content-encoding") or ""
    finally:
        connection.close()


# -- the streamed page --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fetch:
    first_byte: float  # ms from before connect to the first byte of the response
    first_body: float  # ms to the first byte after the response head
    total: float  # s to the end of the response
    body_bytes: int
    status: int


def fetch(port: int, path: str, headers: Sequence[tuple[str, str]]) -> Fetch:
    """GET ``path`` on a new connection (``Connection: close``) and read it all as fast as possible."""
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{lines}Connection: close\r\n\r\n".encode()
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    head = bytearray()
    first_byte = first_body = 0.0
    head_length = -1
    received = 0
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(request)
        while True:
            count = sock.recv_into(buffer)
            now = time.perf_counter()
            if count == 0:
                break
            received += count
            if not first_byte:
                first_byte = now
            if head_length < 0:
                head += view[:count]
                end = head.find(b"\r\n\r\n")
                if end >= 0:
                    head_length = end + 4
            if head_length >= 0 and not first_body and received > head_length:
                first_body = now
    end_time = time.perf_counter()
    status = int(head[9:12]) if head.startswith(b"HTTP/1.") and len(head) >= 12 else 0
    return Fetch(
        first_byte=(first_byte - start) * 1e3 if first_byte else float("nan"),
        first_body=(first_body - start) * 1e3 if first_body else float("nan"),
        total=end_time - start,
        body_bytes=received - max(head_length, 0),
        status=status,
    )


def status_kb(pid: int, name: str) -> int:
    """A ``VmRSS``/``VmHWM``-like line of /proc/PID/status, in kB (0 where unreadable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (Linux >= 4.0, same user)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class RssSampler:
    """The largest VmRSS of a process seen while in the ``with`` block, sampled every few ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = status_kb(pid, "VmRSS")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(RSS_SAMPLE):
            self.peak_kb = max(self.peak_kb, status_kb(self.pid, "VmRSS"))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, status_kb(self.pid, "VmRSS"))


@dataclass
class StreamResult:
    variant: str
    fetches: list[Fetch] = field(default_factory=list)
    rss_before_kb: int = 0
    peak_first_kb: int = 0
    peak_all_kb: int = 0
    hwm: bool = False  # whether VmHWM could be reset (else the peaks are sampled VmRSS only)
    problems: list[str] = field(default_factory=list)

    def check(self, one: Fetch, megabytes: int) -> None:
        if one.status != 200 or one.body_bytes < megabytes * MB:
            self.problems.append(f"status {one.status}, {one.body_bytes:,} body bytes")


def run_stream(servers: dict[str, Server], tries: int) -> list[StreamResult]:
    headers = browser_headers(None)
    path = f"/stream?mb={STREAM_MB}"
    results = {name: StreamResult(name) for name in STREAM_VARIANTS if name in servers}
    for name, result in results.items():
        server = servers[name]
        result.check(fetch(server.port, "/stream?mb=1", headers), 1)  # warm-up, not counted
        result.rss_before_kb = status_kb(server.pid, "VmRSS")
        result.hwm = reset_peak(server.pid)
        with RssSampler(server.pid) as sampler:
            one = fetch(server.port, path, headers)
        result.check(one, STREAM_MB)
        result.peak_first_kb = max(sampler.peak_kb, status_kb(server.pid, "VmHWM") if result.hwm else 0)
        result.peak_all_kb = result.peak_first_kb
        print(
            f"  stream {name}: RSS {result.rss_before_kb / 1024:.1f} MB before, peak "
            f"{result.peak_first_kb / 1024:.1f} MB; {STREAM_MB} MB in {one.total:.2f} s",
            flush=True,
        )
    # Sampling takes this process's GIL every 2 ms, a little noise on the first-byte times: only where
    # VmHWM could not be reset (VmHWM is then the peak over every download since the reset).
    samplers = {name: RssSampler(servers[name].pid) for name, result in results.items() if not result.hwm}
    with contextlib.ExitStack() as stack:
        for sampler in samplers.values():
            stack.enter_context(sampler)
        for number in range(tries):
            for name in rotated(list(results), number):
                one = fetch(servers[name].port, path, headers)
                results[name].check(one, STREAM_MB)
                results[name].fetches.append(one)
            print(
                f"  stream try {number + 1}/{tries}: "
                + ", ".join(
                    f"{name} first byte {result.fetches[-1].first_byte:.2f} ms, body "
                    f"{result.fetches[-1].first_body:.2f} ms, {result.fetches[-1].total:.2f} s"
                    for name, result in results.items()
                ),
                flush=True,
            )
    for name, result in results.items():
        peak = status_kb(servers[name].pid, "VmHWM") if result.hwm else samplers[name].peak_kb
        result.peak_all_kb = max(result.peak_all_kb, peak)
    return list(results.values())


@contextlib.contextmanager
def started_servers(
    names: list[str], *, site: str, directory: Path, pin: bool
) -> Iterator[dict[str, Server]]:
    """A uvicorn for each variant in ``names`` (each with a work directory of its own), by variant;
    stopped on the way out."""
    with contextlib.ExitStack() as stack:
        running: dict[str, Server] = {}
        for name in names:
            work = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=directory))
            environment = {VARIANT_ENV: name, WORK_ENV: str(work), SITE_ENV: site}
            port, process = stack.enter_context(uvicorn_server(FACTORY, environment, pin=pin))
            running[name] = Server(name, port, process.pid)
        yield running


def answered(
    chosen: list[tuple[Case, list[str]]],
    cells: dict[tuple[str, str], Cell],
    servers: dict[str, Server],
    cookies: dict[str, str],
) -> None:
    """Every case answered 200 by every variant before any timing (else exit); the sizes for the report."""
    for case, names in chosen:
        headers = browser_headers(cookies.get(case.cookie or ""))
        for name in names:
            status, size, encoding = probe(servers[name], case.path, headers)
            if status != 200:
                sys.exit(f"{case.name} {name}: HTTP {status} on {case.path}")
            cells[case.name, name].size, cells[case.name, name].encoding = size, encoding
    for case_name in ("page", "page-unique"):
        limit, mine = cells.get((case_name, "limit")), cells.get((case_name, "consent"))
        if limit is not None and mine is not None and abs(limit.size - mine.size) > 64:
            print(f"warning: {case_name}: limit sends {limit.size} bytes, consent {mine.size}", flush=True)


# -- the rounds -----------------------------------------------------------------------------------------


def rotated(items: list[_T], by: int) -> list[_T]:
    if not items:
        return items
    by %= len(items)
    return items[by:] + items[:by]


@dataclass
class Cell:
    """One case and variant: its runs, one per measured round (None: not run that round)."""

    case: Case
    variant: str
    size: int = 0
    encoding: str = ""
    runs: list[WrkRun | None] = field(default_factory=list)

    def good(self) -> list[WrkRun]:
        return [run for run in self.runs if run is not None and not run.failed]

    def failed(self) -> int:
        return sum(1 for run in self.runs if run is not None and run.failed)

    def median(self, name: str) -> float:
        values = [float(getattr(run, name)) for run in self.good()]
        return statistics.median(values) if values else float("nan")

    def ratios(self, other: Cell) -> list[float]:
        """Per-round ratios of this cell's req/s to ``other``'s, over the rounds where both succeeded."""
        return [
            mine.rate / theirs.rate
            for mine, theirs in zip(self.runs, other.runs, strict=False)
            if mine is not None
            and theirs is not None
            and not mine.failed
            and not theirs.failed
            and theirs.rate
        ]


def plan(cases: Sequence[Case], variants: Sequence[str]) -> list[tuple[Case, list[str]]]:
    chosen = []
    for case in cases:
        names = [name for name in case.variants if name in variants]
        if names:
            chosen.append((case, names))
    return chosen


def combined(slices: Sequence[WrkRun]) -> WrkRun:
    """One run made of equal slices: the mean rate, the medians of the slices' latencies, the server's
    CPU time per request over them all; failed if any slice failed."""
    if len(slices) == 1:
        return slices[0]
    requests = sum(one.requests for one in slices)
    cpu = sum(one.cpu_us * one.requests for one in slices)
    problems = "; ".join(dict.fromkeys(one.problem for one in slices if one.problem))
    return WrkRun(
        statistics.fmean(one.rate for one in slices),
        statistics.median(one.p50 for one in slices),
        statistics.median(one.p99 for one in slices),
        requests,
        sum(one.non_2xx for one in slices),
        sum(one.socket_errors for one in slices),
        cpu / max(requests, 1),
        statistics.fmean(one.busy for one in slices),
        problems,
        "; ".join(one.socket_detail for one in slices if one.socket_errors),
    )


def run_round(
    number: int,
    label: str,
    chosen: list[tuple[Case, list[str]]],
    cells: dict[tuple[str, str], Cell],
    servers: dict[str, Server],
    cookies: dict[str, str],
    args: argparse.Namespace,
    *,
    keep: bool,
) -> None:
    """Every (case, variant) once, in the orders of round ``number``: measured runs of ``--duration``
    seconds kept in ``cells`` (``keep``), each made of ``--slices`` slices with the case's variants
    taking turns (A B, B A, A B, ...), or warm-up runs of ``--warmup`` seconds."""
    slices = args.slices if keep else 1
    seconds = args.duration // slices if keep else args.warmup
    for case, names in rotated(chosen, number):
        headers = browser_headers(cookies.get(case.cookie or ""))
        order = rotated(names, number)
        runs: dict[str, list[WrkRun]] = {name: [] for name in order}
        for turn in range(slices):
            for name in order if turn % 2 == 0 else order[::-1]:
                server = servers[name]
                runs[name].append(
                    run_wrk(server.port, server.pid, case.path, headers, args.connections, seconds)
                )
        for name in order:
            run = combined(runs[name])
            print(f"  {label} {case.name:13} {name:11} {run.describe()}", flush=True)
            if keep:
                cells[case.name, name].runs.append(run)


# -- the report -------------------------------------------------------------------------------------


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    wrk = "wrk not found"
    if shutil.which("wrk"):
        done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)  # noqa: S607
        wrk = (
            (done.stdout or done.stderr).splitlines()[0].split(" [")[0]
            if (done.stdout or done.stderr)
            else "wrk"
        )
    return (
        f"{os.cpu_count()} cores ({model}, {platform.machine()}), Linux {platform.release()}, Python "
        f"{platform.python_version()}, uvicorn {package_version('uvicorn')} (uvloop "
        f"{package_version('uvloop')}, httptools {package_version('httptools')}), starlette "
        f"{package_version('starlette')}, {wrk}; {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
    )


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def ratio_text(values: list[float]) -> str:
    return f"{statistics.median(values):.3f}" if values else ""


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The distribution-free interval of the median: the order statistics ``j`` and ``n + 1 - j`` (from
    1) with the largest ``j`` whose chance of enclosing the true median, ``sum(C(n, i), j <= i < n + 1 -
    j) / 2**n``, is at least ``confidence``. None when even the smallest and largest value fall short
    (fewer than 6 values at 95%)."""
    ordered = sorted(values)
    n = len(ordered)
    best = None
    for j in range(1, n // 2 + 1):
        if sum(math.comb(n, i) for i in range(j, n + 1 - j)) / 2**n < confidence:
            break
        best = (ordered[j - 1], ordered[n - j])
    return best


def interval_text(values: Sequence[float]) -> str:
    interval = median_interval(values)
    return f"{interval[0]:.3f}-{interval[1]:.3f}" if interval else ""


def report(
    cells: dict[tuple[str, str], Cell],
    chosen: list[tuple[Case, list[str]]],
    streams: list[StreamResult],
    args: argparse.Namespace,
    header: Iterable[str],
) -> str:
    out: list[str] = [*header, ""]
    if chosen:
        out += [
            "| case | variant | bytes | req/s | vs bare | vs bare, 95% interval | vs bare, min-max "
            "| p50 ms | p99 ms | server µs/req | server busy | consent vs limit | consent vs naive "
            "| failed runs |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for case, names in chosen:
            bare = cells.get((case.name, "bare"))
            for name in names:
                cell = cells[case.name, name]
                ratios = cell.ratios(bare) if bare is not None and name != "bare" else []
                spread = f"{min(ratios):.3f}-{max(ratios):.3f}" if ratios else ""
                versus = {
                    other: ratio_text(cell.ratios(cells[case.name, other]))
                    if name == "consent" and (case.name, other) in cells
                    else ""
                    for other in ("limit", "naive")
                }
                size = f"{cell.size:,}" + (f" ({cell.encoding})" if cell.encoding else "")
                label = f"**{name}**" if name == "consent" else name
                out.append(
                    f"| {case.label} | {label} | {size} | {cell.median('rate'):,.0f} | {ratio_text(ratios)} "
                    f"| {interval_text(ratios)} | {spread} "
                    f"| {cell.median('p50'):.2f} | {cell.median('p99'):.2f} "
                    f"| {cell.median('cpu_us'):.0f} | {cell.median('busy'):.0%} | {versus['limit']} "
                    f"| {versus['naive']} "
                    f"| {cell.failed()} |"
                )
        out.append("")
    if streams:
        bare_stream = next((result for result in streams if result.variant == "bare"), None)
        out += [
            f"`/stream` ({STREAM_MB} MB of HTML, undecided visitor), {args.stream_tries} downloads each, "
            "interleaved; medians:",
            "",
            "| variant | first response byte ms | vs bare ms | first body byte ms | vs bare ms "
            "| download s | MB/s | RSS before MB | peak MB, 1st download | growth MB | peak MB, all |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for result in streams:
            fetches = result.fetches
            if not fetches:
                continue

            def median_of(name: str, values: list[Fetch]) -> float:
                return statistics.median(float(getattr(one, name)) for one in values)

            deltas = {"first_byte": "", "first_body": ""}
            if bare_stream is not None and result is not bare_stream:
                for key in deltas:
                    pairs = zip(fetches, bare_stream.fetches, strict=False)
                    differences = [float(getattr(a, key)) - float(getattr(b, key)) for a, b in pairs]
                    deltas[key] = f"{statistics.median(differences):+.3f}"
            total = median_of("total", fetches)
            growth = (result.peak_first_kb - result.rss_before_kb) / 1024
            label = f"**{result.variant}**" if result.variant == "consent" else result.variant
            out.append(
                f"| {label} | {median_of('first_byte', fetches):.3f} | {deltas['first_byte']} "
                f"| {median_of('first_body', fetches):.3f} | {deltas['first_body']} | {total:.3f} "
                f"| {STREAM_MB * MB / total / 1e6:,.0f} | {result.rss_before_kb / 1024:.1f} "
                f"| {result.peak_first_kb / 1024:.1f} | {growth:+.1f} | {result.peak_all_kb / 1024:.1f} |"
            )
        out.append("")
        if not all(result.hwm for result in streams):
            out.append("VmHWM could not be reset: the peaks are VmRSS sampled every 2 ms.")
        out.append("Goals (issue 7): RSS growth under 20 MB, time to first byte within 1 ms of bare.")
        out.append("")
    failures = [
        f"{case_name} {name}: {run.describe()}"
        for (case_name, name), cell in cells.items()
        for run in cell.runs
        if run is not None and run.failed
    ]
    failures += [f"stream {result.variant}: {problem}" for result in streams for problem in result.problems]
    out.append("Failed runs:" if failures else "No failed run.")
    out += [f"- {failure}" for failure in failures]
    return "\n".join(out) + "\n"


# -- main -------------------------------------------------------------------------------------------------


def names_list(text: str, known: Sequence[str], what: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="Quick run: python -m benchmarks.bench_http --rounds 1 --duration 2 --stream-tries 3",
    )
    parser.add_argument("--rounds", type=int, default=7, help="measured rounds (default 7)")
    parser.add_argument(
        "--duration", type=int, default=8, help="measured seconds per case, variant and round (default 8)"
    )
    parser.add_argument(
        "--slices",
        type=int,
        default=8,
        help="wrk runs the duration is split into, the case's variants taking turns (default 8: 1 s each)",
    )
    parser.add_argument("--warmup", type=int, default=1, help="seconds per warm-up run (dropped), 0: none")
    parser.add_argument(
        "--servers",
        choices=("fresh", "once"),
        default="fresh",
        help="fresh (default): new servers every round, each warmed up; once: one set for the whole run",
    )
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument(
        "--cases",
        type=lambda text: names_list(text, CASE_NAMES, "cases"),
        default=list(CASE_NAMES),
        help=f"comma-separated, of: {', '.join(CASE_NAMES)} (default: all)",
    )
    parser.add_argument(
        "--variants",
        type=lambda text: names_list(text, ALL_VARIANTS, "variants"),
        default=list(ALL_VARIANTS),
        help=f"comma-separated, of: {', '.join(ALL_VARIANTS)} (default: all)",
    )
    parser.add_argument("--stream-tries", type=int, default=20, help="downloads of /stream per variant")
    parser.add_argument("--output", type=Path, help="also write the Markdown report to this file")
    parser.add_argument(
        "--site",
        choices=sorted(SITES),
        default="starlette",
        help="the app behind every variant: a Starlette app (default) or the raw ASGI one",
    )
    args = parser.parse_args()
    if not 1 <= args.rounds <= 50 or not 1 <= args.duration <= 600 or not 0 <= args.warmup <= 600:
        parser.error("--rounds 1..50, --duration 1..600 s, --warmup 0..600 s")
    if not 1 <= args.slices <= args.duration or args.duration % args.slices:
        parser.error("--slices must divide --duration (whole seconds per wrk run)")
    if not 1 <= args.connections <= 10_000 or not 1 <= args.stream_tries <= 1000:
        parser.error("--connections 1..10000, --stream-tries 1..1000")
    if not fast_stack():
        parser.error("needs uvloop and httptools beside uvicorn: pip install uvicorn uvloop httptools")
    chosen = plan([case for case in CASES if case.name in args.cases], args.variants)
    streamed = STREAM in args.cases and any(name in args.variants for name in STREAM_VARIANTS)
    if chosen and shutil.which("wrk") is None:
        sys.exit(
            "wrk not found: install it (Debian/Ubuntu: sudo apt-get install wrk; else build it from "
            "https://github.com/wg/wrk), or run only --cases stream"
        )
    if not chosen and not streamed:
        parser.error("nothing to run: no selected case has a selected variant")

    pin = pinning()  # decided before this process pins itself to the load's core
    if not pin:
        print("warning: taskset or cores 0 and 1 unavailable: server and load are not pinned", flush=True)
    measured = [name for name in ALL_VARIANTS if any(name in names for _case, names in chosen)]
    streamed_variants = [name for name in STREAM_VARIANTS if name in args.variants] if streamed else []
    cookies = {
        "accepted": decided_cookie(ACCEPT_ALL, "accept_all"),
        "rejected": decided_cookie(frozenset(), "reject_all"),
    }
    settings = (
        f"uvicorn (1 worker, uvloop + httptools, no access log) on cpu {SERVER_CPU}, wrk and this process on "
        f"cpu {LOAD_CPU} (taskset)"
        if pin
        else "unpinned (no taskset or fewer than 2 cores)"
    )
    fresh = args.servers == "fresh"
    runs = sum(len(names) for _case, names in chosen)
    warmups = args.rounds if fresh else 1
    estimate = runs * (warmups * args.warmup + args.rounds * (args.duration + args.slices * WRK_START))
    estimate += len(measured) * warmups * SERVER_START + (args.stream_tries * 2 if streamed else 0)
    slice_seconds = args.duration // args.slices
    slicing = (
        f"`wrk -t1 -c{args.connections} -d{args.duration}s --latency`"
        if args.slices == 1
        else f"{args.slices} runs of `wrk -t1 -c{args.connections} -d{slice_seconds}s --latency`, the "
        "case's variants taking turns (A B, B A, ...)"
    )
    load_before = load_average()
    print(f"load average before: {load_before}", flush=True)
    print(
        f"{settings}; {runs} cells per round, each {slicing}, "
        f"{'fresh servers every round' if fresh else 'one set of servers'}, "
        f"{'warm-up runs of ' + str(args.warmup) + ' s dropped, ' if args.warmup else ''}"
        f"{args.rounds} rounds; about {estimate / 60:.1f} min",
        flush=True,
    )

    cells = {(case.name, name): Cell(case, name) for case, names in chosen for name in names}
    streams: list[StreamResult] = []
    with tempfile.TemporaryDirectory(prefix="bench-http-") as directory:
        if pin:
            os.sched_setaffinity(0, {LOAD_CPU})

        def servers(names: list[str]) -> contextlib.AbstractContextManager[dict[str, Server]]:
            return started_servers(names, site=args.site, directory=Path(directory), pin=pin)

        def ready(running: dict[str, Server]) -> None:
            listed = ", ".join(f"{s.variant} :{s.port} pid {s.pid}" for s in running.values())
            print(f"servers: {listed}", flush=True)
            answered(chosen, cells, running, cookies)

        if streamed_variants:
            print("stream:", flush=True)
            with servers(streamed_variants) as running:
                streams = run_stream(running, args.stream_tries)
        if chosen and fresh:
            for number in range(1, args.rounds + 1):
                with servers(measured) as running:
                    ready(running)
                    label = f"round {number}/{args.rounds}"
                    if args.warmup:
                        warm_up = f"{label} warm-up"
                        run_round(number, warm_up, chosen, cells, running, cookies, args, keep=False)
                    run_round(number, label, chosen, cells, running, cookies, args, keep=True)
        elif chosen:
            with servers(measured) as running:
                ready(running)
                if args.warmup:
                    run_round(0, "warm-up", chosen, cells, running, cookies, args, keep=False)
                for number in range(1, args.rounds + 1):
                    label = f"round {number}/{args.rounds}"
                    run_round(number, label, chosen, cells, running, cookies, args, keep=True)

    header = [
        "## HTTP throughput and streaming (`python -m benchmarks.bench_http`)",
        "",
        f"Machine: {machine()}.",
        f"Site (the app behind every variant): {args.site}.",
        f"Load average (1, 5, 15 min) before: {load_before}, after: {load_average()}.",
        "",
        f"How: {settings}; "
        + (
            "a fresh server per variant every round (a new process: a new draw of memory layout and hash "
            "seed), each warmed up"
            if fresh
            else "one server per variant, started once"
        )
        + (f" with a {args.warmup} s run of every case, dropped" if args.warmup else "")
        + f". Per case and variant and round, {args.duration} s of load: {slicing}, with a "
        f"browser's headers, {args.rounds} interleaved round{'s' if args.rounds != 1 else ''} "
        "(order rotated each round). "
        + (
            "A round's req/s is the mean of its slices', its latencies the medians of theirs. "
            if args.slices > 1
            else ""
        )
        + 'req/s, latencies and server CPU per request are medians over the rounds; "vs" columns are medians '
        "of per-round ratios of req/s (bare: same case, same round); the 95% interval is the median's, "
        "distribution-free (order statistics; blank under 6 rounds). bytes: the response body as sent. "
        "Server busy: uvicorn's CPU time over wall time (100%: core 0 saturated; much less means the "
        "load or another process held the server back).",
    ]
    text = report(cells, chosen, streams, args, header)
    print()
    print(text, end="")
    if args.output is not None:
        args.output.write_text(text)
        print(f"(written to {args.output})")
    failed = any(cell.failed() for cell in cells.values()) or any(result.problems for result in streams)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
