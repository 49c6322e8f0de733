"""`python -m report.compare OLD_RUN NEW_RUN [--out FILE]`: every job the two runs share (the same
`benchmarks.harness.results.JOB`: framework, variant, model, device, devices, nodes, precision, tuning
profile, batch size and input path) with its new/old ratios of step time, peak memory and accuracy, a
verdict on each, and the jobs only one run has.

Verdicts:
- step time: the ratio of the two median step times (the median of per-process medians) with its
  95% interval from the ranking's hierarchical bootstrap (`report.findings.ratio_interval`: a job's
  processes resampled, then each drawn process's timed windows). *slower* or *faster* only when the
  interval excludes 1 and the change exceeds STEP_THRESHOLD; else *unchanged*. *undecided* where
  either side has fewer than MIN_WINDOWS timed windows; *busy* where either side was measured on a
  busy machine (never slower or faster: its speed says more about the machine). Two runs never took
  turns, so their windows are independent and resampled apart, not paired by round.
- peak memory (device memory when both runs report it, else peak RSS): the ratio of the median of
  the per-process peaks, with its 95% interval from the same bootstrap over processes; *more* or
  *less* when the interval excludes 1 and the change exceeds MEMORY_THRESHOLD, else *unchanged*.
  With one process a side the interval is the ratio itself, and the threshold alone decides.
- accuracy: where both runs saved per-image predictions of the job (`predictions/`, on the same test
  images, of the same seed), McNemar's test on the images one run's model alone classified correctly at its last
  evaluation: *changed* below 5%. Otherwise *changed* when the two accuracies differ by more than the bound for
  two independent samples of the test set (`report.findings.accuracy_bound`), judged only when both runs
  evaluated the same number of test images (as recorded, else read off the accuracies). `accuracy_test` says
  which."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.harness.results import JOB, SETTING, measured
from report.findings import (
    CONFIDENCE,
    MIN_WINDOWS,
    SEED,
    accuracy_bound,
    ratio_interval,
    window_times,
)
from report.paired import ALPHA
from report.predictions import PairedAccuracy, all_predictions, image_count, paired_accuracy, seed_of
from report.source import SchemaError, final_summary, read_env, read_table
from report.tables import identified, process_of

# A smaller change of step time is not one to act on: separate processes of one job on a shared machine differ by
# as much (docs/noise.md), so two runs can differ by it without anything having changed.
STEP_THRESHOLD = 0.05
# Peak memory of one program moves between processes with allocator rounding and the order of imports; a change
# smaller than this sizes no machine differently.
MEMORY_THRESHOLD = 0.05


def first_processes(summary: pd.DataFrame) -> dict[tuple, tuple[int, str, int]]:
    """Per job (JOB values), the seed, job_id and attempt of its first process of its first seed: the one whose
    predictions stand for it."""
    jobs = identified(measured(summary)).assign(seed=seed_of(summary))
    first = jobs.sort_values(["seed", "repeat"]).drop_duplicates(JOB)
    return {tuple(row[JOB]): (int(row["seed"]), row["job_id"], int(row["attempt"])) for _, row in first.iterrows()}


def paired_change(key: tuple, old: dict, new: dict, predictions: tuple[dict, dict]) -> PairedAccuracy | None:
    """McNemar's test between a job's final evaluations in two runs, where both saved predictions of the same
    seed on the same images (`old`, `new`: `first_processes`); None where they did not."""
    if key not in old or key not in new or old[key][0] != new[key][0]:
        return None
    saved = [found.get(process[1:]) for found, process in zip(predictions, (old[key], new[key]))]
    if any(found is None for found in saved) or not np.array_equal(saved[0].labels, saved[1].labels):
        return None
    return paired_accuracy(saved[1], saved[0], int(saved[1].steps[-1]), int(saved[0].steps[-1]))


def job_table(summary: pd.DataFrame, memory: str = "peak_rss_mb") -> pd.DataFrame:
    """One row per job that measured steps (indexed by JOB), its processes merged: the median of their
    median step times, their count, each one's peak `memory` (a list), the median accuracy, and
    whether any was measured on a busy machine."""
    jobs = identified(measured(summary))
    grouped = jobs.assign(process=process_of(jobs)).groupby(JOB)
    return grouped.agg(step_ms_median=("step_ms_median", "median"), processes=("process", "nunique"),
                       memory_mb=(memory, lambda peaks: peaks.dropna().to_list()),
                       accuracy=("test_accuracy", "median"),
                       busy=("busy", lambda values: bool(values.astype(str).eq("True").any())))


def _windows(summary: pd.DataFrame, steps: pd.DataFrame) -> dict[tuple, list[np.ndarray]]:
    return window_times(identified(measured(summary)), steps)


def _verdict(ratio: float, low: float, high: float, threshold: float, words: tuple[str, str]) -> str:
    """words[0] (above 1) or words[1] when the interval excludes 1 and the change exceeds `threshold`."""
    if low <= 1 <= high or abs(ratio - 1) <= threshold:
        return "unchanged"
    return words[0] if ratio > 1 else words[1]


def compare(old: pd.DataFrame, new: pd.DataFrame, old_steps: pd.DataFrame, new_steps: pd.DataFrame,
            test_images: int | None = None, seed: int = SEED,
            predictions: tuple[dict, dict] | None = None) -> pd.DataFrame:
    """Jobs in both runs (summary and steps tables) with their new/old ratios, intervals and verdicts
    (the module docstring says how each is decided); `changed` names what moved: slower or faster,
    memory, accuracy, and busy where the speed was not judged. `test_images`: the images each run's evaluations
    scored, where both scored as many; `predictions`: each run's per-image predictions by job_id and attempt."""
    device = all(len(jobs) and jobs["peak_device_mb"].notna().all() for jobs in (measured(old), measured(new)))
    memory = "peak_device_mb" if device else "peak_rss_mb"
    both = job_table(old, memory).merge(job_table(new, memory), left_index=True, right_index=True,
                                        suffixes=("_old", "_new"))
    before, after = _windows(old, old_steps), _windows(new, new_steps)
    rng = np.random.default_rng(seed)
    ratio_name = "device_mb_ratio" if device else "rss_ratio"  # says which memory was compared
    firsts = (first_processes(old), first_processes(new))
    rows = []
    for key, job in both.iterrows():
        row = {"step_ms_median_old": job["step_ms_median_old"], "step_ms_median_new": job["step_ms_median_new"]}
        old_windows, new_windows = before.get(key, []), after.get(key, [])
        if min(sum(map(len, old_windows)), sum(map(len, new_windows))) < MIN_WINDOWS:
            ratio, low, high = job["step_ms_median_new"] / job["step_ms_median_old"], None, None
            step = "undecided"
        else:
            ratio, low, high = ratio_interval(new_windows, old_windows, rng)
            step = "busy" if job["busy_old"] or job["busy_new"] else \
                _verdict(ratio, low, high, STEP_THRESHOLD, ("slower", "faster"))
        row.update(step_ratio=ratio, step_low=low, step_high=high, step=step)
        peaks_old, peaks_new = job["memory_mb_old"], job["memory_mb_new"]
        if peaks_old and peaks_new:
            memory_ratio, memory_low, memory_high = ratio_interval(
                [np.array([peak]) for peak in peaks_new], [np.array([peak]) for peak in peaks_old], rng)
            row.update({ratio_name: memory_ratio, "memory_low": memory_low, "memory_high": memory_high,
                        "memory": _verdict(memory_ratio, memory_low, memory_high, MEMORY_THRESHOLD,
                                           ("more", "less"))})
        accuracy_old, accuracy_new = job["accuracy_old"], job["accuracy_new"]
        if pd.notna(accuracy_old) and pd.notna(accuracy_new):
            row["accuracy_ratio"] = accuracy_new / accuracy_old
            paired = paired_change(key, *firsts, predictions) if predictions else None
            if paired is not None:
                row["accuracy"] = "changed" if paired.p < ALPHA else "unchanged"
                row["accuracy_test"] = f"paired on {paired.images:,} images, McNemar p = {paired.p:.2g}"
            elif test_images:
                row["accuracy_test"] = f"independent-samples bound, {test_images:,} images"
                apart = abs(accuracy_new - accuracy_old) > accuracy_bound((accuracy_old + accuracy_new) / 2,
                                                                          test_images)
                row["accuracy"] = "changed" if apart else "unchanged"
        changed = [step] if step in ("slower", "faster", "busy") else []
        changed += ["memory"] * (row.get("memory") in ("more", "less"))
        changed += ["accuracy"] * (row.get("accuracy") == "changed")
        rows.append({**dict(zip(JOB, key)), **row, "changed": ", ".join(changed)})
    columns = [*JOB, "step_ms_median_old", "step_ms_median_new", "step_ratio", "step_low", "step_high", "step",
               ratio_name, "memory_low", "memory_high", "memory", "accuracy_ratio", "accuracy", "accuracy_test",
               "changed"]
    table = pd.DataFrame(rows, columns=columns)
    # a measure neither run has (e.g. accuracy of timing-only runs) is left out; the identity always stays
    return table.drop(columns=[column for column in columns[len(JOB):] if table[column].isna().all()])


def job_name(job: pd.Series) -> str:
    """A job in words: "pytorch:eager lenet cpu fp32 batch 128", and its profile, device count, nodes
    and input path where it has them."""
    name = f"{job['framework']}:{job['variant']} {job['model']} {job['device']} {job['precision']} batch " \
           f"{job['batch_size']}"
    name += f" {job['tuning']}" if job["tuning"] else ""
    name += f" x{job['devices']}" if job["devices"] > 1 else ""
    name += f" on {job['nodes']} nodes" if job["nodes"] > 1 else ""
    return name + (f" {job['input']} input" if job["input"] else "")


def only_in(old: pd.DataFrame, new: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Jobs (`job_name`) that only one run measured."""
    before, after = job_table(old).index, job_table(new).index

    def names(index: pd.MultiIndex) -> list[str]:
        return [job_name(pd.Series(dict(zip(JOB, key)))) for key in index]
    return names(before.difference(after)), names(after.difference(before))


def comparison_markdown(old_dir: Path, new_dir: Path) -> str:
    """Either run may be of an earlier schema (read through its migrations); raises
    `report.source.SchemaError` when either was written under a later one."""
    read_env(old_dir), read_env(new_dir)
    old, new = final_summary(old_dir), final_summary(new_dir)
    images = {image_count(read_table(run_dir, "epochs"), summary["test_accuracy"]).evaluated
              for run_dir, summary in ((old_dir, old), (new_dir, new))}
    table = compare(old, new, read_table(old_dir, "steps"), read_table(new_dir, "steps"),
                    images.pop() if len(images) == 1 else None,
                    predictions=(all_predictions(old_dir, old), all_predictions(new_dir, new)))
    table.insert(0, "job", table.pop("framework") + ":" + table.pop("variant"))
    # the setting's columns that hold one value in both runs say nothing about any row
    table = table.drop(columns=[column for column in SETTING if column not in ("model", "batch_size")
                                and table[column].nunique() == 1])
    gone, added = only_in(old, new)
    verdicts = table["step"].value_counts() if len(table) else pd.Series(dtype=int)
    counts = ", ".join(f"{verdict} {count}" for verdict, count in verdicts.items())
    lines = [f"# Run {new_dir.name} against {old_dir.name}", "",
             f"Ratios are new / old, with their {CONFIDENCE:.0%} bootstrap interval (`step_low`-`step_high`, "
             f"`memory_low`-`memory_high`). Step time is *slower* or *faster* only where its interval excludes 1 "
             f"and it moved by more than {STEP_THRESHOLD:.0%}, peak memory *more* or *less* likewise beyond "
             f"{MEMORY_THRESHOLD:.0%}; `python -m report.compare --help` states every rule. `changed` names what "
             f"moved.", "",
             f"Step time of {len(table)} jobs in both runs: {counts}." if len(table) else "No job ran in both.", ""]
    if len(table):
        lines += [table.to_markdown(index=False, floatfmt=".4g"), ""]
    lines += [f"Only in {old_dir.name}: {job}" for job in gone] + [f"Only in {new_dir.name}: {job}" for job in added]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m report.compare", description=__doc__,
                                     epilog=f"STEP_THRESHOLD: {STEP_THRESHOLD:.0%}; MEMORY_THRESHOLD: "
                                            f"{MEMORY_THRESHOLD:.0%}; MIN_WINDOWS: {MIN_WINDOWS}",
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
