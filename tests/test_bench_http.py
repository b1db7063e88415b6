"""The HTTP benchmark's arithmetic: a round's run made of slices (benchmarks/bench_http.py)."""

from __future__ import annotations

import pytest

from benchmarks.bench_http import WrkRun, combined


def slice_run(rate: float, requests: int, cpu_us: float, *, p50: float = 1.0, problem: str = "") -> WrkRun:
    return WrkRun(rate, p50, p50 * 3, requests, 0, 0, cpu_us, 0.99, problem)


def test_slices_combine_into_the_mean_rate_and_the_cpu_per_request_over_all_of_them() -> None:
    run = combined([slice_run(10_000, 10_000, 60.0, p50=0.8), slice_run(14_000, 14_000, 54.0, p50=0.9)])
    assert run.rate == pytest.approx(12_000)
    assert run.requests == 24_000
    assert run.cpu_us == pytest.approx((10_000 * 60.0 + 14_000 * 54.0) / 24_000)
    assert run.p50 == pytest.approx(0.85)
    assert not run.failed


def test_one_failed_slice_fails_the_round_and_names_its_problem() -> None:
    run = combined([slice_run(10_000, 10_000, 60.0), slice_run(0, 0, 0.0, problem="wrk exited with 1")])
    assert run.failed
    assert run.problem == "wrk exited with 1"


def test_a_single_slice_is_the_run_itself() -> None:
    one = slice_run(12_345, 12_345, 58.0)
    assert combined([one]) is one
