"""`--profile`: each framework's own profiler over a few steady-state training steps, taken after
a job's timed steps so no timing figure includes its cost; the trace saved in the framework's
native viewable format, and its operations' self times sorted into categories that compare
across frameworks.

A worker (`training.capture_profile`) hands the steps to the adapter's own `profile` and sorts the
ops it recorded by the adapter's `op_category` (rules in `frameworks.profiles`) into `op_table`.
Nothing here knows a framework, so the report reads the categories from here too."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from benchmarks.harness.results import IDENTITY, PROFILE_COLUMNS

STEPS = 5  # profiled steps: enough to average out one step's jitter, few enough to keep traces small

CATEGORIES = ("convolution forward", "convolution backward", "matmul", "pooling", "normalization", "elementwise",
              "optimizer", "data transfer", "other")
OP_COLUMNS = PROFILE_COLUMNS[len(IDENTITY):]  # self_ms: per profiled step
RECORDED = ["op", "calls", "self_us", "detail"]  # an adapter's `profile` rows


def op_table(category: Callable[[str, str], str], ops: pd.DataFrame, steps: int) -> pd.DataFrame:
    """Ops (`op`, `calls`, `self_us` summed over the profiled steps, `detail`) -> per-step rows with
    their category (`category(op, detail)`, one of CATEGORIES) and share of all self time, the
    largest first."""
    ops = ops[ops["self_us"] > 0].groupby(["op", "detail"], as_index=False, sort=False)[["calls", "self_us"]].sum()
    ops["category"] = [category(op, detail) for op, detail in zip(ops["op"], ops["detail"])]
    unknown = sorted(set(ops["category"]) - set(CATEGORIES))
    if unknown:
        raise ValueError(f"categories {unknown} are none of {CATEGORIES}")
    ops["self_ms"] = ops["self_us"] / 1000 / steps
    ops["calls"] = ops["calls"] / steps
    ops["share"] = ops["self_us"] / ops["self_us"].sum()
    return ops.sort_values("self_ms", ascending=False)[OP_COLUMNS].reset_index(drop=True)
