"""What a front end costs (Keras 3 over the framework it runs on): each step a front end trains, next to the
native step that computes the same (its registry entry's counterpart) in the same setting of one run, with
their step-time ratio and its bootstrap interval, compile time and peak memory, in a table, a section and
the answer's sentences."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmarks.harness.results import JOB, SETTING
from frameworks import counterpart, front_end, registry
from report.findings import (
    CONFIDENCE,
    MIN_WINDOWS,
    NAMED_WHEN_VARYING,
    SEED,
    group_name,
    job_key,
    ratio_interval,
    timed_jobs,
    took_turns,
    varying,
    window_times,
)
from report.tables import markdown, process_of

# Per side of a pair, as the ranking shows them (tables.ranking_table): the native side's under "native_" + name.
MEASURES = ["step_ms_median", "compile_s", "peak_rss_mb", "framework_rss_mb", "peak_device_mb"]
COLUMNS = [*SETTING, "front_end", "job", "native", "front_end_default", "jit_compile", "cost", "cost_low",
           "cost_high", "verdict", "processes", "native_processes",
           *(name for measure in MEASURES for name in (measure, f"native_{measure}"))]
CSV = "front_end_cost.csv"


def front_end_default(framework: str, variant: str) -> bool:
    """Whether `framework:variant` is its front end's own default step on that framework (Keras's `fit`, with
    jit_compile="auto" as Keras resolves it): the first of the framework's variants that train through it."""
    entry = registry().get(framework)
    through = [name for name in entry.variants if front_end(framework, name)] if entry else []
    return bool(through) and through[0] == variant


def _jit_compile(values: pd.Series) -> str:
    """The `jit_compile` its front end resolved for a job, as text ("" where none is recorded)."""
    recorded = values.dropna().astype(str)
    return recorded.iloc[0] if len(recorded) else ""


def front_end_costs(summary: pd.DataFrame, steps: pd.DataFrame, seed: int = SEED,
                    interleave: str | None = None) -> pd.DataFrame:
    """Per job trained through a front end whose native counterpart ran in the same SETTING of the run, both
    measured on a quiet machine and fed by the suite: `cost`, the front end's median step time over the
    native one's (above 1: the front end is slower), with its bootstrap interval `cost_low`-`cost_high`
    (`findings.ratio_interval`, paired by round where the two took turns; `interleave`: the run's), `verdict`
    (tied where the interval covers 1, slower, faster, or undecided where either side has fewer than
    MIN_WINDOWS windows), and each side's MEASURES, repeats merged as the ranking merges them."""
    jobs = timed_jobs(summary)
    jobs = jobs[jobs["input"].ne("native")]  # a framework's own pipeline times more than the step
    times = window_times(jobs, steps)
    grouped = jobs.assign(framework_rss_mb=jobs["baseline_rss_mb"], process=process_of(jobs)).groupby(JOB, sort=False)
    sides = grouped.agg(step_ms_median=("step_ms_median", "median"), compile_s=("compile_s", "median"),
                        peak_rss_mb=("peak_rss_mb", "max"), framework_rss_mb=("framework_rss_mb", "max"),
                        peak_device_mb=("peak_device_mb", "max"), jit_compile=("jit_compile", _jit_compile),
                        processes=("process", "nunique"))
    sides["framework_rss_mb"] = sides["peak_rss_mb"] - sides["framework_rss_mb"]
    rng = np.random.default_rng(seed)
    rows = []
    for key, side in sides.iterrows():
        where = dict(zip(JOB, key))
        native = counterpart(where["framework"], where["variant"])
        setting = tuple(where[column] for column in SETTING)
        native_key = job_key(setting, *native.split(":")) if native else None
        if native_key not in sides.index:
            continue
        other = sides.loc[native_key]
        processes, baseline = times.get(key), times.get(native_key)
        cost, low, high = side["step_ms_median"] / other["step_ms_median"], None, None
        if min(sum(map(len, processes or [])), sum(map(len, baseline or []))) < MIN_WINDOWS:
            verdict = "undecided"
        else:
            _, low, high = ratio_interval(processes, baseline, rng, paired=took_turns(interleave, key, native_key))
            verdict = "tied" if low <= 1 <= high else "slower" if low > 1 else "faster"
        rows.append({**dict(zip(SETTING, setting)), "front_end": front_end(where["framework"], where["variant"]),
                     "job": f"{where['framework']}:{where['variant']}", "native": native,
                     "front_end_default": front_end_default(where["framework"], where["variant"]),
                     "jit_compile": side["jit_compile"], "cost": cost, "cost_low": low, "cost_high": high,
                     "verdict": verdict, "processes": side["processes"], "native_processes": other["processes"],
                     **{name: value for measure in MEASURES
                        for name, value in ((measure, side[measure]), (f"native_{measure}", other[measure]))}})
    return pd.DataFrame(rows, columns=COLUMNS).astype({"cost_low": float, "cost_high": float})


def _cost_text(row: pd.Series) -> str:
    """A pair's cost in words: "1.12x (1.05-1.20)", "1.02x (0.97-1.08, tied)", "1.01x (undecided: ...)"."""
    if row["verdict"] == "undecided":
        return f"{row['cost']:.2f}x (undecided: too few timed windows for an interval)"
    tied = ", tied" if row["verdict"] == "tied" else ""
    return f"{row['cost']:.2f}x ({row['cost_low']:.2f}-{row['cost_high']:.2f}{tied})"


def _title(name: str) -> str:
    return name[:1].upper() + name[1:]


def _step_text(job: str, rows: pd.DataFrame) -> str:
    """Which step the front end trained: "keras_torch:fit, Keras's own default: jit_compile=False"."""
    row = rows.iloc[0]
    what = f"{job}, {_title(row['front_end'])}'s own default" if row["front_end_default"] else job
    return what + (f": jit_compile={row['jit_compile']}" if row["jit_compile"] else "")


def cost_sentences(costs: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    """Per front-end job and its native counterpart, e.g. "Keras costs 1.12x (1.05-1.20) on pytorch against
    pytorch:eager (keras_torch:fit, Keras's own default: jit_compile=False) at lenet, batch 32; 1.05x
    (0.98-1.10, tied) at lenet, batch 128."; none without a pair."""
    varies = varying(summary)
    sentences = []
    for (job, native), rows in costs.groupby(["job", "native"], sort=False):
        items = [f"{_cost_text(row)}" + (f" on {native.split(':')[0]} against {native} ({_step_text(job, rows)})"
                                         if index == 0 else "") + f" at {group_name(tuple(row[SETTING]), varies)}"
                 for index, (_, row) in enumerate(rows.iterrows())]
        sentences.append(f"{_title(rows['front_end'].iloc[0])} costs {'; '.join(items)}.")
    return sentences


def front_end_section(costs: pd.DataFrame) -> str:
    """The pairs of `front_end_costs` (also front_end_cost.csv), without the columns that hold one value in the
    whole table and the process counts (the answer's note says what the intervals rest on)."""
    if costs.empty:
        return ""
    names = " and ".join(_title(name) for name in costs["front_end"].unique())
    defaults = ", ".join(costs.loc[costs["front_end_default"], "job"].unique())
    own = (f" Each front end's own default step, as its users get it (`front_end_default`; its jit_compile as "
           f"the front end resolves \"auto\"): {defaults}."
           if defaults else "")
    return (f"## What {names} costs\n\nEach step trained through a front end next to the native step that computes "
            f"the same (`native`), in the same setting of this run: `cost` is the front end's median step time over "
            f"the native one's (above 1: the front end is slower), with its {CONFIDENCE:.0%} bootstrap interval "
            f"`cost_low` to `cost_high`, resampled as `ratio` is and paired by round where the two took turns; "
            f"`verdict` tied where the interval covers 1. `compile_s` (the first step, compilation included) and "
            f"memory in MiB for each side, the native one's under `native_`; `jit_compile`: what the front end "
            f"resolved for the step (docs/method.md).{own} The table is `{CSV}`.\n\n{front_end_table(costs)}\n")


def front_end_table(costs: pd.DataFrame) -> str:
    """`front_end_costs` in Markdown, without the columns that hold one value in the whole table and the
    process counts."""
    constant = [column for column in [*NAMED_WHEN_VARYING, "tuning", "front_end"] if costs[column].nunique() == 1]
    shown = costs.drop(columns=[*constant, "processes", "native_processes"])
    return markdown(shown.dropna(axis="columns", how="all"))  # e.g. device memory on a CPU
