"""The report's opening findings: plain sentences computed from a run's tables alone, namely the
fastest variant per model and batch size with every other variant's step-time ratio to it and its
bootstrap confidence interval, when compiling pays off, memory order, parity, accuracy agreement and
the time to a target accuracy (a time that rests on contention named, never ranked).

Step-time ratios are other / fastest (above 1: slower). Their interval is a hierarchical bootstrap:
each resample draws a variant's processes (repeats) with replacement, then each drawn process's
timed windows with replacement, and takes the median of the per-process medians, as the ranking
does. An interval that contains 1 means the two variants are tied within the measured noise."""

from __future__ import annotations

import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd

from benchmarks.checks.verdicts import failures
from benchmarks.harness.results import JOB, SETTING, measured
from report.migrate import PARITY, migrated_table, parity_file
from report.paired import ALPHA
from report.predictions import image_count, paired_accuracy, seed_of
from report.tables import identified, number, process_of, target_busy

RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 0  # fixed: the same tables always give the same intervals, so a re-rendered report is identical
Z = NormalDist().inv_cdf(1 - (1 - CONFIDENCE) / 2)  # two-sided normal quantile
MIN_WINDOWS = 5  # fewer timed windows on one side of a comparison: too few to resample, no interval
# SETTING columns that a table of one model and batch size per row names only where they differ
NAMED_WHEN_VARYING = ["device", "devices", "nodes", "precision", "input"]
ONE_PROCESS = ("one process each: the intervals cover window-to-window noise only, not process-to-process "
               "variation; rerun with --repeats 3")


# --- Tables -------------------------------------------------------------------------------------


def timed_jobs(summary: pd.DataFrame) -> pd.DataFrame:
    """Jobs that measured steps on a quiet machine, labelled framework:variant."""
    jobs = measured(summary)
    jobs = jobs[~jobs["busy"].astype(str).eq("True")]  # a busy machine's speed is not compared
    return _labelled(jobs)


def _labelled(jobs: pd.DataFrame) -> pd.DataFrame:
    """`jobs` with their identity in comparable form (`tables.identified`), labelled framework:variant: within
    one SETTING the label names the job."""
    jobs = identified(jobs)
    return jobs.assign(label=jobs["framework"] + ":" + jobs["variant"])


def window_times(jobs: pd.DataFrame, steps: pd.DataFrame) -> dict[tuple, list[np.ndarray]]:
    """Per job (its JOB values, `job_key`): one array of window step times (ms) per process, in the
    order the windows were timed (the k-th window of every process that took turns ran in round k)."""
    windows = steps[["job_id", "attempt", "window", "step_ms"]].merge(
        jobs[["job_id", "attempt", *JOB]].assign(process=process_of(jobs)), on=["job_id", "attempt"])
    windows = windows.sort_values("window", kind="stable")
    return {key: [group["step_ms"].to_numpy(float) for _, group in rows.groupby("process")]
            for key, rows in windows.groupby(JOB, dropna=False)}


def job_key(setting: tuple, framework: str, variant: str) -> tuple:
    """A job's key in `window_times`: its framework and variant within a SETTING."""
    values = {**dict(zip(SETTING, setting)), "framework": framework, "variant": variant}
    return tuple(values[column] for column in JOB)


def turns(env: dict) -> str | None:
    """Which of a run's processes took turns, as `took_turns` takes it: env.json's `interleave`; None for
    runs merged into one folder (their jobs never ran at once)."""
    return None if "merged" in env else env.get("interleave")


def took_turns(interleave: str | None, first: tuple, second: tuple) -> bool:
    """Whether two jobs of one run had their processes run at once, taking turns one timed window each
    (`benchmarks.run.turn_groups`), so that their windows pair by round. `interleave`: the run's
    (env.json's); None for runs merged into one folder, or two runs. With "jobs", every job of one
    setting but a data-parallel or native-input one; with "repeats", the profiles of one job. `first`,
    `second`: `job_key`s."""
    if interleave is None:
        return False
    first, second = dict(zip(JOB, first)), dict(zip(JOB, second))
    apart = ["tuning"]
    if interleave == "jobs" and int(first["devices"]) == 1 and first["input"] != "native":
        apart += ["framework", "variant"]
    return all(first[column] == second[column] for column in JOB if column not in apart)


# Where a run keeps its parity table: as the runner writes it, or xz-compressed (a committed run whose
# table runs to tens of MB, e.g. every variant under both profiles compared pairwise).
def read_parity(run_dir: Path) -> pd.DataFrame | None:
    """parity.csv as the report's Parity section reads it, at the current schema (`report.migrate`); None when
    the run did not check parity."""
    path = parity_file(run_dir)
    if path is None:
        return None
    table = pd.read_csv(path, keep_default_na=False, na_values={"step": [""], "error": [""], "devices": [""]})
    # A parity table beside no env.json (`benchmarks.parity --csv`, the device check's parity steps) records no
    # schema: it is read as written, in today's layout.
    if (run_dir / "env.json").is_file():
        table = migrated_table(run_dir, PARITY, table)
    devices = table["devices"].fillna(1) if "devices" in table else 1  # named by the data-parallel check only
    return table.assign(devices=devices).astype({"step": "Int64", "devices": int})


# --- Statistics ---------------------------------------------------------------------------------


def resampled_medians(processes: list[np.ndarray], rng: np.random.Generator, resamples: int,
                      rounds: np.ndarray | None = None) -> np.ndarray:
    """Bootstrap replicates of the median of per-process median window times: processes drawn with
    replacement, then each drawn process's windows with replacement; with `rounds` (per replicate and
    slot of a drawn process, the window indices to take), the windows of those rounds instead."""
    count = len(processes)
    drawn = rng.integers(count, size=(resamples, count))
    medians = np.empty((resamples, count))
    for index, windows in enumerate(processes):
        # Every slot gets its own window resample, so a process drawn twice is resampled twice.
        picks = rng.integers(len(windows), size=(resamples, count, len(windows))) if rounds is None else \
            rounds[:, :count]
        medians = np.where(drawn == index, np.median(windows[picks], axis=2), medians)
    return np.median(medians, axis=1)


def ratio_interval(processes: list[np.ndarray], baseline: list[np.ndarray], rng: np.random.Generator,
                   resamples: int = RESAMPLES, paired: bool = False) -> tuple[float, float, float]:
    """Step-time ratio processes / baseline (median of per-process medians) and its bootstrap
    interval at CONFIDENCE. `paired`: the two sides' processes took turns (`took_turns`), so the k-th
    drawn process of either side takes the same rounds (the same window numbers, of the first as many
    as the shortest process has) in each replicate, and a slow spell of the machine falls on both
    sides of the ratio at once; each slot draws its own rounds, as each draws its own windows unpaired."""
    ratio = np.median([np.median(w) for w in processes]) / np.median([np.median(w) for w in baseline])
    rounds = None
    if paired:
        count = min(len(windows) for windows in [*processes, *baseline])
        processes, baseline = [w[:count] for w in processes], [w[:count] for w in baseline]
        rounds = rng.integers(count, size=(resamples, max(len(processes), len(baseline)), count))
    replicates = (resampled_medians(processes, rng, resamples, rounds)
                  / resampled_medians(baseline, rng, resamples, rounds))
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(replicates, [tail, 1 - tail])
    return float(ratio), float(low), float(high)


def break_even_steps(compile_s: float, step_ms: float, eager_compile_s: float, eager_step_ms: float) -> int | None:
    """The fewest steps n after the first for which compile_s + n * step beats eager's
    eager_compile_s + n * eager_step; None when the step is not faster (it never pays off)."""
    saved_ms = eager_step_ms - step_ms
    if saved_ms <= 0:
        return None
    extra_ms = (compile_s - eager_compile_s) * 1000
    return 0 if extra_ms < 0 else math.floor(extra_ms / saved_ms) + 1


def accuracy_bound(accuracy, test_images: int):
    """Half-width of the CONFIDENCE interval of the difference of two accuracies of `accuracy` measured
    on `test_images` images each (binomial sampling error)."""
    return Z * np.sqrt(2 * accuracy * (1 - accuracy) / test_images)


# --- Sentences ----------------------------------------------------------------------------------


def varying(table: pd.DataFrame) -> set[str]:
    """The SETTING columns in which `table`'s jobs differ: what a group's name must say."""
    table = identified(table)
    return {column for column in SETTING if table[column].nunique() > 1}


def group_name(key: tuple, varies: set[str]) -> str:
    """A SETTING's name, e.g. "lenet, batch 128 per device on 2 devices on cuda, tuned"; of the rest
    of its columns only those in `varies` (`varying`) are named."""
    where = dict(zip(SETTING, key))
    devices = int(where["devices"])
    name = f"{where['model']}, batch {where['batch_size']}"
    name += f" per device on {devices} devices" if devices > 1 else ""
    name += f" on {int(where['nodes'])} nodes" if "nodes" in varies else ""
    name += f" on {where['device']}" if "device" in varies else ""
    name += f", {where['precision']}" if "precision" in varies else ""
    name += f", {where['input']} input" if "input" in varies else ""
    return name + (f", {where['tuning']}" if "tuning" in varies else "")


def process_note(compared: pd.DataFrame) -> str:
    """How many processes the intervals of `comparisons` rest on, as a sentence of its own."""
    if compared.empty:
        return ""
    single = compared[compared["processes"] == 1]
    if len(single) == len(compared):
        return ONE_PROCESS[0].upper() + ONE_PROCESS[1:] + "."
    if len(single):
        rows = ", ".join(f"{row.label} ({row.model}, batch {row.batch_size})" for row in single.itertuples())
        return (f"In one process: {rows}; intervals involving them cover window-to-window noise only; rerun with "
                f"--repeats 3.")
    note = _process_note(compared.set_index("label")["processes"])
    return note[0].upper() + note[1:] + "."


def _process_note(processes: pd.Series) -> str:
    """How many processes the intervals rest on; `processes` maps label to its count."""
    if processes.max() == 1:
        return ONE_PROCESS
    single = processes.index[processes == 1].tolist()
    if single:
        return (f"{', '.join(single)} in one process: intervals involving them cover window-to-window noise only; "
                f"rerun with --repeats 3")
    counts = f"{processes.min()}" if processes.min() == processes.max() else f"{processes.min()}-{processes.max()}"
    return f"{counts} processes each, resampled with their windows: the intervals cover process-to-process variation"


def _side_windows(processes: list[np.ndarray] | None) -> int:
    return sum(len(windows) for windows in processes) if processes else 0


def comparisons(summary: pd.DataFrame, steps: pd.DataFrame, seed: int = SEED,
                interleave: str | None = None) -> pd.DataFrame:
    """Per SETTING (model, batch size, device, device count, tuning profile...), every variant
    measured on a quiet machine, fastest first: its median step time and images/s, its step-time
    `ratio` to the fastest variant (>= 1) with the bootstrap interval `ratio_low`-`ratio_high`, and
    its `verdict`: fastest, tied (the interval covers 1), slower, or undecided where either side has
    fewer than MIN_WINDOWS timed windows to resample (no interval, and no claim either way); `windows`:
    the row's timed windows over all its processes. `interleave`: the run's (env.json's), whose jobs
    that took turns have their windows paired by round (`took_turns`)."""
    jobs = timed_jobs(summary)
    if "input" in jobs and jobs["input"].ne("native").any():
        jobs = jobs[jobs["input"].ne("native")]  # end-to-end times of a framework's own pipeline: a section apart
    times = window_times(jobs, steps)
    rng = np.random.default_rng(seed)
    rows = []
    for key, group in jobs.assign(process=process_of(jobs)).groupby(SETTING):
        per_label = group.groupby("label").agg(framework=("framework", "first"), variant=("variant", "first"),
                                               step_ms_median=("step_ms_median", "median"),
                                               processes=("process", "nunique"))
        per_label = per_label.sort_values("step_ms_median", kind="stable")
        fastest = per_label.index[0]
        fastest_key = job_key(key, *per_label.loc[fastest, ["framework", "variant"]])
        for label, row in per_label.iterrows():
            own_key = job_key(key, row["framework"], row["variant"])
            processes, baseline = times.get(own_key), times.get(fastest_key)
            ratio, low, high = row["step_ms_median"] / per_label["step_ms_median"].iloc[0], None, None
            if label == fastest:
                verdict = "fastest"
            elif min(_side_windows(processes), _side_windows(baseline)) < MIN_WINDOWS:
                verdict = "undecided"  # steps.csv lost or not written, or too few windows to resample
            else:
                _, low, high = ratio_interval(processes, baseline, rng,
                                              paired=took_turns(interleave, own_key, fastest_key))
                verdict = "tied" if low <= 1 <= high else "slower"
            setting = dict(zip(SETTING, key))
            rows.append({**setting, "label": label, "framework": row["framework"],
                         "variant": row["variant"], "step_ms_median": row["step_ms_median"],
                         "images_per_s": setting["devices"] * setting["batch_size"] / row["step_ms_median"] * 1000,
                         "ratio": ratio,
                         "ratio_low": low, "ratio_high": high, "verdict": verdict, "processes": row["processes"],
                         "windows": _side_windows(processes)})
    columns = [*SETTING, "label", "framework", "variant", "step_ms_median", "images_per_s", "ratio", "ratio_low",
               "ratio_high", "verdict", "processes", "windows"]
    return pd.DataFrame(rows, columns=columns).astype({"ratio_low": float, "ratio_high": float})


def best_per_framework(compared: pd.DataFrame) -> pd.DataFrame:
    """Of `comparisons`, each framework's fastest variant per model and batch size: what a user of
    that framework would run, and its ratio to the fastest framework (whose best variant is the
    group's fastest, so the ratio and interval are those of `comparisons`)."""
    return compared.drop_duplicates([*SETTING, "framework"], keep="first").reset_index(drop=True)


def _ratio_text(row: pd.Series, fastest: pd.Series) -> str:
    """A compared row's ratio in words: "1.16x (1.08-1.37)", "1.02x (0.97-1.08, tied)", or where
    there is no interval, why: "1.01x (undecided: 1 timed window, too few for an interval)"."""
    if row["verdict"] != "undecided":
        tied = ", tied" if row["verdict"] == "tied" else ""
        return f"{row['ratio']:.2f}x ({row['ratio_low']:.2f}-{row['ratio_high']:.2f}{tied})"
    windows = int(min(row["windows"], fastest["windows"]))  # a NumPy integer: "s" * (windows > 1) would fail
    if windows == 0:
        return f"{row['ratio']:.2f}x (no timed windows to resample)"
    plural = "s" if windows > 1 else ""
    return f"{row['ratio']:.2f}x (undecided: {windows} timed window{plural}, too few for an interval)"


def speed_findings(summary: pd.DataFrame, steps: pd.DataFrame, seed: int = SEED,
                   interleave: str | None = None) -> list[str]:
    """Per SETTING: the fastest variant, and each other's step-time ratio to it."""
    compared = comparisons(summary, steps, seed, interleave)
    varies = varying(summary)
    sentences = []
    for key, group in compared.groupby(SETTING, sort=False):
        fastest = group.iloc[0]
        lead = (f"{group_name(key, varies)}: **{fastest['label']}** is fastest "
                f"({fastest['images_per_s']:,.0f} images/s)")
        if len(group) == 1:
            sentences.append(lead + ", the only variant measured.")
            continue
        items = [f"{row['label']} {_ratio_text(row, fastest)}" for _, row in group.iloc[1:].iterrows()]
        note = _process_note(group.set_index("label")["processes"])
        sentences.append(f"{lead}; step time of the others relative to it, with {CONFIDENCE:.0%} bootstrap "
                         f"intervals: {'; '.join(items)} ({note}).")
    return sentences


def tuning_gains(summary: pd.DataFrame, steps: pd.DataFrame, seed: int = SEED,
                 interleave: str | None = None) -> pd.DataFrame:
    """Per job (JOB less its tuning) measured under both profiles: the gain from tuning, stock step
    time over tuned (above 1: the tuned profile is faster), with its bootstrap interval, paired by
    round where the two sides took turns (`took_turns`; `interleave`: the run's); `busy` where either
    side was measured on a busy machine (compared all the same: the two sides took turns, so a busy
    spell fell on both); `tuned settings`: what the tuned side's workers found in effect, so a gain
    reads as the effect of those settings. The columns of NAMED_WHEN_VARYING are for a reader to drop
    where they hold one value."""
    jobs = _labelled(measured(summary))
    times = window_times(jobs, steps)
    rng = np.random.default_rng(seed)
    rows = []
    profile = JOB.index("tuning")
    for key, group in jobs.groupby([column for column in JOB if column != "tuning"]):
        sides = {name: (*key[:profile], name, *key[profile:]) for name in ("stock", "tuned")}
        if not all(side in times for side in sides.values()):
            continue
        gain, low, high = ratio_interval(times[sides["stock"]], times[sides["tuned"]], rng,
                                         paired=took_turns(interleave, sides["stock"], sides["tuned"]))
        step_ms = group.groupby("tuning")["step_ms_median"].median()
        where = dict(zip(JOB, sides["stock"]))
        rows.append({"job": group["label"].iloc[0], "device": where["device"], "model": where["model"],
                     "devices": where["devices"], "batch_size": where["batch_size"], "nodes": where["nodes"],
                     "precision": where["precision"], "input": where["input"],
                     "stock_ms": step_ms["stock"], "tuned_ms": step_ms["tuned"], "gain": gain,
                     "gain_low": low, "gain_high": high,
                     "verdict": "tied" if low <= 1 <= high else "tuned faster" if low > 1 else "stock faster",
                     "busy": "busy" if group["busy"].astype(str).eq("True").any() else "",
                     "tuned settings": "; ".join(group.loc[group["tuning"] == "tuned", "settings"].fillna("")
                                                 .unique())})
    return pd.DataFrame(rows)


def compile_findings(summary: pd.DataFrame) -> list[str]:
    """Per model and batch size: after how many steps each variant's compilation pays off against
    the same framework's eager variant (frameworks without one are not weighed)."""
    jobs = timed_jobs(summary).dropna(subset=["compile_s"])
    varies = varying(summary)
    merged = jobs.groupby([*SETTING, "framework", "variant"]).agg(step_ms=("step_ms_median", "median"),
                                                                compile_s=("compile_s", "median"))
    sentences = []
    for key, group in merged.groupby(level=SETTING):
        items = []
        for framework, rows in group.groupby(level="framework"):
            rows = rows.droplevel([*SETTING, "framework"])
            if "eager" not in rows.index:
                continue
            eager = rows.loc["eager"]
            for variant, row in rows.drop("eager").iterrows():
                steps = break_even_steps(row["compile_s"], row["step_ms"], eager["compile_s"], eager["step_ms"])
                if steps is None:
                    items.append(f"{framework}:{variant} never pays off against {framework}:eager: its step "
                                 f"({number(row['step_ms'])} ms) is not faster than eager's "
                                 f"({number(eager['step_ms'])} ms)")
                else:
                    unit = "step" if steps == 1 else "steps"
                    items.append(f"{framework}:{variant} pays off against {framework}:eager after {steps:,} {unit} "
                                 f"(compiles in {number(row['compile_s'])} s against "
                                 f"{number(eager['compile_s'])} s, then "
                                 f"saves {number(eager['step_ms'] - row['step_ms'])} ms a step)")
        if items:
            sentences.append(f"Compilation, {group_name(key, varies)}: {'; '.join(items)}.")
    if sentences:
        sentences[0] = ("Compile time pays off after n steps beyond the first when compile_s + n x step time "
                        "falls below the eager variant's (`compile_s` is the first step, compilation included). "
                        + sentences[0])
    return sentences


def memory_findings(summary: pd.DataFrame) -> list[str]:
    """Per model and batch size: variants from the least to the most peak memory (device memory
    when every variant reports it, else the process's peak RSS)."""
    jobs = summary[summary["status"].isin(["ok", "diverged"])]
    jobs = _labelled(jobs)
    varies = varying(summary)
    sentences = []
    for key, group in jobs.groupby(SETTING):
        device = group["peak_device_mb"].notna().all()
        column, name = ("peak_device_mb", "peak device memory") if device else ("peak_rss_mb", "peak RSS")
        peaks = group.groupby("label")[column].max().dropna().sort_values(kind="stable")
        if len(peaks) > 1:
            order = ", ".join(f"{label} {mb:,.0f}" for label, mb in peaks.items())
            sentences.append(f"Memory, {group_name(key, varies)}, {name} in MiB from least "
                             f"to most: {order}.")
    return sentences


def parity_passed(table: pd.DataFrame) -> bool:
    """The verdict of the report's Parity section for one run's parity.csv."""
    return not failures(table)


def parity_finding(tables: dict[str, pd.DataFrame | None]) -> str:
    """One sentence on every run's parity verdict; `tables` maps run id to its parity table."""
    verdicts = {run: "not checked" if table is None else "passed" if parity_passed(table) else "**FAILED**"
                for run, table in tables.items()}
    if len(verdicts) == 1:
        (verdict,) = verdicts.values()
    else:
        verdict = "; ".join(f"{verdict} in run {run}" for run, verdict in verdicts.items())
    failed = " Speed comparisons of the failing variants may compare different computations." \
        if "**FAILED**" in verdict else ""
    return f"Parity {verdict} (see Parity below).{failed}"


def accuracy_findings(summary: pd.DataFrame, epochs: pd.DataFrame, predictions: dict | None = None) -> list[str]:
    """Per model and batch size of a run that trained: whether the lowest and highest final test accuracy
    agree. Where both saved per-image predictions (`predictions`, by job_id and attempt) for a seed they share,
    McNemar's test on the images one of them alone classified correctly; else the bound for two independent
    samples of the run's test-set size (recorded, or read off the accuracies where the run did not record it)."""
    tests = {run: image_count(epochs[epochs["run_id"] == run] if "run_id" in epochs else epochs, rows["test_accuracy"])
             for run, rows in summary.groupby("run_id")}
    jobs = summary[summary["status"].eq("ok") & summary["test_accuracy"].notna()]
    jobs = _labelled(jobs).assign(seed=seed_of(jobs))
    varies = varying(summary)
    sentences = []
    for key, group in jobs.groupby(SETTING):
        accuracy = group.groupby("label")["test_accuracy"].median().sort_values(kind="stable")
        if len(accuracy) < 2:
            continue
        runs = group["run_id"].unique()
        tested = tests.get(runs[0]) if len(runs) == 1 else None
        what, step = "Final test accuracy", None
        evaluated = epochs[epochs["job_id"].isin(group["job_id"])] if {"job_id", "step"} <= set(epochs) else None
        if evaluated is not None and len(evaluated) and evaluated.groupby("job_id")["step"].max().nunique() > 1:
            # Jobs that stopped at a target stopped at different steps: compare them where all were evaluated.
            common = set.intersection(*(set(steps) for _, steps in evaluated.groupby("job_id")["step"]))
            if not common or evaluated["job_id"].nunique() < group["job_id"].nunique():
                continue
            step = max(common)
            at_step = evaluated[evaluated["step"] == step].merge(group[["job_id", "label"]], on="job_id")
            accuracy = at_step.groupby("label")["test_accuracy"].median().sort_values(kind="stable")
            what = (f"Test accuracy at step {step:,.0f}, the last evaluation of every job (they stopped at "
                    f"different steps)")
        spread = accuracy.iloc[-1] - accuracy.iloc[0]
        text = (f"{what}, {group_name(key, varies)}: from {accuracy.iloc[0]:.2%} "
                f"({accuracy.index[0]}) to {accuracy.iloc[-1]:.2%} ({accuracy.index[-1]}), "
                f"{spread * 100:.2f} points apart")
        paired = _paired_extremes(group, accuracy.index[0], accuracy.index[-1], step, predictions or {})
        if paired is not None:
            seed, result = paired
            agree = "they agree" if result.p >= ALPHA else "**they differ**"
            text += (f"; paired on the same {result.images:,} test images (seed {seed}): {result.only_first:,} right "
                     f"by {accuracy.index[0]} alone, {result.only_second:,} by {accuracy.index[-1]} alone, McNemar "
                     f"p = {result.p:.2g}: {agree} at {ALPHA:.0%}")
        elif tested is not None and tested.evaluated:
            bound = accuracy_bound(accuracy.mean(), tested.evaluated)
            agree = "they agree within" if spread <= bound else "**more than**"
            inferred = "" if tested.recorded else ", their number inferred from the accuracies' denominators"
            text += (f"; {agree} the {bound * 100:.2f} points that sampling {tested.evaluated:,} test images "
                     f"allows at {CONFIDENCE:.0%} (the bound for two independent samples{inferred})")
        sentences.append(text + ".")
    return sentences


def _paired_extremes(group: pd.DataFrame, low: str, high: str, step, predictions: dict):
    """(seed, PairedAccuracy) of the two labels on the first seed they share where both saved predictions, at
    `step` or else at each one's last evaluation; None where they did not."""
    first = group.sort_values("repeat").drop_duplicates(["label", "seed"]).set_index(["label", "seed"])
    for seed in sorted(set(first.loc[low].index) & set(first.loc[high].index)):
        saved = [predictions.get((first.loc[(label, seed), "job_id"], int(first.loc[(label, seed), "attempt"])))
                 for label in (low, high)]
        if all(found is not None for found in saved):
            steps = [step if step is not None else int(found.steps[-1]) for found in saved]
            return seed, paired_accuracy(saved[0], saved[1], *steps)
    return None


def target_findings(summary: pd.DataFrame) -> list[str]:
    """Per model and batch size of a time-to-accuracy run: the fastest clean job to the target,
    and every time that rests on contention named as not ranked (a sum has no median to shield it)."""
    if "target_reached" not in summary:  # a table of timing-only columns
        return []
    jobs = summary[summary["status"].eq("ok") & summary["target_reached"].astype(str).eq("True")]
    jobs = _labelled(jobs).assign(busy=target_busy(jobs))
    varies = varying(summary)
    sentences = []
    for key, group in jobs.groupby(SETTING):
        target = group["target_accuracy"].iloc[0]
        times = group.groupby("label")["train_s_to_target"].median().sort_values(kind="stable")
        busy = group[group["busy"]].groupby("label")["train_busy_share_to_target"].max()
        clean = times.drop(busy.index)
        text = f"Time to {target:.1%} test accuracy, {group_name(key, varies)}: "
        if len(clean):
            text += f"fastest on a quiet machine {clean.index[0]} ({clean.iloc[0]:.1f} s of training)"
            text += "".join(f", {name} {seconds:.1f} s" for name, seconds in clean.iloc[1:].items())
        else:
            text += "no time measured on a quiet machine"
        if len(busy):
            text += ("; **not ranked, measured on a busy machine**: " + ", ".join(
                f"{name} ({times[name]:.1f} s, {share:.0%} of it in busy windows)" for name, share in busy.items()))
        seeds = seed_of(group).nunique()
        if seeds > 1:
            text += (f" (medians over the processes of {seeds} seeds; their ranking with intervals over seeds, and "
                     f"the seeds that missed the target, under *Time to {target:.1%} across seeds*)")
        sentences.append(text + ".")
    return sentences


def findings(summary: pd.DataFrame, steps: pd.DataFrame, epochs: pd.DataFrame,
             parity: dict[str, pd.DataFrame | None], interleave: str | None = None,
             predictions: dict | None = None) -> list[str]:
    """Every finding, in the order the report lists them (`interleave`: the run's, as `comparisons` takes it;
    `predictions`: the run's per-image predictions by job_id and attempt, for `accuracy_findings`)."""
    return [*speed_findings(summary, steps, interleave=interleave), *compile_findings(summary),
            *memory_findings(summary), parity_finding(parity), *accuracy_findings(summary, epochs, predictions),
            *target_findings(summary)]


def findings_section(summary: pd.DataFrame, steps: pd.DataFrame, epochs: pd.DataFrame,
                     parity: dict[str, pd.DataFrame | None], interleave: str | None = None,
                     predictions: dict | None = None) -> str:
    lines = "\n".join(f"- {sentence}" for sentence in findings(summary, steps, epochs, parity, interleave,
                                                                predictions))
    return f"## Findings\n\n{lines}\n"
