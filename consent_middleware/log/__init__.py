"""Proof of consent: the tamper-evident consent log (SPEC §5).

``open_log(url, secret_keys=...)`` gives the log for ``consent_log=`` (``None`` turns logging off).
Request side (coroutines, never block the event loop): ``append``, ``history``, ``close``. Operator
side (synchronous, blocking, for the CLI): ``entries``, ``purge``, ``verify``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .base import ConsentLog, LogEntry, LogUnavailable, NewEntry, Signer, VerifyReport
from .spool import DEFAULT_SPOOL_NAME, Spool
from .store import Store
from .writer import StoreLog

__all__ = ["ConsentLog", "LogEntry", "LogUnavailable", "NewEntry", "VerifyReport", "open_log"]


def open_log(
    url: str | None,
    *,
    secret_keys: tuple[str, ...],
    spool_path: Path | None = None,
    retry_min: float = 0.5,
    retry_max: float = 30.0,
) -> ConsentLog | None:
    """The log at ``url``, unopened (no I/O until the first ``append`` or ``history``).

    ``url``: ``"sqlite:///PATH"`` (relative to the current directory; ``sqlite:////abs/path`` for an
    absolute one), ``"postgresql://..."`` (libpq URL), or ``None`` for no log. ``secret_keys``: the
    operator's secrets, newest first (the newest signs, any verifies). ``spool_path``: where entries wait
    while the store is unreachable (default ``consent-log.spool`` in the current directory).
    ``retry_min``/``retry_max``: the backoff, in seconds, of the retries while the store is down.
    A malformed URL is a ``ValueError`` here, at start-up.
    """
    if url is None:
        return None
    signer = Signer(tuple(secret_keys))
    spool = Spool((spool_path if spool_path is not None else Path(DEFAULT_SPOOL_NAME)).absolute())
    make_store: Callable[[bool], Store]
    if url.startswith("sqlite:///"):
        raw = url[len("sqlite:///") :]
        if not raw or raw == ":memory:" or raw.endswith("/"):
            raise ValueError(f"consent_log {url!r}: name a database file, e.g. sqlite:///consent-log.sqlite3")
        path = Path(raw).absolute()  # fixed now: a later chdir does not move the log

        from .sqlite import SQLiteStore

        def make_sqlite(app: bool) -> Store:
            return SQLiteStore(path, signer)

        make_store = make_sqlite

    elif url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore, check_url

        check_url(url)

        def make_postgres(app: bool) -> Store:
            return PostgresStore(url, signer, app=app)

        make_store = make_postgres

    else:
        scheme = url.partition(":")[0][:20]  # never echo the rest: it may hold a password
        raise ValueError(
            f"consent_log must be 'sqlite:///PATH', 'postgresql://...' or None, not {scheme!r}:..."
        )
    return StoreLog(make_store, signer=signer, spool=spool, retry_min=retry_min, retry_max=retry_max)
