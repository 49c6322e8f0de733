"""Statistics of timed windows and the relative error used by the parity checks."""

import numpy as np
import pytest

from benchmarks.harness.stats import StepTimes, relative_error, relative_errors, step_time_summary


def test_step_time_summary_uses_robust_statistics():
    windows = np.array([10.0, 11.0, 9.0, 10.0, 100.0])  # one outlier window
    summary = step_time_summary(windows)
    assert summary.windows == 5
    assert summary.step_ms_median == 10.0
    assert summary.step_ms_iqr == pytest.approx(1.0)
    assert summary.step_ms_p5 == pytest.approx(9.2)
    assert summary.step_ms_p95 > 50


def test_step_time_summary_of_no_windows_says_so():
    assert step_time_summary(np.array([])) == StepTimes(windows=0)


def test_relative_error_is_symmetric_and_scale_free():
    a = np.array([1.0, 2.0, 3.0])
    b = a * (1 + 1e-6)
    assert relative_error(a, b) == pytest.approx(relative_error(b, a))
    assert relative_error(a * 1e6, b * 1e6) == pytest.approx(relative_error(a, b))
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(a, -a) == pytest.approx(2.0)


def test_relative_errors_of_many_pairs_are_each_pairs_relative_error_in_float64():
    rng = np.random.default_rng(0)
    arrays = {"fp32": rng.normal(size=(3, 4)).astype(np.float32), "zero": np.zeros((3, 4)), "twice": None}
    arrays["twice"] = arrays["fp32"].astype(np.float64) * 2
    arrays["close"] = arrays["fp32"].astype(np.float64) * (1 + 1e-12)
    pairs = [("fp32", "twice"), ("fp32", "close"), ("zero", "zero"), ("twice", "zero"), ("close", "fp32")]
    errors = relative_errors(arrays, pairs)
    assert errors == [relative_error(arrays[a], arrays[b]) for a, b in pairs]
    wide = arrays["fp32"].astype(np.float64)
    assert errors[1] == pytest.approx(1e-12, rel=1e-3), "the float32 tensor is widened before the difference"
    assert errors[2] == 0.0 and errors[3] == 1.0 and errors[0] == pytest.approx(0.5)
    assert errors[4] == pytest.approx(np.linalg.norm(wide * 1e-12) / np.linalg.norm(wide * (1 + 1e-12)))
