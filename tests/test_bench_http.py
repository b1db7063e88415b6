"""The HTTP benchmark's arithmetic: a round's run made of slices, the interval of a median ratio
(benchmarks/bench_http.py)."""

from __future__ import annotations

import pytest

from benchmarks.bench_http import WrkRun, combined, median_interval


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


def test_the_interval_of_a_median_of_7_rounds_is_their_range() -> None:
    # min and max enclose the median with chance 1 - 2 / 2**7 = 0.984; the next pair only 0.875.
    assert median_interval([0.91, 0.86, 0.95, 0.88, 0.90, 0.84, 0.93]) == (0.84, 0.95)


def test_the_interval_of_a_median_of_30_rounds_is_the_10th_to_the_21st_value() -> None:
    # The textbook pair for n = 30: chance 0.957 (the 11th to the 20th: 0.901).
    values = [round(0.80 + i / 100, 2) for i in range(30)]
    assert median_interval(list(reversed(values))) == (values[9], values[20])


def test_under_6_rounds_no_interval_reaches_95_percent() -> None:
    assert median_interval([0.9, 0.8, 1.0, 0.85, 0.95]) is None
    assert median_interval([]) is None
