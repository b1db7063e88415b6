"""The consent log's data model, its HMAC chain and the verification of a chain (SPEC §5).

Every stored entry carries ``hmac = HMAC-SHA256(key, canonical(entry, seq, key_id, prev_hmac))`` where
``prev_hmac`` is the ``hmac`` of the entry before it in the store (one chain per store). The key is
derived from an operator secret with its own salt, so the raw secret never signs anything here and a
signature made for another purpose (the consent cookie) never verifies as a log entry.

A one-row *chain state* holds the head (seq and hmac of the newest entry) and the anchor (seq and hmac
of the last purged entry, or the genesis value), itself signed: deleting the newest entries, or the
oldest ones past the anchor, is detected as surely as editing an entry in the middle.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Protocol

__all__ = [
    "GENESIS",
    "METHODS",
    "ChainState",
    "ConsentLog",
    "LogEntry",
    "LogUnavailable",
    "NewEntry",
    "Signer",
    "VerifyReport",
    "check_entry",
    "format_time",
    "parse_time",
    "verify_chain",
]

METHODS: Final = ("accept_all", "reject_all", "custom", "withdraw")
#: ``prev_hmac`` of the first entry ever written (and the anchor of a store never purged).
GENESIS: Final = "0" * 64
#: Salt of the key derivation: HMAC(secret, salt) is the signing key, never the secret itself.
KEY_SALT: Final = b"consent-middleware.log.v1"
ENTRY_TAG: Final = "consent-log.entry.v1"
STATE_TAG: Final = "consent-log.chain.v1"
HEX32: Final = re.compile(r"[0-9a-f]{32}")
HEX64: Final = re.compile(r"[0-9a-f]{64}")
#: verify() stops listing problems after this many (a store rewritten whole would list millions).
MAX_PROBLEMS: Final = 1000


class LogUnavailable(RuntimeError):
    """Neither the store nor the spool could take an entry, or the store cannot be read (a 503)."""


@dataclass(frozen=True, slots=True)
class NewEntry:
    """What a decision produces (SPEC §5); the log adds the chain fields when it stores it."""

    consent_id: str  # 32 hex
    time: datetime  # UTC, aware
    policy_version: str
    categories: tuple[str, ...]  # granted optional categories, sorted ("necessary" implied)
    method: str  # accept_all | reject_all | custom | withdraw
    language: str
    country: str | None  # ISO code or None
    ip_truncated: str | None  # already truncated by the caller
    ua_family: str | None  # e.g. "Firefox"
    banner_hash: str  # sha256 hex of the banner text shown
    entry_id: str  # random 128-bit hex, unique: makes spool replay idempotent


@dataclass(frozen=True, slots=True)
class LogEntry(NewEntry):
    """An entry as stored. An entry still waiting in the spool has ``seq == 0`` and empty chain fields."""

    seq: int  # order in the chain, from 1
    key_id: str  # which secret signed it (short id, not the key)
    prev_hmac: str
    hmac: str

    @property
    def pending(self) -> bool:
        """True for an entry still in the spool (not yet chained into the store)."""
        return self.seq == 0

    @classmethod
    def of(cls, entry: NewEntry, *, seq: int, key_id: str, prev_hmac: str, hmac: str) -> LogEntry:
        return cls(
            consent_id=entry.consent_id,
            time=entry.time,
            policy_version=entry.policy_version,
            categories=entry.categories,
            method=entry.method,
            language=entry.language,
            country=entry.country,
            ip_truncated=entry.ip_truncated,
            ua_family=entry.ua_family,
            banner_hash=entry.banner_hash,
            entry_id=entry.entry_id,
            seq=seq,
            key_id=key_id,
            prev_hmac=prev_hmac,
            hmac=hmac,
        )

    @classmethod
    def unchained(cls, entry: NewEntry) -> LogEntry:
        return cls.of(entry, seq=0, key_id="", prev_hmac="", hmac="")


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    checked: int  # entries checked
    problems: list[str] = field(default_factory=list)  # each names the entry: "seq N (entry_id X): ..."


@dataclass(frozen=True, slots=True)
class ChainState:
    """The signed chain state row: head and anchor (last purged entry)."""

    head_seq: int
    head_hmac: str
    anchor_seq: int
    anchor_hmac: str
    key_id: str
    mac: str


class ConsentLog(Protocol):
    """One instance per middleware, shared by all requests.

    ``append``, ``history`` and ``close`` are coroutines and never block the event loop. The operator
    side (``entries``, ``purge``, ``verify``) is synchronous and blocking: call it from the CLI or a
    thread, not from the event loop.
    """

    async def append(self, entry: NewEntry) -> None: ...
    async def history(self, consent_id: str) -> list[LogEntry]: ...
    async def close(self) -> None: ...
    def entries(self, *, since: datetime | None = None) -> Iterator[LogEntry]: ...
    def purge(self, *, older_than: datetime) -> int: ...
    def verify(self) -> VerifyReport: ...


def format_time(moment: datetime) -> str:
    """Fixed-width UTC text (sorts as it compares): ``2025-01-31T12:00:00.000000Z``."""
    if moment.tzinfo is None:
        raise ValueError("log times must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _text(value: object, name: str, *, optional: bool = False, limit: int = 256) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise ValueError(f"log entry: {name} must be a string, not {type(value).__name__}")
    # A value no store can hold would stall the spool replay for good: refuse it up front.
    if "\x00" in value or len(value) > limit:
        raise ValueError(f"log entry: {name} holds a NUL character or is longer than {limit}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"log entry: {name} is not valid Unicode") from None


def check_entry(entry: NewEntry) -> None:
    """Refuse (``ValueError``) an entry that is malformed: a programming error, never store trouble."""
    if not isinstance(entry, NewEntry):
        raise TypeError(f"expected a NewEntry, not {type(entry).__name__}")
    if not isinstance(entry.consent_id, str) or not HEX32.fullmatch(entry.consent_id):
        raise ValueError("log entry: consent_id must be 32 lowercase hex digits")
    if not isinstance(entry.entry_id, str) or not HEX32.fullmatch(entry.entry_id):
        raise ValueError("log entry: entry_id must be 32 lowercase hex digits")
    if not isinstance(entry.time, datetime) or entry.time.tzinfo is None:
        raise ValueError("log entry: time must be a timezone-aware datetime")
    if entry.method not in METHODS:
        raise ValueError(f"log entry: method must be one of {', '.join(METHODS)}")
    if not isinstance(entry.categories, tuple):
        raise ValueError("log entry: categories must be a tuple of strings")
    for name in entry.categories:
        _text(name, "categories", limit=64)
    if list(entry.categories) != sorted(set(entry.categories)):
        raise ValueError("log entry: categories must be sorted and unique")
    if not isinstance(entry.banner_hash, str) or not HEX64.fullmatch(entry.banner_hash):
        raise ValueError("log entry: banner_hash must be 64 lowercase hex digits (sha256)")
    _text(entry.policy_version, "policy_version", limit=64)
    _text(entry.language, "language", limit=35)
    _text(entry.country, "country", optional=True, limit=8)
    _text(entry.ip_truncated, "ip_truncated", optional=True, limit=64)
    _text(entry.ua_family, "ua_family", optional=True, limit=128)


def canonical(entry: NewEntry, seq: int, key_id: str, prev_hmac: str) -> bytes:
    """The bytes an entry's HMAC covers: every field, in a fixed order, plus the previous HMAC."""
    return json.dumps(
        [
            ENTRY_TAG,
            seq,
            entry.entry_id,
            entry.consent_id,
            format_time(entry.time),
            entry.policy_version,
            list(entry.categories),
            entry.method,
            entry.language,
            entry.country,
            entry.ip_truncated,
            entry.ua_family,
            entry.banner_hash,
            key_id,
            prev_hmac,
        ],
        separators=(",", ":"),
        ensure_ascii=True,
    ).encode("ascii")


def _state_bytes(head_seq: int, head_hmac: str, anchor_seq: int, anchor_hmac: str, key_id: str) -> bytes:
    return json.dumps(
        [STATE_TAG, head_seq, head_hmac, anchor_seq, anchor_hmac, key_id], separators=(",", ":")
    ).encode("ascii")


class Signer:
    """Keys derived from the operator's secrets: the newest signs, any listed one verifies."""

    def __init__(self, secret_keys: tuple[str, ...]) -> None:
        if not secret_keys or any(not isinstance(key, str) or not key for key in secret_keys):
            raise ValueError("the consent log needs at least one secret key")
        self._keys: dict[str, bytes] = {}
        for secret in secret_keys:
            derived = hmac.new(secret.encode("utf-8"), KEY_SALT, hashlib.sha256).digest()
            self._keys.setdefault(hashlib.sha256(derived).hexdigest()[:8], derived)
        self.key_id = next(iter(self._keys))

    def __repr__(self) -> str:  # never show a key
        return f"<Signer key_id={self.key_id} keys={len(self._keys)}>"

    def knows(self, key_id: str) -> bool:
        return key_id in self._keys

    def _mac(self, data: bytes, key_id: str) -> str:
        return hmac.new(self._keys[key_id], data, hashlib.sha256).hexdigest()

    def chain(self, entry: NewEntry, seq: int, prev_hmac: str) -> LogEntry:
        """``entry`` as stored at ``seq`` after an entry whose HMAC is ``prev_hmac``."""
        mac = self._mac(canonical(entry, seq, self.key_id, prev_hmac), self.key_id)
        return LogEntry.of(entry, seq=seq, key_id=self.key_id, prev_hmac=prev_hmac, hmac=mac)

    def entry_valid(self, entry: LogEntry) -> bool:
        if entry.key_id not in self._keys:
            return False
        try:
            data = canonical(entry, entry.seq, entry.key_id, entry.prev_hmac)
        except (ValueError, TypeError, AttributeError):  # a field edited into something unserializable
            return False
        return _same(self._mac(data, entry.key_id), entry.hmac)

    def state(self, head_seq: int, head_hmac: str, anchor_seq: int, anchor_hmac: str) -> ChainState:
        data = _state_bytes(head_seq, head_hmac, anchor_seq, anchor_hmac, self.key_id)
        return ChainState(
            head_seq, head_hmac, anchor_seq, anchor_hmac, self.key_id, self._mac(data, self.key_id)
        )

    def state_valid(self, state: ChainState) -> bool:
        if state.key_id not in self._keys:
            return False
        data = _state_bytes(
            state.head_seq, state.head_hmac, state.anchor_seq, state.anchor_hmac, state.key_id
        )
        return _same(self._mac(data, state.key_id), state.mac)


def _same(expected: str, stored: object) -> bool:
    """Constant-time comparison that also takes an edited, non-ASCII or non-text stored value."""
    text = stored if isinstance(stored, str) else repr(stored)
    return hmac.compare_digest(expected.encode("ascii"), text.encode("utf-8", "backslashreplace"))


def _name(entry: LogEntry) -> str:
    return f"seq {entry.seq} (entry_id {entry.entry_id})"


def verify_chain(signer: Signer, state: ChainState | None, entries: Iterable[LogEntry]) -> VerifyReport:
    """Check a store's entries, oldest first, against each other and against its chain state."""
    problems: list[str] = []
    hidden = 0

    def problem(text: str) -> None:
        nonlocal hidden
        if len(problems) < MAX_PROBLEMS:
            problems.append(text)
        else:
            hidden += 1

    if state is None:
        problem("chain state row missing: the log's head and anchor were deleted")
        anchor_seq, anchor_hmac, head = 0, GENESIS, None
    else:
        if not signer.state_valid(state):
            reason = "unknown key" if not signer.knows(state.key_id) else "HMAC does not match"
            problem(
                f"chain state (head seq {state.head_seq}, anchor seq {state.anchor_seq}) edited: {reason}"
            )
        anchor_seq, anchor_hmac, head = state.anchor_seq, state.anchor_hmac, state
    expected_seq, expected_prev = anchor_seq + 1, anchor_hmac
    checked = 0
    last: LogEntry | None = None
    for entry in entries:
        checked += 1
        faults = []
        if entry.seq != expected_seq:
            if entry.seq > expected_seq:
                missing = f"seq {expected_seq}" + (
                    f"..{entry.seq - 1}" if entry.seq - 1 > expected_seq else ""
                )
                faults.append(f"entries before it are missing ({missing} deleted)")
            else:
                faults.append(f"out of order (expected seq {expected_seq})")
        if entry.prev_hmac != expected_prev:
            faults.append(
                "prev_hmac does not match the previous entry's HMAC (one before it deleted or edited)"
            )
        if not signer.knows(entry.key_id):
            faults.append(f"signed with an unknown key {entry.key_id!r} (not among the listed secrets)")
        elif not signer.entry_valid(entry):
            faults.append("HMAC does not match its contents (edited)")
        if faults:
            problem(f"{_name(entry)}: {'; '.join(faults)}")
        expected_seq, expected_prev, last = entry.seq + 1, entry.hmac, entry
    if head is not None:
        if last is None:
            if head.head_seq != anchor_seq:
                problem(
                    f"seq {anchor_seq + 1}..{head.head_seq}: every entry is missing (the head is seq "
                    f"{head.head_seq}, entry hmac {head.head_hmac[:16]}...)"
                )
        elif last.seq != head.head_seq or last.hmac != head.head_hmac:
            if last.seq < head.head_seq:
                problem(
                    f"seq {last.seq + 1}..{head.head_seq}: the newest entries are missing "
                    f"(deleted after {_name(last)})"
                )
            else:
                problem(f"{_name(last)}: does not match the chain head (seq {head.head_seq})")
    if hidden:
        problems.append(f"... and {hidden} more problems")
    return VerifyReport(ok=not problems, checked=checked, problems=problems)
