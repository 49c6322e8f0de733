"""Robust statistics of timed windows: median, quartiles and tails, never the mean."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StepTimes:
    """A summary row's step times: the window count, and per-step milliseconds (None without a window)."""

    windows: int
    step_ms_median: float | None = None
    step_ms_q1: float | None = None
    step_ms_q3: float | None = None
    step_ms_iqr: float | None = None
    step_ms_p5: float | None = None
    step_ms_p95: float | None = None


def step_time_summary(step_ms: np.ndarray) -> StepTimes:
    """Per-step milliseconds of each timed window -> median, IQR, p5/p95 and the window count."""
    if len(step_ms) == 0:
        return StepTimes(windows=0)
    p5, q1, median, q3, p95 = (float(value) for value in np.percentile(step_ms, [5, 25, 50, 75, 95]))
    return StepTimes(windows=len(step_ms), step_ms_median=median, step_ms_q1=q1, step_ms_q3=q3, step_ms_iqr=q3 - q1,
                     step_ms_p5=p5, step_ms_p95=p95)


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / max(||a||, ||b||) over the whole tensor; 0 when both are zero."""
    return relative_errors({"a": a, "b": b}, [("a", "b")])[0]


def relative_errors(arrays: Mapping[str, np.ndarray], pairs: Iterable[tuple[str, str]]) -> list[float]:
    """`relative_error` of each pair of named tensors, each tensor widened to float64 and its norm
    taken once however many pairs it is in (a parity table compares a dozen variants pairwise)."""
    pairs = list(pairs)
    wide = {name: np.asarray(arrays[name], np.float64) for name in dict.fromkeys(itertools.chain(*pairs))}
    norms = {name: np.linalg.norm(value) for name, value in wide.items()}
    errors = []
    for a, b in pairs:
        scale = max(norms[a], norms[b])
        errors.append(float(np.linalg.norm(wide[a] - wide[b]) / scale) if scale else 0.0)
    return errors
