"""Chromium's own network log (``--log-net-log``): the browser's account of every host it resolved,
every socket it connected and every request it made, speculative ones (``preconnect``,
``dns-prefetch``) included. It is complete once the browser has closed.

With ``--host-resolver-rules`` a speculative resolution is logged under the mapped address
(``http://127.0.0.1:PORT`` for a dns-prefetch, ``https://...`` for a preconnect), so each tracker
host gets its own port and is found by it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class NetEvent:
    """One logged event that names a host of interest."""

    kind: str
    host: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} ({self.host}): {self.detail[:240]}"


def load(path: Path) -> dict[str, Any]:
    """The log as JSON; one cut short by a crash is closed so that what it has can be read."""
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        log: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError:
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    return log


def events_naming(path: Path, hosts: Mapping[str, int], *, after_url: str | None = None) -> list[NetEvent]:
    """Every event whose parameters name one of ``hosts``, or the 127.0.0.1 port it is mapped to;
    with ``after_url``, only those logged from the first request for that URL on."""
    log = load(path)
    kinds = {number: name for name, number in log["constants"]["logEventTypes"].items()}
    needles = [(host, host) for host in hosts] + [(f"127.0.0.1:{port}", host) for host, port in hosts.items()]
    events: list[dict[str, Any]] = log.get("events", [])
    if after_url is not None:
        marker = json.dumps(after_url)
        start = next(
            (int(e["time"]) for e in events if marker in json.dumps(e.get("params") or {}, sort_keys=True)),
            None,
        )
        assert start is not None, f"the network log has no request for {after_url}"
        events = [e for e in events if int(e["time"]) >= start]
    found = []
    for event in events:
        params = event.get("params")
        if not params:
            continue
        text = json.dumps(params, sort_keys=True)
        for needle, host in needles:
            if needle in text:
                found.append(NetEvent(kinds.get(event["type"], str(event["type"])), host, text))
                break
    return found


def speculative_resolutions(events: Iterable[NetEvent]) -> list[NetEvent]:
    """The host resolutions Chromium made ahead of time: dns-prefetch and preconnect hints."""
    return [
        event
        for event in events
        if event.kind == "HOST_RESOLVER_MANAGER_REQUEST" and '"is_speculative": true' in event.detail
    ]
