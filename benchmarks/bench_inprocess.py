"""Added CPU time per request, in process: direct ASGI calls, bare app and middleware interleaved.

Run from the repository root: ``python -m benchmarks.bench_inprocess``. Each case calls the app
``CALLS`` times in one coroutine (the send is a no-op), for the bare site and for the site behind
``ConsentMiddleware`` in turn, ``BATCHES`` times interleaved; the figure is the minimum batch of each,
per call, and their difference is what the middleware adds. Far steadier than HTTP throughput: no
sockets, no server, no scheduler between the two.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from pathlib import Path
from typing import Final

from starlette.types import ASGIApp, Message, Scope

from benchmarks.apps import ACCEPT_ALL, SITES, call, consent, decided_cookie, request_scope

CALLS: Final = 2000
BATCHES: Final = 15


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Message) -> None:
    return None


async def batch(app: ASGIApp, scope: Scope, calls: int) -> float:
    # CPU time of this thread: what another process does while this one waits does not count.
    start = time.thread_time()
    for _ in range(calls):
        await app(dict(scope), _receive, _send)
    return (time.thread_time() - start) / calls


def measure(apps: dict[str, ASGIApp], scope: Scope, calls: int, batches: int) -> dict[str, float]:
    """Minimum over interleaved batches of the time per call, in microseconds."""
    best = dict.fromkeys(apps, float("inf"))

    async def run() -> None:
        for app in apps.values():
            await batch(app, scope, calls // 10)  # warm caches
        for _ in range(batches):
            for name, app in apps.items():
                best[name] = min(best[name], await batch(app, scope, calls))

    gc.disable()
    try:
        asyncio.run(run())
    finally:
        gc.enable()
    return {name: value * 1e6 for name, value in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=CALLS)
    parser.add_argument("--batches", type=int, default=BATCHES)
    parser.add_argument("--site", choices=sorted(SITES), default="asgi", help="the app behind it")
    args = parser.parse_args()
    site = SITES[args.site]()
    print(
        f"site: {args.site}; {args.batches} batches of {args.calls} calls, minimum per call (thread CPU time)"
    )
    with tempfile.TemporaryDirectory() as work:
        middleware = consent(site, Path(work))
        accepted = decided_cookie(ACCEPT_ALL, "accept_all").encode()
        rejected = decided_cookie(frozenset(), "reject_all").encode()
        cases = {
            "JSON route, undecided": ("/json", None),
            "JSON route, decided (accepted all)": ("/json", accepted),
            "5 KB page, undecided (banner + gating)": ("/page", None),
            "5 KB page, decided (accepted all)": ("/page", accepted),
            "5 KB page, decided (rejected: gating)": ("/page", rejected),
            "5 KB page per request, undecided (cache miss)": ("/page-unique", None),
            "5 KB page per request, decided (rejected, miss)": ("/page-unique", rejected),
            "100 KB page, undecided": ("/page100k", None),
        }
        print(f"{'case':50} {'bare µs':>8} {'consent µs':>11} {'added µs':>9}")
        for name, (path, cookie) in cases.items():
            scope = request_scope(path, [(b"cookie", cookie)] if cookie else None)
            asyncio.run(call(middleware, scope))
            result = measure({"bare": site, "consent": middleware}, scope, args.calls, args.batches)
            added = result["consent"] - result["bare"]
            print(f"{name:50} {result['bare']:8.2f} {result['consent']:11.2f} {added:9.2f}")


if __name__ == "__main__":
    main()
