"""The SQLite store: one file, WAL, ``synchronous=FULL`` (an acknowledged entry survives a power cut).

Several processes may share the file (uvicorn ``--workers``): a batch takes the database's write lock
(``BEGIN IMMEDIATE``) before it reads the chain head, so the chain stays linear.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Final

from .base import ChainState, LogEntry, NewEntry, Signer, VerifyReport, format_time, parse_time, verify_chain
from .store import (
    CHAIN_TABLE,
    COLUMNS,
    ENTRIES_TABLE,
    SCHEMA_VERSION,
    UNREADABLE_TIME,
    VERSION_TABLE,
    SchemaTooNew,
    Store,
    decode_categories,
    encode_categories,
    extend_chain,
    genesis,
)

__all__ = ["SQLiteStore"]

#: How long a writer waits for another process's write lock before the batch goes to the spool.
BUSY_TIMEOUT: Final = 5.0
#: SQLITE_BUSY and SQLITE_LOCKED (with their extended codes, whose low byte is the primary code).
BUSY_CODES: Final = frozenset(code for primary in (5, 6) for code in range(primary, 4096, 256))
SELECT: Final = f"SELECT {', '.join(COLUMNS)} FROM {ENTRIES_TABLE}"  # noqa: S608 (constants only)
INSERT: Final = (
    f"INSERT INTO {ENTRIES_TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"  # noqa: S608
)
SCHEMA: Final = (
    f"""CREATE TABLE {ENTRIES_TABLE} (
        seq INTEGER PRIMARY KEY,
        entry_id TEXT NOT NULL UNIQUE,
        consent_id TEXT NOT NULL,
        time TEXT NOT NULL,
        policy_version TEXT NOT NULL,
        categories TEXT NOT NULL,
        method TEXT NOT NULL,
        language TEXT NOT NULL,
        country TEXT,
        ip_truncated TEXT,
        ua_family TEXT,
        banner_hash TEXT NOT NULL,
        key_id TEXT NOT NULL,
        prev_hmac TEXT NOT NULL,
        hmac TEXT NOT NULL
    )""",
    f"CREATE INDEX {ENTRIES_TABLE}_consent_id ON {ENTRIES_TABLE} (consent_id, seq)",
    f"CREATE INDEX {ENTRIES_TABLE}_time ON {ENTRIES_TABLE} (time)",
    f"""CREATE TABLE {CHAIN_TABLE} (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        head_seq INTEGER NOT NULL,
        head_hmac TEXT NOT NULL,
        anchor_seq INTEGER NOT NULL,
        anchor_hmac TEXT NOT NULL,
        key_id TEXT NOT NULL,
        mac TEXT NOT NULL
    )""",
    f"CREATE TABLE {VERSION_TABLE} (version INTEGER NOT NULL)",
)


def _text(value: object) -> str:
    """A stored text column; anything else (a BLOB, a number) is shown as such, so its HMAC fails."""
    return value if isinstance(value, str) else repr(value)


def _optional(value: object) -> str | None:
    return None if value is None else _text(value)


def _row(row: Sequence[object]) -> LogEntry:
    (seq, entry_id, consent_id, time, policy_version, categories, method, language, country, ip, ua,
     banner_hash, key_id, prev_hmac, mac) = row  # fmt: skip
    try:
        moment = parse_time(str(time))
    except ValueError:
        moment = UNREADABLE_TIME
    if not isinstance(time, str) or format_time(moment) != time:
        moment = UNREADABLE_TIME  # not the exact text written: edited (its HMAC then fails)
    return LogEntry(
        consent_id=_text(consent_id),
        time=moment,
        policy_version=_text(policy_version),
        categories=decode_categories(categories),
        method=_text(method),
        language=_text(language),
        country=_optional(country),
        ip_truncated=_optional(ip),
        ua_family=_optional(ua),
        banner_hash=_text(banner_hash),
        entry_id=_text(entry_id),
        seq=seq if isinstance(seq, int) else -1,
        key_id=_text(key_id),
        prev_hmac=_text(prev_hmac),
        hmac=_text(mac),
    )


def _state_values(state: ChainState) -> tuple[object, ...]:
    return (state.head_seq, state.head_hmac, state.anchor_seq, state.anchor_hmac, state.key_id, state.mac)


def _values(entry: LogEntry) -> tuple[object, ...]:
    return (
        entry.seq,
        entry.entry_id,
        entry.consent_id,
        format_time(entry.time),
        entry.policy_version,
        encode_categories(entry.categories),
        entry.method,
        entry.language,
        entry.country,
        entry.ip_truncated,
        entry.ua_family,
        entry.banner_hash,
        entry.key_id,
        entry.prev_hmac,
        entry.hmac,
    )


class SQLiteStore(Store):
    def __init__(self, path: Path, signer: Signer) -> None:
        self.path = path
        self.signer = signer
        self._db: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path}>"

    def open(self) -> None:
        if self._db is not None:
            return
        # Switching a new file to WAL does not wait on the busy handler: when several processes (or
        # threads) open a new file at once, the losers get SQLITE_BUSY at once, so try again a while.
        deadline = time.monotonic() + BUSY_TIMEOUT
        while True:
            try:
                self._db = self._connect()
                return
            except sqlite3.OperationalError as error:
                busy = getattr(error, "sqlite_errorcode", None) in BUSY_CODES or "locked" in str(error)
                if not busy or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                raise sqlite3.OperationalError(f"{self.path}: cannot switch to WAL (journal mode {mode})")
            db.execute("PRAGMA synchronous=FULL")
            self._ensure_schema(db)
        except BaseException:
            db.close()
            raise
        return db

    def _ensure_schema(self, db: sqlite3.Connection) -> None:
        if self._version(db) == SCHEMA_VERSION:
            return
        db.execute("BEGIN IMMEDIATE")  # another process may be creating it right now
        try:
            version = self._version(db)
            if version is None:
                for statement in SCHEMA:
                    db.execute(statement)
                db.execute(f"INSERT INTO {VERSION_TABLE} (version) VALUES (?)", (SCHEMA_VERSION,))  # noqa: S608
                self._write_state(db, genesis(self.signer), insert=True)
            elif version > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"{self.path}: consent log schema version {version} is newer than this release "
                    f"understands ({SCHEMA_VERSION}); upgrade consent-middleware"
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @staticmethod
    def _version(db: sqlite3.Connection) -> int | None:
        exists = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (VERSION_TABLE,)
        ).fetchone()
        if exists is None:
            return None
        row = db.execute(f"SELECT max(version) FROM {VERSION_TABLE}").fetchone()  # noqa: S608
        return None if row is None or row[0] is None else int(row[0])

    def _connection(self) -> sqlite3.Connection:
        self.open()
        assert self._db is not None
        return self._db

    def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.close()

    @staticmethod
    def _read_state(db: sqlite3.Connection) -> ChainState | None:
        row = db.execute(
            f"SELECT head_seq, head_hmac, anchor_seq, anchor_hmac, key_id, mac "  # noqa: S608
            f"FROM {CHAIN_TABLE} WHERE id = 1"
        ).fetchone()
        if row is None:
            return None
        return ChainState(int(row[0]), str(row[1]), int(row[2]), str(row[3]), str(row[4]), str(row[5]))

    @staticmethod
    def _write_state(db: sqlite3.Connection, state: ChainState, *, insert: bool = False) -> None:
        values = (
            state.head_seq,
            state.head_hmac,
            state.anchor_seq,
            state.anchor_hmac,
            state.key_id,
            state.mac,
        )
        if insert:
            db.execute(
                f"INSERT INTO {CHAIN_TABLE} "  # noqa: S608
                "(id, head_seq, head_hmac, anchor_seq, anchor_hmac, key_id, mac) "
                "VALUES (1, ?, ?, ?, ?, ?, ?)",
                values,
            )
        else:
            db.execute(
                f"UPDATE {CHAIN_TABLE} SET head_seq = ?, head_hmac = ?, anchor_seq = ?, anchor_hmac = ?, "  # noqa: S608
                "key_id = ?, mac = ? WHERE id = 1",
                values,
            )

    def write(self, entries: Sequence[NewEntry]) -> int:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")  # the write lock: the chain head is ours until COMMIT
        try:
            ids = [entry.entry_id for entry in entries]
            present: set[str] = set()
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ", ".join("?" for _ in chunk)
                present.update(
                    str(row[0])
                    for row in db.execute(
                        f"SELECT entry_id FROM {ENTRIES_TABLE} WHERE entry_id IN ({marks})",  # noqa: S608
                        chunk,
                    )
                )
            rows, state = extend_chain(self.signer, self._read_state(db), entries, present)
            if rows:
                db.executemany(INSERT, [_values(row) for row in rows])
                self._write_state(db, state)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return len(rows)

    def history(self, consent_id: str) -> list[LogEntry]:
        db = self._connection()
        return [_row(row) for row in db.execute(f"{SELECT} WHERE consent_id = ? ORDER BY seq", (consent_id,))]

    def entries(self, since: datetime | None) -> Iterator[LogEntry]:
        db = self._connection()
        if since is None:
            cursor = db.execute(f"{SELECT} ORDER BY seq")
        else:
            cursor = db.execute(f"{SELECT} WHERE time >= ? ORDER BY seq", (format_time(since),))
        try:
            for row in cursor:
                yield _row(row)
        finally:
            cursor.close()

    def purge(self, older_than: datetime) -> int:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            state = self._read_state(db)
            if state is None or not self.signer.state_valid(state):
                extend_chain(self.signer, state, (), set())  # raises the right error
                raise AssertionError  # pragma: no cover
            row = db.execute(
                f"SELECT min(seq) FROM {ENTRIES_TABLE} WHERE time >= ?",  # noqa: S608
                (format_time(older_than),),
            ).fetchone()
            cut = state.head_seq + 1 if row is None or row[0] is None else int(row[0])
            deleted = 0
            if cut - 1 > state.anchor_seq:
                last = db.execute(
                    f"SELECT hmac FROM {ENTRIES_TABLE} WHERE seq = ?",  # noqa: S608
                    (cut - 1,),
                ).fetchone()
                if last is None:
                    raise sqlite3.IntegrityError(f"entry seq {cut - 1} is missing: run verify before purging")
                deleted = db.execute(f"DELETE FROM {ENTRIES_TABLE} WHERE seq < ?", (cut,)).rowcount  # noqa: S608
                self._write_state(
                    db, self.signer.state(state.head_seq, state.head_hmac, cut - 1, str(last[0]))
                )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return deleted

    def verify(self) -> VerifyReport:
        db = self._connection()
        db.execute("BEGIN")  # one read snapshot (WAL): state and entries agree while others write
        try:
            state = self._read_state(db)
            return verify_chain(
                self.signer, state, (_row(row) for row in db.execute(f"{SELECT} ORDER BY seq"))
            )
        finally:
            db.execute("COMMIT")
