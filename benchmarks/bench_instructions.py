"""Instructions the middleware adds per request, counted by valgrind's callgrind.

Timings move with whatever else the machine does; instruction counts do not: the same code, inputs and
environment give the same count. For each case this runs a child process under
``valgrind --tool=callgrind`` that sends requests straight through ASGI (fresh header objects per
request, as uvicorn makes them), once with ``SHORT`` and once with ``LONG`` requests, and takes the
difference per request: start-up and imports cancel out. "added" is the middleware's count less the
bare site's.

Usage: ``python -m benchmarks.bench_instructions [--site asgi|starlette]`` (needs valgrind; about
five minutes). ``--child`` is the measured process, run by the parent.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final

from starlette.types import Message

from benchmarks.apps import ACCEPT_ALL, SITES, call, consent, decided_cookie, request_scope

SHORT: Final = 200
LONG: Final = 1200
CASES: Final = {
    "JSON route, undecided": ("/json", ""),
    "JSON route, decided (accepted all)": ("/json", "accept"),
    "5 KB page, undecided (banner + gating)": ("/page", ""),
    "5 KB page, decided (accepted all)": ("/page", "accept"),
    "5 KB page, decided (rejected: gating)": ("/page", "reject"),
}
TOTALS: Final = re.compile(r"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


def child(site_name: str, variant: str, path: str, cookie: str, requests: int) -> None:
    """The measured process: ``requests`` requests to ``path`` through the bare site or the middleware."""
    site = SITES[site_name]()
    with tempfile.TemporaryDirectory() as work:
        app = consent(site, Path(work)) if variant == "consent" else site
        extra = None
        if cookie == "accept":
            extra = [(b"cookie", decided_cookie(ACCEPT_ALL, "accept_all").encode())]
        elif cookie == "reject":
            extra = [(b"cookie", decided_cookie(frozenset(), "reject_all").encode())]
        scope = request_scope(path, extra)

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            return None

        async def run() -> None:
            for _ in range(3):  # caches warm, as on a server that has served a few requests
                await call(app, dict(scope))
            for _ in range(requests):
                fresh = dict(scope)
                fresh["headers"] = [(bytes(bytearray(k)), bytes(bytearray(v))) for k, v in scope["headers"]]
                await app(fresh, receive, send)

        asyncio.run(run())


def count(site_name: str, variant: str, path: str, cookie: str, requests: int) -> int:
    """Instructions of one child run (all of it: start-up included)."""
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "callgrind.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "benchmarks.bench_instructions",
            "--child",
            site_name,
            variant,
            path,
            cookie or "-",
            str(requests),
        ]
        environment = {**os.environ, "PYTHONHASHSEED": "0"}
        subprocess.run(command, check=True, capture_output=True, env=environment)  # noqa: S603 (fixed arguments)
        found = TOTALS.search(out.read_text())
        if found is None:
            raise RuntimeError("callgrind wrote no totals")
        return int(found.group(1))


def per_request(site_name: str, variant: str, path: str, cookie: str) -> float:
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        short = pool.submit(count, site_name, variant, path, cookie, SHORT)
        long = pool.submit(count, site_name, variant, path, cookie, LONG)
        return (long.result() - short.result()) / (LONG - SHORT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", choices=sorted(SITES), default="asgi", help="the app behind it")
    parser.add_argument("--child", nargs=5, metavar=("SITE", "VARIANT", "PATH", "COOKIE", "N"))
    args = parser.parse_args()
    if args.child:
        site_name, variant, path, cookie, requests = args.child
        child(site_name, variant, path, "" if cookie == "-" else cookie, int(requests))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed (Debian package valgrind)")
    print(f"site: {args.site}; instructions per request ({LONG} less {SHORT} requests, under callgrind)")
    print(f"{'case':42} {'bare':>9} {'consent':>9} {'added':>9}")
    for name, (path, cookie) in CASES.items():
        bare = per_request(args.site, "bare", path, cookie)
        middleware = per_request(args.site, "consent", path, cookie)
        print(f"{name:42} {bare:9,.0f} {middleware:9,.0f} {middleware - bare:9,.0f}")


if __name__ == "__main__":
    main()
