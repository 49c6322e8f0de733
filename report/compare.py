"""`python -m report.compare OLD_RUN NEW_RUN [--out FILE]`: every job the two runs share (same
framework, variant, model, device, precision and batch size) with its new/old ratios of step time,
peak memory and accuracy, the changes larger than the measured spread flagged, and the jobs only
one run has.

What counts as a change:
- step time: a job's relative spread s is (max - min) / median of its per-process median step
  times when it ran in several processes (repeats), else the IQR / median of its timed windows.
  The new/old ratio r is flagged when |r - 1| > s_old + s_new. Rows measured on a busy machine
  are never flagged: their speed says more about the machine.
- peak memory (device memory when both runs report it, else peak RSS): flagged when
  |r - 1| exceeds the sum of the two runs' (max - min) / median over their processes, and at
  least MEMORY_FLOOR, since a single process gives no spread to go by.
- accuracy: flagged when the two accuracies differ by more than the sampling error of two
  accuracies on the test set (`report.findings.accuracy_bound`), when both runs evaluated on
  the same number of test images (`report.findings.evaluated_images`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from benchmarks.harness.results import measured
from report.findings import accuracy_bound, evaluated_images
from report.source import SchemaError, final_summary, read_env, read_table

KEYS = ["framework", "variant", "model", "device", "precision", "batch_size"]
MEMORY_FLOOR = 0.05  # relative change of peak memory below which a single-process job is not flagged


def _range(values: pd.Series) -> float:
    """(max - min) / median over a job's processes; 0 for one process."""
    return (values.max() - values.min()) / values.median() if len(values) > 1 else 0.0


def job_table(summary: pd.DataFrame, memory: str = "peak_rss_mb") -> pd.DataFrame:
    """One row per job that measured steps, its processes merged, indexed by KEYS, with the
    relative spreads of its step time and of its `memory` column."""
    jobs = measured(summary)
    grouped = jobs.groupby(KEYS)
    table = grouped.agg(step_ms_median=("step_ms_median", "median"), step_ms_iqr=("step_ms_iqr", "median"),
                        processes=("repeat", "nunique"), memory_mb=(memory, "max"),
                        accuracy=("test_accuracy", "median"))
    table["step_spread"] = grouped["step_ms_median"].agg(_range)
    single = table["processes"] == 1
    table.loc[single, "step_spread"] = table.loc[single, "step_ms_iqr"] / table.loc[single, "step_ms_median"]
    table["memory_spread"] = grouped[memory].agg(_range)
    busy = jobs["busy"].astype(str).eq("True")
    table["busy"] = busy.groupby([jobs[key] for key in KEYS]).any()
    return table


def compare(old: pd.DataFrame, new: pd.DataFrame, test_images: int | None = None) -> pd.DataFrame:
    """Jobs in both runs (summary tables) with new/old ratios and what changed beyond the spread."""
    device = all(len(jobs) and jobs["peak_device_mb"].notna().all() for jobs in (measured(old), measured(new)))
    memory = "peak_device_mb" if device else "peak_rss_mb"
    before, after = job_table(old, memory), job_table(new, memory)
    both = before.merge(after, left_index=True, right_index=True, suffixes=("_old", "_new"))
    table = pd.DataFrame(index=both.index)
    table["step_ms_median_old"] = both["step_ms_median_old"]
    table["step_ms_median_new"] = both["step_ms_median_new"]
    table["step_ratio"] = both["step_ms_median_new"] / both["step_ms_median_old"]
    table["allowed"] = both["step_spread_old"] + both["step_spread_new"]
    ratio = "device_mb_ratio" if device else "rss_ratio"  # says which memory was compared
    table[ratio] = both["memory_mb_new"] / both["memory_mb_old"]
    table["accuracy_ratio"] = both["accuracy_new"] / both["accuracy_old"]
    memory_allowed = (both["memory_spread_old"] + both["memory_spread_new"]).clip(lower=MEMORY_FLOOR)
    busy = both["busy_old"] | both["busy_new"]
    changes = pd.DataFrame({
        "slower": ~busy & (table["step_ratio"] - 1 > table["allowed"]),
        "faster": ~busy & (1 - table["step_ratio"] > table["allowed"]),
        "memory": (table[ratio] - 1).abs() > memory_allowed,
        "accuracy": ((both["accuracy_new"] - both["accuracy_old"]).abs()
                     > accuracy_bound(both[["accuracy_old", "accuracy_new"]].mean(axis=1), test_images))
        if test_images else False,
        "busy": busy,
    })
    table["changed"] = changes.apply(lambda row: ", ".join(name for name, flag in row.items() if flag), axis=1)
    return table.dropna(axis="columns", how="all").reset_index()  # e.g. accuracy of timing-only runs


def only_in(old: pd.DataFrame, new: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Jobs (as framework:variant model device precision batch) that only one run measured."""
    before, after = job_table(old).index, job_table(new).index

    def names(index: pd.MultiIndex) -> list[str]:
        return [f"{f}:{v} {m} {d} {p} batch {b}" for f, v, m, d, p, b in index]
    return names(before.difference(after)), names(after.difference(before))


def comparison_markdown(old_dir: Path, new_dir: Path) -> str:
    """Either run may be of an earlier schema (read through its migrations); raises
    `report.source.SchemaError` when either was written under a later one."""
    read_env(old_dir), read_env(new_dir)
    old, new = final_summary(old_dir), final_summary(new_dir)
    images = {evaluated_images(pd.concat([read_table(run_dir, "epochs")["test_accuracy"], summary["test_accuracy"]]))
              for run_dir, summary in ((old_dir, old), (new_dir, new))}
    table = compare(old, new, images.pop() if len(images) == 1 else None)
    table.insert(0, "job", table.pop("framework") + ":" + table.pop("variant"))
    gone, added = only_in(old, new)
    lines = [f"# Run {new_dir.name} against {old_dir.name}", "",
             "Ratios are new / old. `allowed`: the step-time change within the two runs' measured spread "
             "(`python -m report.compare --help` defines it); `changed` names what moved beyond it.", "",
             table.to_markdown(index=False, floatfmt=".4g") if len(table) else "No job ran in both.", ""]
    lines += [f"Only in {old_dir.name}: {job}" for job in gone] + [f"Only in {new_dir.name}: {job}" for job in added]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m report.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old_run", type=Path)
    parser.add_argument("new_run", type=Path)
    parser.add_argument("--out", type=Path, help="write the Markdown here instead of printing it")
    args = parser.parse_args(argv)
    for run_dir in (args.old_run, args.new_run):
        if not (run_dir / "summary.csv").is_file():
            parser.error(f"{run_dir} holds no summary.csv: not a run folder")
    try:
        text = comparison_markdown(args.old_run, args.new_run)
    except SchemaError as error:
        parser.error(str(error))
    if args.out:
        args.out.write_text(text)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
