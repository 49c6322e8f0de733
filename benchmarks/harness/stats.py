"""Robust statistics of timed windows: median, quartiles and tails, never the mean."""

from __future__ import annotations

import numpy as np


def step_time_summary(step_ms: np.ndarray) -> dict[str, float]:
    """Per-step milliseconds of each timed window -> median, IQR, p5/p95 and the window count."""
    if len(step_ms) == 0:
        return {"windows": 0}
    p5, q1, median, q3, p95 = np.percentile(step_ms, [5, 25, 50, 75, 95])
    return {"windows": len(step_ms), "step_ms_median": median, "step_ms_q1": q1, "step_ms_q3": q3,
            "step_ms_iqr": q3 - q1, "step_ms_p5": p5, "step_ms_p95": p95}


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / max(||a||, ||b||) over the whole tensor; 0 when both are zero."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(np.linalg.norm(a), np.linalg.norm(b))
    return float(np.linalg.norm(a - b) / scale) if scale else 0.0
