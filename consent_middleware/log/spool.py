"""The local spool: where decisions wait, durably, while the store is unreachable.

An append-only JSON-lines file, one entry per line, ``fsync``-ed once per batch before ``append``
returns. Several processes may share it (uvicorn ``--workers`` in one directory): every access holds
``flock`` on the file, and an opener that finds the file replaced after it got the lock starts again.
Replay writes the lines to the store in order, in chunks (each chunk idempotent: entry ids already
stored are skipped), then removes the file, so a crash mid-replay replays again without duplicates.
A line that cannot be read (a torn write that was never acknowledged, an edit) is moved aside to
``<spool>.rejected`` with a warning instead of blocking the replay forever.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from .base import NewEntry, check_entry, format_time, parse_time

if sys.platform != "win32":
    import fcntl

__all__ = ["DEFAULT_SPOOL_NAME", "Spool"]

DEFAULT_SPOOL_NAME: Final = "consent-log.spool"
FORMAT_VERSION: Final = 1
REPLAY_CHUNK: Final = 1000
logger = logging.getLogger("consent_middleware.log")


def encode(entry: NewEntry) -> bytes:
    record = {
        "v": FORMAT_VERSION,
        "entry_id": entry.entry_id,
        "consent_id": entry.consent_id,
        "time": format_time(entry.time),
        "policy_version": entry.policy_version,
        "categories": list(entry.categories),
        "method": entry.method,
        "language": entry.language,
        "country": entry.country,
        "ip_truncated": entry.ip_truncated,
        "ua_family": entry.ua_family,
        "banner_hash": entry.banner_hash,
    }
    return json.dumps(record, separators=(",", ":"), ensure_ascii=True).encode("ascii") + b"\n"


def decode(line: bytes) -> NewEntry:
    """One spool line as an entry; ``ValueError`` for anything else."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError) as error:
        raise ValueError(f"not JSON: {error}") from None
    if not isinstance(record, dict) or record.get("v") != FORMAT_VERSION:
        raise ValueError("not a version-1 spool record")
    try:
        categories = record["categories"]
        if not isinstance(categories, list):
            raise ValueError("categories is not a list")
        entry = NewEntry(
            consent_id=record["consent_id"],
            time=parse_time(record["time"]),
            policy_version=record["policy_version"],
            categories=tuple(categories),
            method=record["method"],
            language=record["language"],
            country=record["country"],
            ip_truncated=record["ip_truncated"],
            ua_family=record["ua_family"],
            banner_hash=record["banner_hash"],
            entry_id=record["entry_id"],
        )
    except (KeyError, TypeError) as error:
        raise ValueError(f"missing or malformed field {error}") from None
    check_entry(entry)
    return entry


def _fsync_directory(path: Path) -> None:
    if sys.platform == "win32":  # pragma: no cover
        return
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class Spool:
    """The spool file at ``path`` (created on the first entry, removed once replayed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rejected_path = path.with_name(path.name + ".rejected")
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Spool {self.path}>"

    @contextmanager
    def _locked(self, flags: int, *, exclusive: bool) -> Iterator[int | None]:
        """The spool file's descriptor under ``flock``; ``None`` when there is no spool file."""
        with self._lock:
            while True:
                try:
                    fd = os.open(self.path, flags | getattr(os, "O_CLOEXEC", 0), 0o600)
                except FileNotFoundError:
                    if flags & os.O_CREAT:
                        raise
                    yield None
                    return
                try:
                    if sys.platform != "win32":
                        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
                    # Another process may have replayed and removed the file while we waited.
                    try:
                        current = os.stat(self.path)
                    except FileNotFoundError:
                        current = None
                    opened = os.fstat(fd)
                    if current is None or (current.st_ino, current.st_dev) != (opened.st_ino, opened.st_dev):
                        continue
                    yield fd
                    return
                finally:
                    os.close(fd)

    def pending(self) -> bool:
        """Whether entries are waiting (a cheap ``stat``, no lock)."""
        try:
            return self.path.stat().st_size > 0
        except OSError:  # missing, or its directory is (then append will say why)
            return False

    def append(self, entries: Sequence[NewEntry]) -> None:
        """Add ``entries`` at the end; durable (fsync-ed) when this returns. Raises ``OSError``."""
        data = b"".join(encode(entry) for entry in entries)
        with self._locked(os.O_RDWR | os.O_APPEND | os.O_CREAT, exclusive=True) as fd:
            assert fd is not None
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # after a torn, unacknowledged line: keep ours whole
            _write_all(fd, data)
            os.fsync(fd)
            if size == 0:
                _fsync_directory(self.path)  # a new file: make its name durable too

    def _lines(self, fd: int) -> Iterator[tuple[int, bytes]]:
        with os.fdopen(os.dup(fd), "rb") as file:
            file.seek(0)
            for number, line in enumerate(file, 1):
                if line.strip():
                    yield number, line

    def read(self, consent_id: str | None = None) -> list[NewEntry]:
        """The waiting entries (of one visitor), in order."""
        if not self.pending():
            return []
        found = []
        with self._locked(os.O_RDONLY, exclusive=False) as fd:
            if fd is None:
                return []
            for _, line in self._lines(fd):
                try:
                    entry = decode(line)
                except ValueError:
                    continue
                if consent_id is None or entry.consent_id == consent_id:
                    found.append(entry)
        return found

    def replay(self, write: Callable[[Sequence[NewEntry]], int]) -> int:
        """Write every waiting entry to the store through ``write``, in order, then remove the spool.

        ``write`` raising leaves the spool as it was (what was written is skipped next time).
        """
        if not self.pending():
            return 0
        written = 0
        with self._locked(os.O_RDWR, exclusive=True) as fd:
            if fd is None:
                return 0
            chunk: list[NewEntry] = []
            rejected: list[bytes] = []
            for number, line in self._lines(fd):
                try:
                    chunk.append(decode(line))
                except ValueError as error:
                    logger.warning(
                        "consent log spool %s line %d unreadable (%s): moved aside", self.path, number, error
                    )
                    rejected.append(line if line.endswith(b"\n") else line + b"\n")
                    continue
                if len(chunk) >= REPLAY_CHUNK:
                    written += write(chunk)
                    chunk = []
            if chunk:
                written += write(chunk)
            if rejected:
                self._reject(rejected)
            os.unlink(self.path)
            _fsync_directory(self.path)
        if written:
            logger.info("consent log: replayed %d spooled entries from %s", written, self.path)
        return written

    def _reject(self, lines: list[bytes]) -> None:
        fd = os.open(self.rejected_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            _write_all(fd, b"".join(lines))
            os.fsync(fd)
        finally:
            os.close(fd)
