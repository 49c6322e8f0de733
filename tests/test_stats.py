"""Statistics of timed windows and the relative error used by the parity checks."""

import numpy as np
import pytest

from benchmarks.harness.stats import StepTimes, relative_error, step_time_summary


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
