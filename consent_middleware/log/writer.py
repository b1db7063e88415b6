"""The asynchronous consent log: group commit, spool fallback, background replay.

``append`` puts the entry on a queue and awaits its own future. One writer thread (per log, started
on first use) takes everything queued as one batch and writes it in one transaction, so concurrent
decisions share one commit (group commit); while it writes, the next batch gathers. If the store
fails, the batch goes to the spool (fsync-ed) and the callers are answered all the same; the thread
then retries the store with a backoff and replays the spool, in order, before it writes anything new.

The writer is a thread, not a task, so the log works with any event loop, with or without the ASGI
lifespan, from several loops at once (a test client's portal), and the event loop never blocks on
SQLite, PostgreSQL or fsync. Reads (``history``) run on a second thread with their own connection.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Final, TypeVar, cast

from .base import LogEntry, LogUnavailable, NewEntry, Signer, VerifyReport, check_entry
from .spool import Spool
from .store import Store

__all__ = ["StoreLog"]

logger = logging.getLogger("consent_middleware.log")

#: Most entries one transaction takes (bigger bursts are split across consecutive batches).
MAX_BATCH: Final = 1000
#: How long ``append`` waits for a stuck writer (a hung store) before it spools its entry itself.
APPEND_TIMEOUT: Final = 10.0
_T = TypeVar("_T")
#: How long ``close`` (and interpreter exit) waits for queued entries to be written.
CLOSE_TIMEOUT: Final = 30.0


@dataclass(slots=True)
class _Item:
    entry: NewEntry
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


def _settle(outcomes: list[tuple[asyncio.Future[None], BaseException | None]]) -> None:
    for future, error in outcomes:
        if future.done():  # the caller was cancelled (client gone): the entry is written all the same
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


class _Writer:
    """The writer thread and what only it touches: its store connection and the retry schedule."""

    def __init__(self, log: StoreLog) -> None:
        self.queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._store = log.make_store(True)
        self._spool = log.spool
        self._retry_min = log.retry_min
        self._retry_max = log.retry_max
        self._delay = log.retry_min
        self._retry_at = 0.0  # replay whatever an earlier run left in the spool at once
        self._down = False
        self.thread = threading.Thread(target=self._run, name="consent-log-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while True:
                batch: list[_Item] = []
                try:
                    stop = self._step(batch)
                except Exception as error:  # a bug: answer the batch, keep the thread alive
                    logger.exception("consent log: writer error")
                    self._answer(batch, LogUnavailable(f"the consent log failed: {error}"))
                    stop = False
                if stop:
                    self._drain()
                    return
        finally:
            self._store.close()

    def _drain(self) -> None:
        """Write what an ``append`` racing with ``close`` queued behind the stop mark."""
        late: list[_Item] = []
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                late.append(item)
        if late:
            self._write(late)

    def _step(self, batch: list[_Item]) -> bool:
        """Take one batch (filling ``batch``), replay the spool when due, write; whether to stop."""
        timeout = None
        if self._spool.pending():
            timeout = max(0.0, self._retry_at - time.monotonic())
        try:
            first = self.queue.get(timeout=timeout)
        except queue.Empty:
            first = None
            stop = False
        else:
            stop = first is None
        if first is not None:
            batch.append(first)
        while not stop and len(batch) < MAX_BATCH:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                stop = True
            else:
                batch.append(item)
        if self._spool.pending() and time.monotonic() >= self._retry_at:
            self._replay()
        if batch:
            self._write(batch)
            batch.clear()
        return stop

    def _failed(self, error: BaseException) -> None:
        self._store.close()
        if not self._down:
            logger.warning(
                "consent log: %r unavailable (%s: %s); decisions go to the spool %s until it is back",
                self._store,
                type(error).__name__,
                error,
                self._spool.path,
            )
        self._down = True
        self._retry_at = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, self._retry_max)

    def _recovered(self) -> None:
        if self._down:
            logger.warning("consent log: %r is back", self._store)
        self._down = False
        self._delay = self._retry_min

    def _replay(self) -> None:
        try:
            self._store.open()
            self._spool.replay(self._store.write)
        except Exception as error:
            self._failed(error)
        else:
            self._recovered()

    def _write(self, batch: list[_Item]) -> None:
        entries = [item.entry for item in batch]
        error: BaseException | None = None
        # Anything still spooled goes first: a new entry never overtakes a waiting one.
        if not self._spool.pending():
            try:
                self._store.open()
                self._store.write(entries)
            except Exception as failure:
                self._failed(failure)
            else:
                self._recovered()
                self._answer(batch, None)
                return
        try:
            self._spool.append(entries)
        except Exception as failure:
            logger.error(
                "consent log: neither %r nor the spool %s take entries: %s",
                self._store,
                self._spool.path,
                failure,
            )
            error = LogUnavailable(f"the consent log cannot record the decision: {failure}")
            error.__cause__ = failure
        self._answer(batch, error)

    @staticmethod
    def _answer(batch: list[_Item], error: BaseException | None) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], BaseException | None]]] = {}
        for item in batch:
            by_loop.setdefault(item.loop, []).append((item.future, error))
        for loop, outcomes in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                loop.call_soon_threadsafe(_settle, outcomes)

    def stop(self, timeout: float) -> None:
        self.queue.put(None)
        self.thread.join(timeout)


_Task = tuple[Callable[[], object], asyncio.AbstractEventLoop, "asyncio.Future[object]"]


class _Reader:
    """The reading thread and its own connection (``history``).

    A thread of its own fed through a SimpleQueue, not an executor: ``close`` may run in a
    finalizer at any point, even inside another executor's ``submit``, where taking the executors'
    shared lock would deadlock; putting on a SimpleQueue takes no lock.
    """

    def __init__(self, make_store: Callable[[bool], Store]) -> None:
        self.store = make_store(True)  # used only on the reading thread
        self.queue: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="consent-log-reader", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (task := self.queue.get()) is not None:
            function, loop, future = task
            result: object = None
            error: BaseException | None = None
            try:
                result = function()
            except BaseException as failure:  # handed to the caller, as an executor would
                error = failure
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                loop.call_soon_threadsafe(_resolve, future, result, error)
        with contextlib.suppress(Exception):
            self.store.close()

    async def run(self, function: Callable[[], _T]) -> _T:
        """``function()`` on the reading thread."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[object] = loop.create_future()
        self.queue.put((function, loop, future))
        return cast(_T, await future)

    def close(self, wait: bool) -> None:
        self.queue.put(None)
        if wait:
            self.thread.join(CLOSE_TIMEOUT)


def _resolve(future: asyncio.Future[object], result: object, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def _release(writer: _Writer, reader: _Reader) -> None:
    """A log dropped without ``close``: let its threads end by themselves (never blocks)."""
    writer.queue.put(None)
    reader.close(wait=False)


def _stop_at_exit(ref: weakref.ReferenceType[StoreLog]) -> None:
    log = ref()
    if log is not None:
        log.stop_threads(CLOSE_TIMEOUT)


def _history(store: Store, spool: Spool, consent_id: str) -> list[LogEntry]:
    """On the reading thread: the stored entries, then those still waiting in the spool."""
    stored: list[LogEntry] = []
    waiting: list[NewEntry] = []
    try:
        stored = store.history(consent_id)
    except Exception as error:
        store.close()
        logger.warning("consent log: cannot read %r (%s); showing spooled entries only", store, error)
    try:
        waiting = spool.read(consent_id)
    except OSError as error:
        logger.warning("consent log: cannot read the spool %s (%s)", spool.path, error)
    seen = {entry.entry_id for entry in stored}
    result = list(stored)
    for entry in waiting:
        if entry.entry_id not in seen:
            seen.add(entry.entry_id)
            result.append(LogEntry.unchained(entry))
    result.sort(key=lambda entry: entry.time)  # stable: chain order among equal times
    return result


class StoreLog:
    """A ``ConsentLog`` over a ``Store`` (SQLite or PostgreSQL). Constructing it does no I/O.

    Its two threads start on first use and end with ``close()``, at interpreter exit (after writing
    what is queued), or when the log is garbage-collected.
    """

    def __init__(
        self,
        make_store: Callable[[bool], Store],
        *,
        signer: Signer,
        spool: Spool,
        retry_min: float = 0.5,
        retry_max: float = 30.0,
        append_timeout: float = APPEND_TIMEOUT,
    ) -> None:
        #: ``make_store(app)``: a new, unopened store; ``app`` is true for the request path's connections.
        self.make_store = make_store
        self.signer = signer
        self.spool = spool
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.append_timeout = append_timeout
        self._start = threading.Lock()
        self._pid = 0
        self._threads_: tuple[_Writer, _Reader] | None = None
        self._finalizer: weakref.finalize[[_Writer, _Reader], StoreLog] | None = None
        self._at_exit: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"<ConsentLog {self.make_store(True)!r} spool={self.spool.path}>"

    # -- request side (async) ---------------------------------------------------------------------

    def _threads(self) -> tuple[_Writer, _Reader]:
        threads = self._threads_
        if threads is not None and self._pid == os.getpid():
            return threads
        with self._start:
            if self._pid != os.getpid():  # first use, or a forked child: the parent's threads are not ours
                self._threads_ = None
                self._pid = os.getpid()
            if self._threads_ is None:
                writer, reader = _Writer(self), _Reader(self.make_store)
                self._threads_ = (writer, reader)
                self._finalizer = weakref.finalize(self, _release, writer, reader)
                self._finalizer.atexit = False
                if self._at_exit is None:
                    self._at_exit = functools.partial(_stop_at_exit, weakref.ref(self))
                    atexit.register(self._at_exit)
            return self._threads_

    async def append(self, entry: NewEntry) -> None:
        """Return once ``entry`` is durable in the store or in the spool; ``LogUnavailable`` if in neither."""
        check_entry(entry)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        writer, _ = self._threads()
        writer.queue.put(_Item(entry, loop, future))
        try:
            await asyncio.wait_for(asyncio.shield(future), self.append_timeout)
        except TimeoutError:
            # The writer is stuck on a hung store: make this entry durable ourselves. If the writer
            # stores it later too, the replay skips it (same entry_id).
            logger.warning("consent log: the store is not answering; spooling entry %s", entry.entry_id)
            try:
                await asyncio.to_thread(self.spool.append, [entry])
            except OSError as error:
                raise LogUnavailable(f"the consent log cannot record the decision: {error}") from error

    async def history(self, consent_id: str) -> list[LogEntry]:
        """That visitor's entries, oldest first, those still in the spool included (``pending``).

        Never raises for store trouble: while the store cannot be read, the entries still in the
        spool are all it returns (a warning is logged).
        """
        _, reader = self._threads()
        return await reader.run(functools.partial(_history, reader.store, self.spool, consent_id))

    async def close(self) -> None:
        """Write what is queued, then stop the threads and drop the connections (reopens on next use)."""
        await asyncio.to_thread(self.stop_threads, CLOSE_TIMEOUT)

    def stop_threads(self, timeout: float) -> None:
        with self._start:
            threads, self._threads_ = self._threads_, None
            if self._finalizer is not None:
                self._finalizer.detach()
                self._finalizer = None
            if self._at_exit is not None:
                atexit.unregister(self._at_exit)
                self._at_exit = None
        if threads is None or self._pid != os.getpid():
            return
        writer, reader = threads
        writer.stop(timeout)
        reader.close(wait=True)

    # -- operator side (sync, blocking: the CLI) ----------------------------------------------------

    def entries(self, *, since: datetime | None = None) -> Iterator[LogEntry]:
        """Every stored entry (with ``time >= since``), oldest first (chain order), streamed."""
        store = self.make_store(False)
        try:
            yield from store.entries(since)
        finally:
            store.close()

    def purge(self, *, older_than: datetime) -> int:
        """Delete the entries older than ``older_than`` (a prefix of the chain); how many."""
        store = self.make_store(False)
        try:
            return store.purge(older_than)
        finally:
            store.close()

    def verify(self) -> VerifyReport:
        """Check every stored entry's HMAC and link, and the signed head and anchor."""
        store = self.make_store(False)
        try:
            return store.verify()
        finally:
            store.close()
