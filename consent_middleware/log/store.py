"""What a backing store does (SQLite, PostgreSQL), and the chain arithmetic both share.

A ``Store`` is one connection, used by one thread at a time, and blocking. The asynchronous log
(``writer.py``) keeps one for its writer thread and one for reads; the operator commands open their own.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Final

from .base import GENESIS, ChainState, LogEntry, NewEntry, Signer, VerifyReport

__all__ = ["COLUMNS", "SCHEMA_VERSION", "ChainStateInvalid", "SchemaTooNew", "Store", "extend_chain"]

#: Bumped with every change of the tables; a store made by a newer release is refused, not guessed at.
SCHEMA_VERSION: Final = 1
ENTRIES_TABLE: Final = "consent_log"
CHAIN_TABLE: Final = "consent_log_chain"
VERSION_TABLE: Final = "consent_log_schema_version"
#: The entry columns, in the order every SELECT and INSERT uses.
COLUMNS: Final = (
    "seq",
    "entry_id",
    "consent_id",
    "time",
    "policy_version",
    "categories",
    "method",
    "language",
    "country",
    "ip_truncated",
    "ua_family",
    "banner_hash",
    "key_id",
    "prev_hmac",
    "hmac",
)
#: A time no real entry has: what an edited, unreadable time reads as (it then fails its HMAC).
UNREADABLE_TIME: Final = datetime(1, 1, 1, tzinfo=UTC)


class SchemaTooNew(RuntimeError):
    """The store was made by a newer release of consent-middleware."""


class ChainStateInvalid(RuntimeError):
    """The chain state row is missing or fails its HMAC: the log was tampered with; run verify."""


def encode_categories(categories: Sequence[str]) -> str:
    return json.dumps(list(categories), separators=(",", ":"))


def decode_categories(text: object) -> tuple[str, ...]:
    """The stored categories; anything but their exact canonical text reads as an edited value."""
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        value = None
    if (
        isinstance(value, list)
        and all(isinstance(item, str) for item in value)
        and encode_categories(value) == text
    ):
        return tuple(value)
    return (f"(unreadable: {text!r})",)  # an edited value: kept visible, and its HMAC fails


def extend_chain(
    signer: Signer, state: ChainState | None, entries: Sequence[NewEntry], present: set[str]
) -> tuple[list[LogEntry], ChainState]:
    """Chain the entries not ``present`` yet after the head; the rows to insert and the new state.

    An entry already stored (a spool replayed twice, a write that timed out but committed) is skipped
    *before* it takes a place in the chain, so a skipped row never leaves a gap.
    """
    if state is None:
        raise ChainStateInvalid("the consent log's chain state row is missing: the log was tampered with")
    if not signer.state_valid(state):
        raise ChainStateInvalid(
            "the consent log's chain state fails its HMAC (tampered with, or signed by a key no longer "
            "listed): refusing to extend it; run the verify command"
        )
    seq, prev = state.head_seq, state.head_hmac
    rows: list[LogEntry] = []
    seen = set(present)
    for entry in entries:
        if entry.entry_id in seen:
            continue
        seen.add(entry.entry_id)
        seq += 1
        row = signer.chain(entry, seq, prev)
        rows.append(row)
        prev = row.hmac
    return rows, signer.state(seq, prev, state.anchor_seq, state.anchor_hmac)


def genesis(signer: Signer) -> ChainState:
    return signer.state(0, GENESIS, 0, GENESIS)


class Store(ABC):
    """One connection to a backing store. Every method but ``close`` opens it if needed."""

    signer: Signer

    @abstractmethod
    def open(self) -> None:
        """Connect, and create (or check) the schema. Idempotent; raises on any trouble."""

    @abstractmethod
    def close(self) -> None:
        """Drop the connection (never raises); a later call opens a new one."""

    @abstractmethod
    def write(self, entries: Sequence[NewEntry]) -> int:
        """Chain and insert ``entries`` in one transaction; how many were new."""

    @abstractmethod
    def history(self, consent_id: str) -> list[LogEntry]:
        """That visitor's stored entries, in chain order."""

    @abstractmethod
    def entries(self, since: datetime | None) -> Iterator[LogEntry]:
        """Every entry (with ``time >= since``), in chain order, streamed."""

    @abstractmethod
    def purge(self, older_than: datetime) -> int:
        """Delete the oldest entries (time < older_than), keeping the rest verifiable; how many."""

    @abstractmethod
    def verify(self) -> VerifyReport:
        """Check the chain, reading state and entries from one snapshot."""
