"""The consent log (SPEC §5): the same tests over a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import secrets
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from consent_middleware.log import ConsentLog, LogEntry, LogUnavailable, NewEntry, open_log
from consent_middleware.log.base import Signer, format_time
from consent_middleware.log.spool import Spool
from consent_middleware.log.store import COLUMNS, SchemaTooNew, Store
from consent_middleware.log.writer import StoreLog

from .conftest import OLD_SECRET, SECRET
from .postgres import Proxy, free_port, postgres_server, with_search_path

NEW_SECRET = "new-secret-key-0123456789-abcdefghijklmnopq"
BANNER_HASH = hashlib.sha256(b"the banner").hexdigest()
NOW = datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)


def make_entry(
    consent_id: str | None = None,
    *,
    when: datetime | None = None,
    method: str = "custom",
    categories: tuple[str, ...] = ("analytics", "preferences"),
) -> NewEntry:
    return NewEntry(
        consent_id=consent_id or secrets.token_hex(16),
        time=when or datetime.now(UTC),
        policy_version="1",
        categories=categories,
        method=method,
        language="nl",
        country="BE",
        ip_truncated="203.0.113.0",
        ua_family="Firefox",
        banner_hash=BANNER_HASH,
        entry_id=secrets.token_hex(16),
    )


def key_id(secret: str) -> str:
    derived = hmac.new(secret.encode(), b"consent-middleware.log.v1", hashlib.sha256).digest()
    return hashlib.sha256(derived).hexdigest()[:8]


def as_new(entry: LogEntry) -> NewEntry:
    return NewEntry(**{name: getattr(entry, name) for name in NewEntry.__dataclass_fields__})


async def eventually(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


# -- backends -------------------------------------------------------------------------------------


class Backend:
    """One store under test: its URL, raw SQL access (to tamper), and outages."""

    name = ""
    url = ""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.spool_path = tmp / "consent-log.spool"
        self.logs: list[StoreLog] = []

    def open(
        self,
        url: str | None = None,
        *,
        keys: tuple[str, ...] = (SECRET,),
        spool_path: Path | None = None,
        fast_retry: bool = False,
    ) -> StoreLog:
        """A log of this store; ``fast_retry`` retries an unreachable store every 50-200 ms."""
        log = open_log(
            url or self.url,
            secret_keys=keys,
            spool_path=spool_path or self.spool_path,
            retry_min=0.05 if fast_retry else 0.5,
            retry_max=0.2 if fast_retry else 30.0,
        )
        assert isinstance(log, StoreLog)
        self.logs.append(log)
        return log

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def time_value(self, moment: datetime) -> object:
        """How a time is written in raw SQL for this store."""
        return moment

    def outage(self) -> tuple[str, Callable[[], None], Callable[[], None]]:
        """A URL of this store that starts unreachable, and functions to take it down and bring it back."""
        raise NotImplementedError

    def close(self) -> None:
        for log in self.logs:
            log.stop_threads(10)


class SQLiteBackend(Backend):
    name = "sqlite"

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.path = tmp / "log.sqlite3"
        self.url = f"sqlite:///{self.path}"  # an absolute path: four slashes

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            return db.execute(statement, params).fetchall()
        finally:
            db.close()

    def time_value(self, moment: datetime) -> object:
        return format_time(moment)

    def outage(self) -> tuple[str, Callable[[], None], Callable[[], None]]:
        # Root ignores permissions: a *file* where the database's directory should be stops it.
        blocked = self.tmp / "blocked"
        blocked.write_text("not a directory")

        def down() -> None:
            shutil.rmtree(blocked, ignore_errors=True)
            blocked.write_text("not a directory")

        def up() -> None:
            blocked.unlink()
            blocked.mkdir()

        return f"sqlite:///{blocked / 'log.sqlite3'}", down, up


class PostgresBackend(Backend):
    name = "postgres"

    def __init__(self, tmp: Path, url: str) -> None:
        super().__init__(tmp)
        self.url = url
        self.proxies: list[Proxy] = []

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as db:
            cursor = db.execute(statement.replace("?", "%s"), params)
            return cursor.fetchall() if cursor.description else []

    def outage(self) -> tuple[str, Callable[[], None], Callable[[], None]]:
        proxy = Proxy(self.url)  # not started: nothing listens on its port yet
        self.proxies.append(proxy)
        return proxy.url, proxy.stop, proxy.start

    def close(self) -> None:
        super().close()
        for proxy in self.proxies:
            proxy.close()


@pytest.fixture(scope="module")
def postgres_admin() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def _postgres_backend(admin: str, tmp: Path) -> Iterator[PostgresBackend]:
    schema = f"consent_test_{secrets.token_hex(6)}"
    with psycopg.connect(admin, autocommit=True) as db:
        db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    backend = PostgresBackend(tmp, with_search_path(admin, schema))
    try:
        yield backend
    finally:
        backend.close()
        with psycopg.connect(admin, autocommit=True) as db:
            db.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        sqlite_backend = SQLiteBackend(tmp_path)
        yield sqlite_backend
        sqlite_backend.close()
    else:
        yield from _postgres_backend(request.getfixturevalue("postgres_admin"), tmp_path)


@pytest.fixture
def postgres(postgres_admin: str, tmp_path: Path) -> Iterator[PostgresBackend]:
    yield from _postgres_backend(postgres_admin, tmp_path)


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> Iterator[SQLiteBackend]:
    backend = SQLiteBackend(tmp_path)
    yield backend
    backend.close()


# -- appending and reading ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_append_then_history_roundtrip_in_order(backend: Backend) -> None:
    log = backend.open()
    visitor = secrets.token_hex(16)
    mine = [
        make_entry(visitor, when=NOW + timedelta(seconds=second), method=method)
        for second, method in enumerate(("accept_all", "custom", "withdraw"))
    ]
    for entry in mine:
        await log.append(entry)
        await log.append(make_entry())  # someone else in between
    history = await log.history(visitor)
    assert [as_new(entry) for entry in history] == mine
    assert all(not entry.pending for entry in history)
    assert [entry.seq for entry in history] == [1, 3, 5]
    assert {entry.key_id for entry in history} == {key_id(SECRET)}
    assert all(len(entry.hmac) == 64 and len(entry.prev_hmac) == 64 for entry in history)
    assert history[0].time == NOW
    assert history[0].time.tzinfo is not None
    assert await log.history(secrets.token_hex(16)) == []
    await log.close()
    assert log.verify().ok


@pytest.mark.anyio
async def test_history_never_returns_another_visitors_entries(backend: Backend) -> None:
    log = backend.open()
    visitors = [secrets.token_hex(16) for _ in range(5)]
    await asyncio.gather(*(log.append(make_entry(visitor)) for visitor in visitors for _ in range(4)))
    for visitor in visitors:
        history = await log.history(visitor)
        assert len(history) == 4
        assert {entry.consent_id for entry in history} == {visitor}
        assert [entry.seq for entry in history] == sorted(entry.seq for entry in history)


@pytest.mark.anyio
async def test_concurrent_appends_are_each_stored_once_in_a_linear_chain(backend: Backend) -> None:
    log = backend.open()
    batches: list[int] = []
    make_store = log.make_store

    def counting_store(app: bool) -> Store:  # counts transactions, to see the group commit
        store = make_store(app)
        write = store.write

        def counted(entries: Any) -> int:
            batches.append(len(entries))
            return write(entries)

        setattr(store, "write", counted)  # noqa: B010
        return store

    log.make_store = counting_store
    entries = [make_entry() for _ in range(600)]
    await asyncio.gather(*(log.append(entry) for entry in entries))
    stored = list(log.entries())
    assert sorted(entry.entry_id for entry in stored) == sorted(entry.entry_id for entry in entries)
    assert [entry.seq for entry in stored] == list(range(1, 601))
    assert len(batches) < 100, "concurrent appends share transactions"
    report = log.verify()
    assert report.ok, report.problems
    assert report.checked == 600


@pytest.mark.anyio
async def test_two_app_instances_writing_at_once_keep_one_chain(backend: Backend) -> None:
    first, second = backend.open(), backend.open()
    entries = [make_entry() for _ in range(400)]
    await asyncio.gather(
        *(log.append(entry) for entry, log in zip(entries, [first, second] * 200, strict=True))
    )
    stored = list(first.entries())
    assert len(stored) == 400
    assert len({entry.entry_id for entry in stored}) == 400
    assert [entry.seq for entry in stored] == list(range(1, 401))
    assert second.verify().ok


@pytest.mark.anyio
async def test_reopening_an_existing_store(backend: Backend) -> None:
    visitor = secrets.token_hex(16)
    log = backend.open()
    await log.append(make_entry(visitor))
    await log.close()
    again = backend.open()
    await again.append(make_entry(visitor))
    history = await again.history(visitor)
    assert [entry.seq for entry in history] == [1, 2]
    assert history[1].prev_hmac == history[0].hmac
    assert again.verify().ok
    # Closed logs open again on use.
    await log.append(make_entry(visitor))
    assert len(await log.history(visitor)) == 3
    assert backend.sql("SELECT version FROM consent_log_schema_version") == [(1,)]


@pytest.mark.anyio
async def test_entries_streams_oldest_first_and_since(backend: Backend) -> None:
    log = backend.open()
    entries = [make_entry(when=NOW + timedelta(days=day)) for day in range(5)]
    for entry in entries:
        await log.append(entry)
    assert [as_new(entry) for entry in log.entries()] == entries
    assert [as_new(entry) for entry in log.entries(since=NOW + timedelta(days=3))] == entries[3:]
    assert list(log.entries(since=NOW + timedelta(days=9))) == []


# -- tamper evidence ------------------------------------------------------------------------------

EDITS: dict[str, Callable[[Backend, LogEntry], object]] = {
    "entry_id": lambda backend, entry: secrets.token_hex(16),
    "consent_id": lambda backend, entry: secrets.token_hex(16),
    "time": lambda backend, entry: backend.time_value(entry.time + timedelta(seconds=1)),
    "policy_version": lambda backend, entry: "2",
    "categories": lambda backend, entry: "[]",
    "method": lambda backend, entry: "accept_all",
    "language": lambda backend, entry: "fr",
    "country": lambda backend, entry: None,
    "ip_truncated": lambda backend, entry: "198.51.100.0",
    "ua_family": lambda backend, entry: "Chrome",
    "banner_hash": lambda backend, entry: hashlib.sha256(b"another banner").hexdigest(),
    "key_id": lambda backend, entry: "0badc0de",
    "prev_hmac": lambda backend, entry: "1" * 64,
    "hmac": lambda backend, entry: "f" * 64,
    "seq": lambda backend, entry: 102,
}
assert set(EDITS) == set(COLUMNS)


async def _three_entries(backend: Backend) -> tuple[StoreLog, list[LogEntry]]:
    log = backend.open()
    for _ in range(3):
        await log.append(make_entry())
    await log.close()
    stored = list(log.entries())
    assert log.verify().ok
    return log, stored


@pytest.mark.anyio
@pytest.mark.parametrize("field", list(EDITS))
async def test_verify_names_an_edited_entry(backend: Backend, field: str) -> None:
    log, stored = await _three_entries(backend)
    middle = stored[1]
    value = EDITS[field](backend, middle)
    backend.sql(f"UPDATE consent_log SET {field} = ? WHERE seq = 2", (value,))  # noqa: S608
    report = log.verify()
    assert not report.ok
    entry_id = value if field == "entry_id" else middle.entry_id
    seq = value if field == "seq" else 2
    assert any(f"seq {seq} (entry_id {entry_id})" in problem for problem in report.problems), report.problems


@pytest.mark.anyio
@pytest.mark.parametrize(("deleted", "named"), [(1, 2), (2, 3), (3, 2)])
async def test_verify_names_a_deleted_entry(backend: Backend, deleted: int, named: int) -> None:
    log, stored = await _three_entries(backend)
    backend.sql("DELETE FROM consent_log WHERE seq = ?", (deleted,))
    report = log.verify()
    assert not report.ok
    assert report.checked == 2
    # The deleted entry's seq, and the entry_id of its neighbour (the deleted one's is gone with it).
    problem = " ".join(report.problems)
    assert f"seq {deleted}" in problem
    assert f"seq {named} (entry_id {stored[named - 1].entry_id})" in problem


@pytest.mark.anyio
async def test_verify_detects_every_entry_deleted_and_an_edited_chain_state(backend: Backend) -> None:
    log, _ = await _three_entries(backend)
    backend.sql("UPDATE consent_log_chain SET head_seq = 2")
    assert "chain state" in " ".join(log.verify().problems)
    # The writer refuses to extend (and so re-sign) a chain whose state was edited: the entry is spooled.
    await log.append(make_entry())
    assert backend.spool_path.exists()
    backend.sql("UPDATE consent_log_chain SET head_seq = 3")
    backend.sql("DELETE FROM consent_log")
    report = log.verify()
    assert not report.ok
    assert "seq 1..3" in " ".join(report.problems)


@pytest.mark.anyio
async def test_key_rotation(backend: Backend) -> None:
    visitor = secrets.token_hex(16)
    old = backend.open(keys=(OLD_SECRET,))
    await old.append(make_entry(visitor))
    await old.append(make_entry(visitor))
    await old.close()
    rotated = backend.open(keys=(NEW_SECRET, OLD_SECRET))  # the new key signs, the old one still verifies
    await rotated.append(make_entry(visitor))
    history = await rotated.history(visitor)
    assert [entry.key_id for entry in history] == [key_id(OLD_SECRET)] * 2 + [key_id(NEW_SECRET)]
    assert key_id(OLD_SECRET) != key_id(NEW_SECRET)
    report = rotated.verify()
    assert report.ok
    assert report.checked == 3
    report = backend.open(keys=(NEW_SECRET,)).verify()  # the old key no longer listed
    assert not report.ok
    assert len(report.problems) == 2
    for entry, problem in zip(history[:2], report.problems, strict=True):
        assert f"seq {entry.seq} (entry_id {entry.entry_id})" in problem
        assert "unknown key" in problem
    assert not backend.open(keys=(OLD_SECRET,)).verify().ok  # and the newer entries need the new key


@pytest.mark.anyio
async def test_purge_keeps_the_rest_verifiable(backend: Backend) -> None:
    log = backend.open()
    entries = [make_entry(when=NOW - timedelta(days=10 - day)) for day in range(11)]  # -10d .. now
    for entry in entries:
        await log.append(entry)
    assert log.purge(older_than=NOW - timedelta(days=5)) == 5
    assert log.purge(older_than=NOW - timedelta(days=5)) == 0
    report = log.verify()
    assert report.ok, report.problems
    assert report.checked == 6
    assert [as_new(entry) for entry in log.entries()] == entries[5:]
    await log.append(make_entry(when=NOW))
    assert log.verify().ok
    # What stays is still protected: deleting the oldest remaining entry is noticed.
    backend.sql("DELETE FROM consent_log WHERE seq = 6")
    report = log.verify()
    assert not report.ok
    assert f"seq 7 (entry_id {entries[6].entry_id})" in " ".join(report.problems)


@pytest.mark.anyio
async def test_purge_everything_then_append(backend: Backend) -> None:
    log = backend.open()
    for day in range(3):
        await log.append(make_entry(when=NOW - timedelta(days=day)))
    assert log.purge(older_than=NOW + timedelta(days=1)) == 3
    report = log.verify()
    assert report.ok
    assert report.checked == 0
    await log.append(make_entry())
    assert [entry.seq for entry in log.entries()] == [4]
    assert log.verify().ok


@pytest.mark.anyio
async def test_purge_removes_only_a_prefix_of_the_chain(backend: Backend) -> None:
    log = backend.open()
    for days in (10, 1, 10):  # an old entry written late (a spool replayed after an outage)
        await log.append(make_entry(when=NOW - timedelta(days=days)))
    assert log.purge(older_than=NOW - timedelta(days=5)) == 1
    assert [entry.seq for entry in log.entries()] == [2, 3]
    assert log.verify().ok


# -- spool ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_spool_takes_decisions_while_the_store_is_unreachable(backend: Backend) -> None:
    url, _down, up = backend.outage()
    log = backend.open(url, fast_retry=True)
    visitor = secrets.token_hex(16)
    during = [make_entry(visitor, when=NOW + timedelta(seconds=second)) for second in range(5)]
    for entry in during:
        await log.append(entry)  # confirmed although the store is down
    others = [make_entry() for _ in range(20)]
    await asyncio.gather(*(log.append(entry) for entry in others))
    assert len(backend.spool_path.read_bytes().splitlines()) == 25
    pending = await log.history(visitor)
    assert [as_new(entry) for entry in pending] == during
    assert all(entry.pending for entry in pending)

    up()
    await eventually(lambda: not backend.spool_path.exists())
    history = await log.history(visitor)
    assert [as_new(entry) for entry in history] == during
    assert not any(entry.pending for entry in history)
    await log.append(make_entry(visitor))
    stored = list(log.entries())
    assert len(stored) == 26
    assert len({entry.entry_id for entry in stored}) == 26
    assert [entry.seq for entry in stored] == list(range(1, 27))
    assert log.verify().ok


@pytest.mark.anyio
async def test_store_lost_after_opening_then_back(postgres: PostgresBackend) -> None:
    url, down, up = postgres.outage()
    up()
    log = postgres.open(url, fast_retry=True)
    before = [make_entry() for _ in range(10)]
    for entry in before:
        await log.append(entry)
    down()  # cuts the open connections too
    lost = [make_entry() for _ in range(30)]
    await asyncio.gather(*(log.append(entry) for entry in lost))
    assert postgres.spool_path.exists()
    up()
    after = make_entry()
    await log.append(after)  # written after the spooled ones: the order is kept
    await eventually(lambda: not postgres.spool_path.exists())
    stored = list(log.entries())
    ids = [entry.entry_id for entry in stored]
    assert ids[:10] == [entry.entry_id for entry in before]
    assert sorted(ids[10:40]) == sorted(entry.entry_id for entry in lost)
    assert ids[40:] == [after.entry_id]
    assert log.verify().ok


@pytest.mark.anyio
async def test_spool_replay_is_exactly_once(backend: Backend) -> None:
    log = backend.open()
    stored_first = [make_entry() for _ in range(2)]
    for entry in stored_first:
        await log.append(entry)
    await log.close()
    # A replay that committed but crashed before removing the spool: the spool still holds a stored entry.
    waiting = [stored_first[1], make_entry(), make_entry()]
    Spool(backend.spool_path).append(waiting)
    Spool(backend.spool_path).append([waiting[2]])  # and one twice (a writer that timed out, then wrote)
    again = backend.open(fast_retry=True)
    await again.history(secrets.token_hex(16))  # the next open replays, without any new decision
    await eventually(lambda: not backend.spool_path.exists())
    last = make_entry()
    await again.append(last)
    ids = [entry.entry_id for entry in again.entries()]
    assert ids == [entry.entry_id for entry in [*stored_first, waiting[1], waiting[2], last]]
    assert again.verify().ok


@pytest.mark.anyio
async def test_a_hung_store_does_not_hold_a_decision(sqlite_backend: SQLiteBackend) -> None:
    log = sqlite_backend.open()
    log.append_timeout = 0.2
    release = threading.Event()
    make_store = log.make_store

    def hanging_store(app: bool) -> Store:
        store = make_store(app)
        write = store.write

        def hangs(entries: Any) -> int:
            release.wait(10)  # a store that stops answering (then comes back)
            return write(entries)

        setattr(store, "write", hangs)  # noqa: B010
        return store

    log.make_store = hanging_store
    entry = make_entry()
    started = time.monotonic()
    await log.append(entry)  # confirmed once the appender spooled it itself
    assert time.monotonic() - started < 5
    assert [waiting.entry_id for waiting in Spool(sqlite_backend.spool_path).read()] == [entry.entry_id]
    release.set()  # the late write commits it too; the replay then skips it
    await log.append(make_entry())
    await eventually(lambda: not sqlite_backend.spool_path.exists())
    stored = list(log.entries())
    assert [stored_entry.entry_id for stored_entry in stored].count(entry.entry_id) == 1
    assert len(stored) == 2
    assert log.verify().ok


@pytest.mark.anyio
async def test_append_raises_only_when_neither_store_nor_spool_takes_it(
    backend: Backend, tmp_path: Path
) -> None:
    url, _, _ = backend.outage()
    blocked = tmp_path / "spool-blocked"
    blocked.write_text("a file, so the spool cannot be created below it")
    log = backend.open(url, spool_path=blocked / "consent-log.spool", fast_retry=True)
    with pytest.raises(LogUnavailable):
        await log.append(make_entry())
    healthy = backend.open(spool_path=blocked / "consent-log.spool")
    await healthy.append(make_entry())  # a good store needs no spool


@pytest.mark.anyio
async def test_opening_is_lazy(backend: Backend, tmp_path: Path) -> None:
    if isinstance(backend, SQLiteBackend):
        url = f"sqlite:///{tmp_path / 'missing' / 'log.sqlite3'}"
    else:
        url = f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"
    log = backend.open(url, fast_retry=True)  # no error, no I/O
    assert not (tmp_path / "missing").exists()
    assert not backend.spool_path.exists()
    await log.close()
    started = time.monotonic()
    await log.append(make_entry())  # store unreachable: spooled, quickly
    assert time.monotonic() - started < 5
    assert backend.spool_path.exists()
    assert not backend.path.exists() if isinstance(backend, SQLiteBackend) else True


def test_spool_sets_aside_a_torn_line(tmp_path: Path, sqlite_backend: SQLiteBackend) -> None:
    path = sqlite_backend.spool_path
    spool = Spool(path)
    first = make_entry()
    spool.append([first])
    with path.open("ab") as file:
        file.write(b'{"v":1,"entry_id":"torn')  # a crash mid-write: never acknowledged
    second = make_entry()
    spool.append([second])  # starts on a new line
    assert [entry.entry_id for entry in spool.read()] == [first.entry_id, second.entry_id]
    log = sqlite_backend.open()

    async def replay() -> None:
        await log.history(first.consent_id)
        await eventually(lambda: not path.exists())
        await log.close()

    asyncio.run(replay())
    assert [entry.entry_id for entry in log.entries()] == [first.entry_id, second.entry_id]
    assert b"torn" in spool.rejected_path.read_bytes()


# -- PostgreSQL specifics -------------------------------------------------------------------------


def test_postgres_concurrent_first_openers_do_not_race(postgres: PostgresBackend) -> None:
    from consent_middleware.log.postgres import PostgresStore

    signer = Signer((SECRET,))
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def first_open() -> None:
        store = PostgresStore(postgres.url, signer)
        try:
            barrier.wait()
            store.open()
            store.write([make_entry()])
        except BaseException as error:  # collected for the assertion below
            errors.append(error)
        finally:
            store.close()

    threads = [threading.Thread(target=first_open) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert postgres.sql("SELECT count(*) FROM consent_log_schema_version") == [(1,)]
    assert postgres.sql("SELECT count(*) FROM consent_log") == [(6,)]
    assert postgres.open().verify().ok


# -- SQLite specifics and the API ---------------------------------------------------------------


def test_sqlite_file_is_wal_and_refuses_a_newer_schema(sqlite_backend: SQLiteBackend) -> None:
    log = sqlite_backend.open()
    asyncio.run(log.append(make_entry()))
    assert sqlite_backend.sql("PRAGMA journal_mode") == [("wal",)]
    sqlite_backend.sql("UPDATE consent_log_schema_version SET version = 99")
    with pytest.raises(SchemaTooNew, match="upgrade"):
        sqlite_backend.open().verify()


def test_one_log_serves_several_event_loops(sqlite_backend: SQLiteBackend) -> None:
    log = sqlite_backend.open()
    visitor = secrets.token_hex(16)
    asyncio.run(log.append(make_entry(visitor)))
    asyncio.run(log.append(make_entry(visitor)))  # another loop, as a test client's portal may use
    assert len(asyncio.run(log.history(visitor))) == 2
    asyncio.run(log.close())


@pytest.mark.anyio
async def test_a_cancelled_append_is_written_all_the_same(sqlite_backend: SQLiteBackend) -> None:
    log = sqlite_backend.open()
    entry = make_entry()
    task = asyncio.ensure_future(log.append(entry))
    await asyncio.sleep(0)
    task.cancel()
    await log.close()
    assert [stored.entry_id for stored in log.entries()] == [entry.entry_id]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "change",
    [
        {"consent_id": "XYZ"},
        {"entry_id": "1234"},
        {"time": datetime(2025, 1, 1)},  # naive
        {"method": "maybe"},
        {"categories": ("marketing", "analytics")},  # not sorted
        {"categories": ["analytics"]},
        {"banner_hash": "abc"},
        {"language": "en\x00"},
        {"ua_family": "x" * 1000},
    ],
)
async def test_malformed_entries_are_refused(sqlite_backend: SQLiteBackend, change: dict[str, Any]) -> None:
    log = sqlite_backend.open()
    with pytest.raises(ValueError, match="log entry"):
        await log.append(replace(make_entry(), **change))
    assert not sqlite_backend.path.exists()


def test_open_log_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert open_log(None, secret_keys=(SECRET,)) is None
    monkeypatch.chdir(tmp_path)
    relative = open_log("sqlite:///data/log.sqlite3", secret_keys=(SECRET,))
    assert isinstance(relative, StoreLog)
    store = relative.make_store(True)
    assert getattr(store, "path") == tmp_path / "data" / "log.sqlite3"  # noqa: B009
    assert relative.spool.path == tmp_path / "consent-log.spool"  # default: in the current directory
    absolute = open_log(f"sqlite:///{tmp_path}/abs.sqlite3", secret_keys=(SECRET,))
    assert isinstance(absolute, StoreLog)
    assert getattr(absolute.make_store(True), "path") == tmp_path / "abs.sqlite3"  # noqa: B009
    with pytest.raises(ValueError, match="consent_log must be") as error:
        open_log("mysql://user:hunter2@db/log", secret_keys=(SECRET,))
    assert "hunter2" not in str(error.value)
    with pytest.raises(ValueError, match="sqlite"):
        open_log("sqlite:///:memory:", secret_keys=(SECRET,))
    pg = open_log("postgresql://user:hunter2@db.example:5432/log", secret_keys=(SECRET,))
    assert pg is not None
    assert "hunter2" not in repr(pg)
    with pytest.raises(ValueError, match="at least one secret"):
        open_log("sqlite:///x.sqlite3", secret_keys=())


def test_signing_key_is_derived_never_the_secret() -> None:
    signer = Signer((SECRET, OLD_SECRET))
    assert signer.key_id == key_id(SECRET)
    assert signer.key_id != hashlib.sha256(SECRET.encode()).hexdigest()[:8]
    assert SECRET not in repr(signer)
    entry = signer.chain(make_entry(), 1, "0" * 64)
    assert entry.hmac != hmac.new(SECRET.encode(), b"", hashlib.sha256).hexdigest()
    assert Signer((OLD_SECRET, SECRET)).entry_valid(entry)  # any listed key verifies
    assert not Signer((OLD_SECRET,)).entry_valid(entry)


def _consent_log_protocol(log: ConsentLog) -> ConsentLog:  # StoreLog satisfies the protocol (mypy)
    return log


def test_storelog_is_a_consent_log(sqlite_backend: SQLiteBackend) -> None:
    assert _consent_log_protocol(sqlite_backend.open()) is not None


# -- property: verify detects edits, and only edits -----------------------------------------------

TEXT_VALUES = st.one_of(
    st.none(),
    st.text(max_size=6),
    st.integers(-3, 12),
    st.sampled_from(["accept_all", "reject_all", "[]", '["analytics"]', "en", "0" * 64, "2025-06-01"]),
)
EDIT = st.tuples(st.sampled_from([*COLUMNS, "delete"]), st.integers(0, 50), TEXT_VALUES)


@settings(max_examples=60, deadline=None)
@given(count=st.integers(1, 5), edits=st.lists(EDIT, max_size=4))
def test_verify_fails_if_and_only_if_something_was_edited(
    count: int, edits: list[tuple[str, int, object]]
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "log.sqlite3"
        log = open_log(f"sqlite:///{path}", secret_keys=(SECRET,), spool_path=Path(directory) / "spool")
        assert log is not None

        async def fill() -> None:
            for index in range(count):
                await log.append(make_entry(when=NOW + timedelta(seconds=index)))
            await log.close()

        asyncio.run(fill())
        db = sqlite3.connect(path, isolation_level=None)
        try:
            before = db.execute("SELECT * FROM consent_log ORDER BY seq").fetchall()
            for column, index, value in edits:
                seq = before[index % count][0]
                try:
                    if column == "delete":
                        db.execute("DELETE FROM consent_log WHERE seq = ?", (seq,))
                    else:
                        db.execute(f"UPDATE consent_log SET {column} = ? WHERE seq = ?", (value, seq))  # noqa: S608
                except sqlite3.Error:
                    pass  # the schema refused it (NOT NULL, UNIQUE, INTEGER PRIMARY KEY): nothing changed
            after = db.execute("SELECT * FROM consent_log ORDER BY seq").fetchall()
        finally:
            db.close()
        report = log.verify()
        assert report.ok == (before == after), (before, after, report.problems)


def test_spool_lines_are_json(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    entry = make_entry()
    spool.append([entry])
    record = json.loads(spool.path.read_text())
    assert record["entry_id"] == entry.entry_id
    assert record["v"] == 1
    assert oct(os.stat(spool.path).st_mode & 0o777) == "0o600"  # it holds truncated IPs
