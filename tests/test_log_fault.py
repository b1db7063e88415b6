"""The consent log under a database crash, end to end (SPEC §5).

With decisions being posted through uvicorn, the PostgreSQL server is stopped (immediate mode) and
started again; afterwards every decision that got a 2xx/303 is in the log exactly once, and the chain
verifies. The server is a private one (``tests/postgres.py: private_cluster``), never the shared CI
server, so killing it harms nothing else.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psycopg
import pytest
from starlette.types import Receive, Scope, Send

from consent_middleware import ConsentMiddleware
from consent_middleware.log import open_log
from consent_middleware.log.writer import StoreLog
from consent_middleware.state import DecisionCodec

from .conftest import SECRET
from .postgres import Cluster, private_cluster
from .servers import ServerThread, wait_until

CLIENTS: Final = 6
#: Hard bounds on the load: requests per client, and seconds from the first request.
MAX_REQUESTS_PER_CLIENT: Final = 4000
CLIENT_SECONDS: Final = 25.0
BEFORE_OUTAGE: Final = 100  # confirmed decisions before the server is killed
DURING_OUTAGE: Final = 50  # at least this many confirmed while it is down ...
OUTAGE_SECONDS: Final = 1.0  # ... and down at least this long
AFTER_RESTART: Final = 100  # confirmed decisions after it is back
PHASE_DEADLINE: Final = 8.0
REPLAY_DEADLINE: Final = 15.0

# Phases, as the clients see them when a request starts and when its answer arrives.
UP, STOPPING, DOWN, STARTING, BACK = "up", "stopping", "down", "starting", "back"


async def tiny_app(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


@dataclass(frozen=True, slots=True)
class Outcome:
    """One posted decision: what came back, and the phases when it was sent and answered."""

    kind: str  # "json" or "form"
    method: str  # the decision posted
    status: int | None  # None: no HTTP answer at all
    consent_id: str | None  # from the body (JSON) or the signed cookie (form), when confirmed
    error: str | None
    sent: str
    answered: str

    @property
    def confirmed(self) -> bool:
        return self.error is None and self.consent_id is not None


class Load:
    """Fresh visitors (no cookies: every decision a new consent id) posting decisions continuously."""

    def __init__(self, port: int, codec: DecisionCodec) -> None:
        self.port = port
        self.origin = f"http://127.0.0.1:{port}"
        self.codec = codec
        self.phase = UP
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(number,), name=f"client-{number}", daemon=True)
            for number in range(CLIENTS)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(20)
        assert not any(thread.is_alive() for thread in self._threads), "a client did not stop"

    def count(self, predicate: Callable[[Outcome], bool]) -> int:
        with self._lock:
            return sum(1 for outcome in self.outcomes if predicate(outcome))

    def _client(self, number: int) -> None:
        deadline = time.monotonic() + CLIENT_SECONDS
        connection: http.client.HTTPConnection | None = None
        try:
            for sequence in range(MAX_REQUESTS_PER_CLIENT):
                if self._stop.is_set() or time.monotonic() >= deadline:
                    return
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
                outcome = self._post(connection, (number + sequence) % 3)
                with self._lock:
                    self.outcomes.append(outcome)
                if outcome.status is None:  # the connection is in an unknown state: a new one
                    connection.close()
                    connection = None
        finally:
            if connection is not None:
                connection.close()

    def _post(self, connection: http.client.HTTPConnection, variant: int) -> Outcome:
        if variant == 0:  # the banner's form, no JavaScript: a 303 back to the page
            kind, method, expected = "form", "reject_all", 303
            body = b"decision=reject_all&next=%2Farticle"
            content_type = "application/x-www-form-urlencoded"
        else:  # the banner script's fetch: 200 with the new state
            kind, method, expected = "json", ("accept_all", "custom")[variant - 1], 200
            body = json.dumps({"decision": method, "categories": ["analytics"]}).encode()
            content_type = "application/json"
        headers = {"Content-Type": content_type, "Origin": self.origin, "User-Agent": "fault-test"}
        sent = self.phase
        try:
            connection.request("POST", "/_consent", body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as error:
            return Outcome(kind, method, None, None, f"{type(error).__name__}: {error}", sent, self.phase)
        answered = self.phase
        if response.status != expected:
            text = payload[:200].decode("utf-8", "replace")
            return Outcome(
                kind, method, response.status, None, f"HTTP {response.status}: {text}", sent, answered
            )
        cookie_id = self._cookie_consent_id(response.msg.get_all("set-cookie") or [])
        problems = [] if cookie_id else ["no valid signed consent cookie"]
        if kind == "json":
            body_id = json.loads(payload).get("consent_id")
            if body_id != cookie_id:
                problems.append(f"body consent_id {body_id} is not the cookie's {cookie_id}")
        elif (location := response.getheader("location")) != "/article":
            problems.append(f"redirected to {location!r}")
        if problems:
            return Outcome(kind, method, response.status, None, "; ".join(problems), sent, answered)
        return Outcome(kind, method, response.status, cookie_id, None, sent, answered)

    def _cookie_consent_id(self, cookies: list[str]) -> str | None:
        for header in cookies:
            name, _, rest = header.partition("=")
            if name.strip() == "consent":
                verified = self.codec.decode(rest.partition(";")[0])
                return verified.decision.consent_id if verified else None
        return None


def middleware_log(middleware: ConsentMiddleware) -> StoreLog | None:
    """The log the middleware made, or ``None`` if its internals changed (the middleware has no public
    handle on it: ``_endpoints._log``)."""
    log = getattr(getattr(middleware, "_endpoints", None), "_log", None)
    return log if isinstance(log, StoreLog) else None


def fast_retries(log: StoreLog | None) -> bool:
    """Workaround until the middleware takes the log's retry interval as an option: shorten the backoff
    (0.5 s doubling up to 30 s by default) before the log's first use. Without it (the internals
    changed) the test still passes, only the replay comes later."""
    if log is None:
        return False
    log.retry_min, log.retry_max = 0.05, 0.25
    return True


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with private_cluster() as server:
        yield server


def test_decisions_survive_postgres_crash_and_restart(
    cluster: Cluster, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    began = time.monotonic()
    spool = tmp_path / "spool"
    middleware = ConsentMiddleware(tiny_app, secret_key=SECRET, consent_log=cluster.url, log_spool=spool)
    app_log = middleware_log(middleware)
    if app_log is not None:  # its writer thread ends with the test, whatever happens (close is idempotent)
        request.addfinalizer(lambda: asyncio.run(app_log.close()))
    fast = fast_retries(app_log)
    config = middleware.config
    codec = DecisionCodec.for_config(config)
    with ServerThread(middleware) as server:
        load = Load(server.port, codec)
        timeline: dict[str, float] = {}
        spooled_lines = 0

        def spool_empty() -> bool:
            return not spool.exists() or spool.stat().st_size == 0

        def note_replay() -> None:
            """Remember when the spool is first seen replayed after the restart."""
            if "back" in timeline and "replayed" not in timeline and spool_empty():
                timeline["replayed"] = time.monotonic()

        try:
            load.start()
            timeline["start"] = time.monotonic()
            assert wait_until(lambda: load.count(lambda o: o.confirmed) >= BEFORE_OUTAGE, PHASE_DEADLINE), (
                f"fewer than {BEFORE_OUTAGE} decisions confirmed in {PHASE_DEADLINE} s with the server up: "
                f"{load.count(lambda o: o.confirmed)} confirmed, errors: "
                f"{[o.error for o in load.outcomes if o.error][:5]}"
            )

            load.phase = STOPPING
            timeline["stopping"] = time.monotonic()
            cluster.stop_immediately()
            load.phase = DOWN
            timeline["down"] = time.monotonic()

            def during(outcome: Outcome) -> bool:
                return outcome.confirmed and outcome.sent == DOWN and outcome.answered == DOWN

            outage_long_enough = wait_until(
                lambda: (
                    load.count(during) >= DURING_OUTAGE
                    and time.monotonic() - timeline["down"] >= OUTAGE_SECONDS
                ),
                PHASE_DEADLINE,
            )
            # What the spool holds now, just before the server comes back (a newline per entry).
            spooled_lines = spool.read_bytes().count(b"\n") if spool.exists() else 0
            load.phase = STARTING
            timeline["starting"] = time.monotonic()
            cluster.start()
            load.phase = BACK
            timeline["back"] = time.monotonic()
            assert outage_long_enough, (
                f"only {load.count(during)} decisions confirmed in "
                f"{time.monotonic() - timeline['down']:.1f} s "
                f"while the server was down (wanted {DURING_OUTAGE}); errors: "
                f"{[o.error for o in load.outcomes if o.error][:5]}"
            )

            def after(outcome: Outcome) -> bool:
                return outcome.confirmed and outcome.sent == BACK

            def enough_after() -> bool:
                note_replay()
                return load.count(after) >= AFTER_RESTART

            assert wait_until(enough_after, PHASE_DEADLINE), (
                f"only {load.count(after)} decisions confirmed in {PHASE_DEADLINE} s after the restart"
            )
        finally:
            load.stop()
    timeline["clients stopped"] = time.monotonic()

    outcomes = list(load.outcomes)
    confirmed = [outcome for outcome in outcomes if outcome.confirmed]
    failed = [outcome for outcome in outcomes if not outcome.confirmed]
    expected_ids = {o.consent_id: o.method for o in confirmed if o.consent_id is not None}
    # Each confirmed decision by the phase it was sent and answered in; "transition" when those differ.
    phases = Counter(o.sent if o.sent == o.answered else "transition" for o in confirmed)
    window = {
        UP: timeline["stopping"] - timeline["start"],
        STOPPING: timeline["down"] - timeline["stopping"],
        DOWN: timeline["starting"] - timeline["down"],
        STARTING: timeline["back"] - timeline["starting"],
        BACK: timeline["clients stopped"] - timeline["back"],
    }
    figures = (
        f"{len(outcomes)} posted, {len(confirmed)} confirmed, {len(failed)} failed; confirmed by phase: "
        + ", ".join(
            f"{name} {phases[name]} in {window[name]:.2f} s ({phases[name] / window[name]:.0f}/s)"
            for name in (UP, STOPPING, DOWN, STARTING, BACK)
        )
        + f", across a phase change {phases['transition']}; "
        f"{spooled_lines} spooled before the restart; fast retries: {fast}"
    )

    def counted() -> int:
        with psycopg.connect(cluster.url, connect_timeout=5) as db:
            row = db.execute("SELECT count(*) FROM consent_log").fetchone()
            return 0 if row is None else int(row[0])

    def replayed() -> bool:
        note_replay()
        return spool_empty() and counted() >= len(confirmed)

    done = wait_until(replayed, REPLAY_DEADLINE, interval=0.05)
    if "replayed" in timeline:
        figures += f"; spool replayed {timeline['replayed'] - timeline['back']:.2f} s after the restart"
    spool_left = spool.stat().st_size if spool.exists() else 0
    if app_log is not None:  # stop its writer thread now (else at interpreter exit)
        asyncio.run(app_log.close())

    log = open_log(cluster.url, secret_keys=config.secret_key, spool_path=tmp_path / "reader.spool")
    assert log is not None
    entries = list(log.entries())
    report = log.verify()
    by_id = Counter(entry.consent_id for entry in entries)
    missing = [consent_id for consent_id in expected_ids if by_id[consent_id] == 0]
    twice = [consent_id for consent_id, times in by_id.items() if times > 1]
    unknown = [consent_id for consent_id in by_id if consent_id not in expected_ids]
    wrong_method = [e.consent_id for e in entries if expected_ids.get(e.consent_id, e.method) != e.method]
    total = time.monotonic() - began

    print(f"\nfault test: {figures}; {len(entries)} in the log; {total:.1f} s in all")  # shown with -s
    assert done, (
        f"the spool was not replayed within {REPLAY_DEADLINE} s: {spool_left} bytes left, "
        f"{counted()} entries stored; {figures}\n{cluster.server_log()}"
    )
    assert not failed, f"decisions not confirmed: {[(o.sent, o.error) for o in failed][:10]}; {figures}"
    assert phases[DOWN] > 0, f"no decision went through while the server was down; {figures}"
    assert spooled_lines > 0, f"nothing was spooled while the server was down; {figures}"
    assert not missing, (
        f"{len(missing)} confirmed decisions are not in the log, e.g. {missing[:3]}; {figures}"
    )
    assert not twice, f"{len(twice)} decisions are in the log more than once, e.g. {twice[:3]}; {figures}"
    assert not unknown, f"{len(unknown)} log entries match no confirmed decision: {unknown[:3]}; {figures}"
    assert not wrong_method, f"entries with another method than posted: {wrong_method[:3]}; {figures}"
    assert len(expected_ids) == len(confirmed), f"a consent id was given to two fresh visitors; {figures}"
    assert len(entries) == len(confirmed), f"{len(entries)} entries for {len(confirmed)} decisions; {figures}"
    assert report.ok, f"the chain does not verify: {report.problems[:5]}; {figures}"
    assert report.checked == len(entries)
    assert spool_left == 0, f"the spool still holds {spool_left} bytes; {figures}"
    assert not spool.with_name(spool.name + ".rejected").exists(), "spooled lines were rejected"
    assert total < 30, f"the fault test took {total:.1f} s; {figures}"
