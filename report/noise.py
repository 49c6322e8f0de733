"""`python -m report.noise RUN [RUN...] [--pairing]`: how much each job's step time varies, within a process
and between processes, and what it varies with. One row per job and run, from the timed windows
in `steps.csv`:

- `process_ms`: each process's median step time (one per repeat), and `spread`, their
  (max - min) / median, the figure `--repeats` exists for;
- `window_cv`: the standard deviation of a process's window step times over their mean (the
  median over the job's processes): how noisy one process's windows are;
- `steal_corr`, `others_corr`: the Pearson correlation, over all the job's windows, of a window's
  step time with `steal` (the share of the worker's cores the hypervisor gave to other virtual
  machines during it) and with `others_cpu` (the share other processes on this machine used);
- `stolen`: the share of windows during which the hypervisor took at least STOLEN of the cores;
- `process_p`: whether the processes differ by more than the moments they ran at explain. Windows
  with the same number ran one after another, in one round of turns; removing each round's mean
  (of log step times) leaves what is each process's own, and `process_p` is the share of
  SHUFFLES reshufflings of the processes within each round whose process means lie at least as
  far apart as the real ones (a permutation test; small: a process has a speed of its own).

It reads what the run recorded and measures nothing. `pairing_table` measures what pairing the
windows of jobs that took turns by round does to the width of the ranking's bootstrap intervals
(`report.findings.ratio_interval`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.harness.results import JOB, latest_attempts
from report.findings import SEED as FINDINGS_SEED, ratio_interval, timed_jobs, took_turns, turns, window_times
from report.source import SchemaError, final_summary, read_env, read_table
from report.tables import identified, label

STOLEN = 0.005  # share of the cores' time above which a window counts as stolen from
SHUFFLES = 2000
SEED = 0  # fixed: the same tables always give the same table


def _correlation(windows: pd.DataFrame, column: str) -> float:
    values = windows[column].astype(float)
    if values.isna().all() or values.nunique() < 2:
        return float("nan")  # not measured (e.g. macOS), or constant: no correlation to speak of
    return float(windows["step_ms"].corr(values))


def _stolen(steal: pd.Series) -> float:
    """The share of windows that lost at least STOLEN to the hypervisor; NaN where not measured."""
    return float((steal >= STOLEN).mean()) if steal.notna().any() else float("nan")


def process_p(windows: pd.DataFrame, rng: np.random.Generator) -> float:
    """The permutation test's p-value for a process effect beyond the rounds of turns (see the
    module docstring); NaN with a single process."""
    rounds = np.log(windows.pivot_table(index="window", columns="repeat", values="step_ms").dropna().to_numpy())
    if rounds.shape[1] < 2 or len(rounds) < 2:
        return float("nan")
    own = rounds - rounds.mean(axis=1, keepdims=True)
    observed = np.ptp(own.mean(axis=0))
    shuffled = rng.permuted(np.broadcast_to(own, (SHUFFLES, *own.shape)), axis=2)
    apart = np.ptp(shuffled.mean(axis=1), axis=1)
    return float((1 + np.sum(apart >= observed - 1e-12)) / (1 + SHUFFLES))


def noise_table(steps: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Per job, the variation of the timed windows of its final attempt (columns as the module
    docstring says)."""
    jobs = identified(latest_attempts(summary))
    # the steps table carries part of the identity; the job's summary row the rest
    timed = steps.drop(columns=JOB, errors="ignore").merge(jobs[["job_id", "attempt", *JOB]], on=["job_id", "attempt"])
    rng = np.random.default_rng(SEED)
    rows = []
    for key, windows in timed.groupby(JOB, sort=False):
        per_process = windows.groupby("repeat")["step_ms"]
        medians = per_process.median()
        rows.append({
            **dict(zip(JOB, key)),
            "processes": len(medians),
            "process_ms": ", ".join(f"{value:.2f}" for value in medians),
            "spread": (medians.max() - medians.min()) / medians.median() if len(medians) > 1 else float("nan"),
            "window_cv": float((per_process.std() / per_process.mean()).median()),
            "windows": len(windows),
            "steal_corr": _correlation(windows, "steal"),
            "others_corr": _correlation(windows, "others_cpu"),
            "stolen": _stolen(windows["steal"].astype(float)),
            "process_p": process_p(windows, rng),
        })
    table = pd.DataFrame(rows)
    if len(table):
        table.insert(len(JOB), "job", label(table))  # names each job of the run apart from the others
    return table


def pairing_table(summary: pd.DataFrame, steps: pd.DataFrame, interleave: str | None) -> pd.DataFrame:
    """Every pair of a run's jobs on a quiet machine that took turns (`report.findings.took_turns`):
    the relative width (high - low) / ratio of the 95% interval of their step-time ratio, resampled
    apart and paired by round, each from the findings' seed."""
    jobs = timed_jobs(summary)
    times = window_times(jobs, steps)
    keys = sorted(set(jobs[JOB].itertuples(index=False, name=None)) & set(times))
    rows = []
    for index, first in enumerate(keys):
        for second in keys[index + 1:]:
            if not took_turns(interleave, first, second):
                continue
            widths = {}
            for name, paired in (("apart", False), ("paired", True)):
                ratio, low, high = ratio_interval(times[first], times[second], np.random.default_rng(FINDINGS_SEED),
                                                  paired=paired)
                widths[name] = (high - low) / ratio
            rows.append({"first": first, "second": second, "width_apart": widths["apart"],
                         "width_paired": widths["paired"]})
    return pd.DataFrame(rows, columns=["first", "second", "width_apart", "width_paired"])


def pairing_markdown(run_dirs: list[Path]) -> str:
    """Per run whose jobs took turns: how many pairs, the median relative interval width resampled
    apart and paired, and the paired over the apart width (median and range over the pairs)."""
    rows = []
    for run_dir in run_dirs:
        env = read_env(run_dir)
        table = pairing_table(final_summary(run_dir), read_table(run_dir, "steps"), turns(env))
        if table.empty:
            continue
        shrink = table["width_paired"] / table["width_apart"]
        rows.append({"run": run_dir.name, "interleave": turns(env), "pairs": len(table),
                     "width_apart": table["width_apart"].median(), "width_paired": table["width_paired"].median(),
                     "paired_over_apart": shrink.median(), "lowest": shrink.min(), "highest": shrink.max()})
    if not rows:
        return "No jobs in these runs took turns.\n"
    return pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3g") + "\n"


def noise_markdown(run_dirs: list[Path]) -> str:
    tables = []
    for run_dir in run_dirs:
        read_env(run_dir)  # refuses a run of another schema
        table = noise_table(read_table(run_dir, "steps"), read_table(run_dir, "summary"))
        if len(table):
            tables.append(table.assign(run=run_dir.name))
    if not tables:
        return "No timed windows in these runs.\n"
    table = pd.concat(tables)
    columns = ["run", "job", "model", "batch_size", "processes", "process_ms", "spread", "window_cv", "windows",
               "steal_corr", "others_corr", "stolen", "process_p"]
    return table[columns].to_markdown(index=False, floatfmt=".3g") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m report.noise", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="run folders (each holds summary.csv)")
    parser.add_argument("--pairing", action="store_true",
                        help="instead: what pairing windows by round does to the width of the ranking's intervals, "
                             "per run whose jobs took turns")
    args = parser.parse_args(argv)
    for run_dir in args.runs:
        if not (run_dir / "summary.csv").is_file():
            parser.error(f"{run_dir} holds no summary.csv: not a run folder")
    try:
        print((pairing_markdown if args.pairing else noise_markdown)(args.runs), end="")
    except SchemaError as error:
        parser.error(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
