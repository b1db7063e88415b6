"""A short soak (issue 8): ``benchmarks/soak.py`` for 15 s on 8 connections, every answer checked.

The same site, mix, visitors and checks as ``make soak`` (5 minutes, 64 connections): uvicorn in a
subprocess, a real SQLite consent log in a temporary folder. Asserted here: every kind of request was
made, no error (no 5xx, no lost connection, no timeout, no answer other than it should be), every
confirmed decision is in the log once, in a chain that verifies. Memory flatness needs the long run.
"""

from __future__ import annotations

from typing import Final

from benchmarks.soak import KINDS, run_soak, summary

DURATION: Final = 15.0
CONNECTIONS: Final = 8


def test_a_short_soak_through_uvicorn_gives_every_answer_right() -> None:
    result = run_soak(duration=DURATION, connections=CONNECTIONS, warmup=5.0, sample_every=2.0)
    report = summary(result)
    print("\n" + report)  # shown with -s
    assert result.problems(check_memory=False) == [], report
    tally = result.tally
    assert set(tally.by_kind) == set(KINDS), report
    assert set(tally.statuses) <= {200, 303, 304, 403}, report  # 403: the cross-site posts, on purpose
    assert tally.statuses[403] > 0, report
    assert tally.confirmed_decisions > 0, report
    assert result.requests > 50 * DURATION, f"the load barely ran; {report}"
    assert len(result.samples) >= 3, report  # the memory sampler ran
    assert tally.connections_opened == CONNECTIONS, f"a connection was lost and reopened; {report}"
