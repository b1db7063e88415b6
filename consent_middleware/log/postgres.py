"""The PostgreSQL store (psycopg 3), for several app instances writing at once.

Chain extension is serialized across every instance by locking the one chain-state row
(``SELECT ... FOR UPDATE``) inside the batch's transaction; schema creation by a transaction-level
advisory lock, so concurrent first openers do not race. Tables live in the connection's
``search_path`` (use ``?options=-csearch_path%3Dmyschema`` in the URL to pick a schema).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict

from .base import ChainState, LogEntry, NewEntry, Signer, VerifyReport, verify_chain
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

__all__ = ["PostgresStore", "check_url", "connection_options"]

#: Key of the advisory lock that serializes schema creation ("consent-log" in ASCII, as an int64).
SCHEMA_LOCK: Final = 0x636F6E73656E74
SELECT: Final = f"SELECT {', '.join(COLUMNS)} FROM {ENTRIES_TABLE}"  # noqa: S608 (constants only)
INSERT: Final = (
    f"INSERT INTO {ENTRIES_TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join('%s' for _ in COLUMNS)})"  # noqa: S608
)
SCHEMA: Final = (
    f"""CREATE TABLE IF NOT EXISTS {ENTRIES_TABLE} (
        seq BIGINT PRIMARY KEY,
        entry_id TEXT NOT NULL UNIQUE,
        consent_id TEXT NOT NULL,
        time TIMESTAMPTZ NOT NULL,
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
    f"CREATE INDEX IF NOT EXISTS {ENTRIES_TABLE}_consent_id ON {ENTRIES_TABLE} (consent_id, seq)",
    f"CREATE INDEX IF NOT EXISTS {ENTRIES_TABLE}_time ON {ENTRIES_TABLE} (time)",
    f"""CREATE TABLE IF NOT EXISTS {CHAIN_TABLE} (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        head_seq BIGINT NOT NULL,
        head_hmac TEXT NOT NULL,
        anchor_seq BIGINT NOT NULL,
        anchor_hmac TEXT NOT NULL,
        key_id TEXT NOT NULL,
        mac TEXT NOT NULL
    )""",
    f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER NOT NULL)",
)
#: The app's own connections: give up rather than hang (the batch then goes to the spool).
APP_SETTINGS: Final = ("SET lock_timeout = '10s'", "SET statement_timeout = '30s'")


def connection_options(url: str) -> dict[str, Any]:
    """The URL's parameters, with defaults that notice a dead server in seconds, not hours."""
    options: dict[str, Any] = conninfo_to_dict(url)
    options.setdefault("connect_timeout", 5)
    options.setdefault("keepalives", 1)
    options.setdefault("keepalives_idle", 10)
    options.setdefault("keepalives_interval", 3)
    options.setdefault("keepalives_count", 3)
    options.setdefault("tcp_user_timeout", 20000)
    options.setdefault("application_name", "consent-middleware")
    return options


def check_url(url: str) -> None:
    """``ValueError`` for a URL libpq cannot parse (checked at start-up, with no I/O)."""
    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise ValueError("consent_log: malformed postgresql:// URL (libpq cannot parse it)") from None


def _row(row: Sequence[Any]) -> LogEntry:
    (seq, entry_id, consent_id, time, policy_version, categories, method, language, country, ip, ua,
     banner_hash, key_id, prev_hmac, mac) = row  # fmt: skip
    return LogEntry(
        consent_id=consent_id,
        time=time.astimezone(UTC) if isinstance(time, datetime) else UNREADABLE_TIME,
        policy_version=policy_version,
        categories=decode_categories(categories),
        method=method,
        language=language,
        country=country,
        ip_truncated=ip,
        ua_family=ua,
        banner_hash=banner_hash,
        entry_id=entry_id,
        seq=int(seq),
        key_id=key_id,
        prev_hmac=prev_hmac,
        hmac=mac,
    )


def _state_values(state: ChainState) -> tuple[object, ...]:
    return (state.head_seq, state.head_hmac, state.anchor_seq, state.anchor_hmac, state.key_id, state.mac)


def _values(entry: LogEntry) -> tuple[object, ...]:
    return (
        entry.seq,
        entry.entry_id,
        entry.consent_id,
        entry.time,
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


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        options = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable URL)"
    host, port, name = options.get("host", ""), options.get("port", ""), options.get("dbname", "")
    return f"postgresql://{host}{':' + str(port) if port else ''}/{name}"


class PostgresStore(Store):
    def __init__(self, url: str, signer: Signer, *, app: bool = True) -> None:
        self.url = url
        self.signer = signer
        self._app = app
        self._db: psycopg.Connection[tuple[Any, ...]] | None = None

    def __repr__(self) -> str:
        return f"<PostgresStore {_redacted(self.url)}>"

    def open(self) -> None:
        if self._db is not None and not self._db.closed and not self._db.broken:
            return
        self.close()
        # Autocommit: every transaction is an explicit ``db.transaction()`` block, none left open.
        db = psycopg.connect(autocommit=True, **connection_options(self.url))
        try:
            for statement in APP_SETTINGS if self._app else ():
                db.execute(statement)
            self._ensure_schema(db)
        except BaseException:
            db.close()
            raise
        self._db = db

    def _ensure_schema(self, db: psycopg.Connection[tuple[Any, ...]]) -> None:
        with db.transaction():
            exists = db.execute("SELECT to_regclass(%s) IS NOT NULL", (VERSION_TABLE,)).fetchone()
            if exists and exists[0]:
                row = db.execute(f"SELECT max(version) FROM {VERSION_TABLE}").fetchone()  # noqa: S608
                if row and row[0] == SCHEMA_VERSION:
                    return
        with db.transaction():
            # Concurrent first openers queue here; the second finds everything made.
            db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            for statement in SCHEMA:
                db.execute(statement)
            row = db.execute(f"SELECT max(version) FROM {VERSION_TABLE}").fetchone()  # noqa: S608
            version = None if row is None else row[0]
            if version is None:
                db.execute(f"INSERT INTO {VERSION_TABLE} (version) VALUES (%s)", (SCHEMA_VERSION,))  # noqa: S608
                state = genesis(self.signer)
                db.execute(
                    f"INSERT INTO {CHAIN_TABLE} "  # noqa: S608
                    "(id, head_seq, head_hmac, anchor_seq, anchor_hmac, key_id, mac) "
                    "VALUES (1, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                    (
                        state.head_seq,
                        state.head_hmac,
                        state.anchor_seq,
                        state.anchor_hmac,
                        state.key_id,
                        state.mac,
                    ),
                )
            elif version > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"{_redacted(self.url)}: consent log schema version {version} is newer than this "
                    f"release understands ({SCHEMA_VERSION}); upgrade consent-middleware"
                )

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        self.open()
        assert self._db is not None
        return self._db

    def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(psycopg.Error):
                db.close()

    @staticmethod
    def _read_state(db: psycopg.Connection[tuple[Any, ...]], *, lock: bool) -> ChainState | None:
        row = db.execute(
            f"SELECT head_seq, head_hmac, anchor_seq, anchor_hmac, key_id, mac FROM {CHAIN_TABLE} "  # noqa: S608
            f"WHERE id = 1{' FOR UPDATE' if lock else ''}"
        ).fetchone()
        if row is None:
            return None
        return ChainState(int(row[0]), row[1], int(row[2]), row[3], row[4], row[5])

    @staticmethod
    def _write_state(db: psycopg.Connection[tuple[Any, ...]], state: ChainState) -> None:
        db.execute(
            f"UPDATE {CHAIN_TABLE} SET head_seq = %s, head_hmac = %s, anchor_seq = %s, anchor_hmac = %s, "  # noqa: S608
            "key_id = %s, mac = %s WHERE id = 1",
            _state_values(state),
        )

    def write(self, entries: Sequence[NewEntry]) -> int:
        db = self._connection()
        try:
            with db.transaction():
                # The row lock makes every instance extend the chain in turn: it stays linear.
                state = self._read_state(db, lock=True)
                # Never a prepared (generic) plan: one made while the table was small would scan it
                # whole for ever after; a fresh plan sees the table's size and uses the index.
                present = {
                    row[0]
                    for row in db.execute(
                        f"SELECT entry_id FROM {ENTRIES_TABLE} WHERE entry_id = ANY(%s)",  # noqa: S608
                        ([entry.entry_id for entry in entries],),
                        prepare=False,
                    )
                }
                rows, new_state = extend_chain(self.signer, state, entries, present)
                if rows:
                    with db.cursor() as cursor:
                        cursor.executemany(INSERT, [_values(row) for row in rows])
                    self._write_state(db, new_state)
        except (psycopg.OperationalError, pg_errors.AdminShutdown):
            self.close()  # a broken connection: the next try reconnects
            raise
        return len(rows)

    def history(self, consent_id: str) -> list[LogEntry]:
        db = self._connection()
        try:
            with db.transaction():
                return [
                    _row(row)
                    for row in db.execute(
                        f"{SELECT} WHERE consent_id = %s ORDER BY seq", (consent_id,), prepare=False
                    )
                ]
        except psycopg.OperationalError:
            self.close()
            raise

    def entries(self, since: datetime | None) -> Iterator[LogEntry]:
        db = self._connection()
        with db.transaction(), db.cursor(name="consent_log_entries") as cursor:
            cursor.itersize = 2000
            if since is None:
                cursor.execute(f"{SELECT} ORDER BY seq")
            else:
                cursor.execute(f"{SELECT} WHERE time >= %s ORDER BY seq", (since,))
            for row in cursor:
                yield _row(row)

    def purge(self, older_than: datetime) -> int:
        db = self._connection()
        with db.transaction():
            state = self._read_state(db, lock=True)
            if state is None or not self.signer.state_valid(state):
                extend_chain(self.signer, state, (), set())  # raises the right error
            assert state is not None
            row = db.execute(
                f"SELECT min(seq) FROM {ENTRIES_TABLE} WHERE time >= %s",  # noqa: S608
                (older_than,),
            ).fetchone()
            cut = state.head_seq + 1 if row is None or row[0] is None else int(row[0])
            if cut - 1 <= state.anchor_seq:
                return 0
            last = db.execute(
                f"SELECT hmac FROM {ENTRIES_TABLE} WHERE seq = %s",  # noqa: S608
                (cut - 1,),
            ).fetchone()
            if last is None:
                raise pg_errors.IntegrityError(f"entry seq {cut - 1} is missing: run verify before purging")
            deleted = db.execute(f"DELETE FROM {ENTRIES_TABLE} WHERE seq < %s", (cut,)).rowcount  # noqa: S608
            self._write_state(db, self.signer.state(state.head_seq, state.head_hmac, cut - 1, last[0]))
        return deleted

    def verify(self) -> VerifyReport:
        db = self._connection()
        db.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ  # one snapshot for state and entries
        try:
            with db.transaction(), db.cursor(name="consent_log_verify") as cursor:
                state = self._read_state(db, lock=False)
                cursor.itersize = 2000
                cursor.execute(f"{SELECT} ORDER BY seq")
                return verify_chain(self.signer, state, (_row(row) for row in cursor))
        finally:
            db.isolation_level = None
