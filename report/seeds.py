"""Time to accuracy across seeds, and whether the frameworks converge alike: per framework:variant the median
training time, steps and epochs to the target over seeds with bootstrap intervals (a seed that missed the target
kept, censored at its last evaluation), ranked with ties where the intervals say so; and per framework one verdict
from tests of its accuracy (paired on seeds, or on the same test images) and its steps to target against every
other framework's. docs/method.md states each test and what it can detect."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd

from benchmarks.harness.results import SETTING
from report.charts import accuracy_time_chart
from report.findings import CONFIDENCE, SEED, group_name
from report.paired import (
    ALPHA,
    POWER,
    gehan_permutation,
    holm,
    mcnemar_detectable,
    paired_t,
    smallest_permutation_p,
)
from report.predictions import ImageCount, PairedAccuracy, Predictions, image_count, paired_accuracy, seed_of
from report.tables import identified, markdown, published, target_busy

RESAMPLES = 2000
MIN_SEEDS = 3  # fewer seeds on a side: no bootstrap interval (a resample of two seeds has three outcomes)
MEASURES = ("train_s", "steps", "epochs")  # per seed, to the target (or to the last evaluation, censored)
LABEL = [*SETTING, "label", "framework", "variant"]
CSV = ["time_to_target_seeds.csv", "convergence.csv", "convergence_pairs.csv", "mcnemar.csv"]  # what the section writes


# --- Per process and per seed -----------------------------------------------------------------------------------


def processes(summary: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """One row per process of a time-to-accuracy run that trained to its end (ok; or diverged, which missed the
    target): its identity, label, seed and repeat, whether it `reached` the target, and its training seconds
    (compilation included, evaluation excluded: the time the time-to-target table ranks by), steps and epochs to
    it, or through its last evaluation where it missed it (censored there); `busy`: that time rests on contention."""
    jobs = summary[summary["target_accuracy"].notna() & summary["status"].isin(["ok", "diverged"])]
    if jobs.empty:
        return pd.DataFrame(columns=[*LABEL, "job_id", "attempt", "seed", "repeat", "reached", "busy", *MEASURES])
    reached = jobs["target_reached"].astype(str).eq("True")
    jobs = identified(jobs).assign(label=jobs["framework"] + ":" + jobs["variant"], seed=seed_of(jobs),
                                   reached=reached, busy=target_busy(jobs) & reached)
    trained = epochs.groupby(["job_id", "attempt"]).agg(last_step=("step", "max"), last_epoch=("epoch", "max"),
                                                        trained_s=("train_s", "sum"))
    jobs = jobs.join(trained, on=["job_id", "attempt"])
    return jobs.assign(train_s=jobs["train_s_to_target"].where(reached, jobs["trained_s"]).astype(float),
                       steps=jobs["steps_to_target"].where(reached, jobs["last_step"]).astype(float),
                       epochs=jobs["epochs_to_target"].where(reached, jobs["last_epoch"]).astype(float))


def censored_median(values: np.ndarray, reached: np.ndarray) -> tuple[float, bool]:
    """The median of values of which those not `reached` are censored (known only to exceed their value), and
    whether it is known: where it falls on a censored value it is not, and the median of the values as they
    stand (a lower bound of it) is returned with False."""
    median = float(np.median(np.where(reached, values, np.inf)))
    return (median, True) if np.isfinite(median) else (float(np.median(values)), False)


def per_seed(runs: pd.DataFrame) -> pd.DataFrame:
    """`processes` reduced to one row per seed of each framework:variant: its repeats (re-timings of one seed)
    merged by `censored_median` per measure; the seed reached the target where more than half of them did."""
    rows = []
    for key, group in runs.groupby([*LABEL, "seed"], sort=False):
        row = dict(zip([*LABEL, "seed"], key))
        reached = group["reached"].to_numpy(bool)
        for measure in MEASURES:
            row[measure], row["reached"] = censored_median(group[measure].to_numpy(float), reached)
        rows.append({**row, "repeats": len(group), "busy": bool(group["busy"].any())})
    return pd.DataFrame(rows, columns=[*LABEL, "seed", *MEASURES, "reached", "repeats", "busy"])


# --- Time to target across seeds --------------------------------------------------------------------------------


def _with_infinity(seeds: pd.DataFrame, measure: str) -> np.ndarray:
    """A measure per seed (by seed), the seeds that missed the target at infinity: a median of these is infinite
    exactly where it falls on a censored seed."""
    seeds = seeds.sort_values("seed")
    return np.where(seeds["reached"], seeds[measure], np.inf)


def _interval(replicates: np.ndarray) -> tuple[float, float]:
    """The percentile interval of bootstrap replicates at CONFIDENCE, each bound an actual replicate (so an
    infinite one, a median not reached, stays one)."""
    tail = (1 - CONFIDENCE) / 2
    return (float(np.quantile(replicates, tail, method="lower")),
            float(np.quantile(replicates, 1 - tail, method="higher")))


def _ratio(times: np.ndarray, fastest: np.ndarray) -> np.ndarray:
    """times / fastest, where a median not reached is infinite: neither reached compares as equal (1)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.asarray(times, float) / np.asarray(fastest, float)
    return np.where(np.isinf(times) & np.isinf(fastest), 1.0, ratio)


def time_to_target(seeds: pd.DataFrame, seed: int = SEED) -> pd.DataFrame:
    """Per SETTING and framework:variant (`per_seed`'s rows): how many seeds reached the target of how many, and
    per measure the median over seeds (`censored_median`: `median_reached` False where more than half, or half of
    an even count, missed it, the median then a lower bound) with its bootstrap interval over seeds (none with
    fewer than MIN_SEEDS; an infinite bound: not reached in that share of the resamples). Ranked by the median
    training time: each row's `ratio` to the fastest's, with the interval of the ratio from resampling both
    sides' seeds (the same seeds together where both ran the same ones: a seed gives every framework the same
    weights and batches); `verdict` fastest, tied (the interval covers 1), slower, undecided (too few seeds for an
    interval), not reached (no median reached in the setting), or busy (a time that rests on contention: not
    ranked)."""
    rng = np.random.default_rng(seed)
    rows = []
    for key, setting in seeds.groupby(SETTING, sort=False):
        drawn = {}
        for label, group in setting.groupby("label", sort=False):
            count = len(group)
            row = {**dict(zip(SETTING, key)), "label": label, "framework": group["framework"].iloc[0],
                   "variant": group["variant"].iloc[0], "seeds": count, "reached": int(group["reached"].sum()),
                   "busy": bool(group["busy"].any())}
            indices = rng.integers(count, size=(RESAMPLES, count))
            for measure in MEASURES:
                row[f"median_{measure}"], row["median_reached"] = censored_median(group[measure].to_numpy(float),
                                                                                 group["reached"].to_numpy(bool))
                replicates = np.median(_with_infinity(group, measure)[indices], axis=1)
                low, high = _interval(replicates) if count >= MIN_SEEDS else (np.nan, np.nan)
                row.update({f"{measure}_low": low, f"{measure}_high": high})
                if measure == "train_s":
                    drawn[label] = (tuple(sorted(group["seed"])), _with_infinity(group, measure), indices,
                                    replicates)
            rows.append(row)
        rank(rows[len(rows) - setting["label"].nunique():], drawn)
    columns = [*SETTING, "label", "framework", "variant", "seeds", "reached", "median_reached",
               *(f"{prefix}{measure}{suffix}" for measure in MEASURES
                 for prefix, suffix in (("median_", ""), ("", "_low"), ("", "_high"))),
               "ratio", "ratio_low", "ratio_high", "verdict", "busy"]
    table = pd.DataFrame(rows, columns=columns)
    order = table.assign(_busy=table["busy"], _time=np.where(table["median_reached"], table["median_train_s"],
                                                              np.inf), _setting=table.groupby(SETTING,
                                                                                              sort=False).ngroup())
    order = order.sort_values(["_setting", "_busy", "_time", "reached"], ascending=[True, True, True, False],
                              kind="stable")
    return table.loc[order.index].reset_index(drop=True)


def rank(rows: list[dict], drawn: dict[str, tuple]) -> None:
    """Each of one setting's `rows` gets its ratio of median training time to the fastest's, the interval of that
    ratio, and its verdict (`time_to_target`); `drawn`: per label its seeds, its training times by seed (infinite
    where missed), its resampled seed indices and their median's replicates."""
    clean = [row for row in rows if not row["busy"]]
    times = {row["label"]: row["median_train_s"] if row["median_reached"] else np.inf for row in clean}
    fastest = min(clean, key=lambda row: (times[row["label"]], -row["reached"]), default=None)
    for row in rows:
        row.update(ratio=np.nan, ratio_low=np.nan, ratio_high=np.nan)
        if row["busy"]:
            row["verdict"] = "busy"
            continue
        if not np.isfinite(times[fastest["label"]]):
            row["verdict"] = "not reached"
            continue
        row["ratio"] = float(_ratio(np.array(times[row["label"]]), np.array(times[fastest["label"]])))
        if row is fastest:
            row["verdict"] = "fastest"
            continue
        if min(row["seeds"], fastest["seeds"]) < MIN_SEEDS:
            row["verdict"] = "undecided"
            continue
        own_seeds, own_values, _, own = drawn[row["label"]]
        best_seeds, _, best_indices, best = drawn[fastest["label"]]
        if own_seeds == best_seeds:  # paired: each resample draws the same seeds on both sides
            own = np.median(own_values[best_indices], axis=1)
        low, high = _interval(_ratio(own, best))
        row.update(ratio_low=low, ratio_high=high, verdict="tied" if low <= 1 <= high else "slower")


def _varies(table: pd.DataFrame) -> set[str]:
    """The SETTING columns in which a table of (already identified) settings differs: what a name must say."""
    return {column for column in SETTING if table[column].nunique() > 1}


def _span(low: float, high: float, digits: str) -> str:
    """An interval in words, a bound that is a median not reached (infinite) said so."""
    if np.isinf(low):
        return "not reached"
    return f"{low:{digits}}-" + ("not reached" if np.isinf(high) else f"{high:{digits}}")


def time_to_target_markdown(table: pd.DataFrame) -> str:
    """`time_to_target` as the report shows it: per row, "k of N" seeds reached, each median with its interval
    ("not reached (> 12.3)" where the median is not), and the ratio with its interval and verdict."""
    varies = _varies(table)
    shown = []
    for _, row in table.iterrows():
        cells = {"setting": group_name(tuple(row[SETTING]), varies), "job": row["label"],
                 "reached": f"{row['reached']} of {row['seeds']}"}
        for measure, digits in (("train_s", ".1f"), ("steps", ",.0f"), ("epochs", ".2f")):
            median = f"{row[f'median_{measure}']:{digits}}"
            median = median if row["median_reached"] else f"not reached (> {median})"
            interval = "" if np.isnan(row[f"{measure}_low"]) else \
                f" ({_span(row[f'{measure}_low'], row[f'{measure}_high'], digits)})"
            cells[f"median_{measure}"] = median + interval
        ratio = "" if np.isnan(row["ratio"]) else "not reached" if np.isinf(row["ratio"]) else f"{row['ratio']:.2f}"
        if not np.isnan(row["ratio_low"]):
            ratio += f" ({_span(row['ratio_low'], row['ratio_high'], '.2f')})"
        cells.update(ratio=ratio, verdict=row["verdict"])
        shown.append(cells)
    return markdown(pd.DataFrame(shown))


def ranking_sentences(table: pd.DataFrame) -> list[str]:
    """Per setting, the ranking by median training time to the target in words, ties named."""
    varies = _varies(table)
    sentences = []
    for key, group in table.groupby(SETTING, sort=False):
        ranked = group[group["verdict"].isin(["fastest", "tied", "slower", "undecided"])]
        if ranked.empty:
            sentences.append(f"{group_name(key, varies)}: no framework reached the target at the median of its "
                             f"seeds.")
            continue
        fastest = ranked.iloc[0]
        if len(group) == 1:
            sentences.append(f"{group_name(key, varies)}: {fastest['label']} alone, nothing to rank it against.")
            continue
        text = f"{group_name(key, varies)}: **{fastest['label']}** is fastest to the target at the median"
        parts = []
        for _, row in ranked.iloc[1:].iterrows():
            ratio = "median not reached" if np.isinf(row["ratio"]) else f"{row['ratio']:.2f}x"
            if row["verdict"] == "undecided":
                parts.append(f"{row['label']} {ratio}, undecided: fewer than {MIN_SEEDS} seeds give no interval")
                continue
            span = _span(row["ratio_low"], row["ratio_high"], ".2f")
            parts.append(f"{row['label']} tied with it ({ratio}, {span})" if row["verdict"] == "tied" else
                         f"{row['label']} {ratio} ({span})")
        others = group[~group.index.isin(ranked.index)]
        parts += [f"{row['label']} {row['verdict']}" for _, row in others.iterrows()]
        sentences.append(text + ("; " + "; ".join(parts) if parts else "") + ".")
    return sentences


# --- Do they converge alike? ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Accuracies:
    """A pair's accuracy compared: `test` (paired t on seeds, McNemar, or the independent-samples bound), the mean
    difference first - second, its p-value, the smallest difference the test finds (paired.POWER, at the level
    the verdict's strictest step demands), and the per-seed McNemar results where predictions exist."""
    test: str
    difference: float
    p: float
    detectable: float
    mcnemar: list[tuple[int, int, PairedAccuracy]]


def evaluations(epochs: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """epochs.csv's rows of the processes in `runs` (`processes`), with their label, setting and seed: per
    framework:variant, seed and step, the median accuracy over the seed's repeats."""
    rows = epochs.drop(columns=[column for column in epochs if column in [*LABEL, "seed", "repeat"]])
    rows = rows.merge(runs[["job_id", "attempt", *LABEL, "seed", "repeat"]], on=["job_id", "attempt"])
    return rows.groupby([*LABEL, "seed", "step"], sort=False)["test_accuracy"].median().reset_index()


def _first_process(runs: pd.DataFrame) -> dict[tuple[str, int], tuple[str, int]]:
    """Per (label, seed), the (job_id, attempt) of its first repeat: whose predictions stand for the seed."""
    first = runs.sort_values("repeat").drop_duplicates(["label", "seed"])
    return {(row.label, row.seed): (row.job_id, int(row.attempt)) for row in first.itertuples()}


def compare_accuracy(first: str, second: str, accuracy: pd.DataFrame, owners: dict, predictions: dict,
                     tests: ImageCount, level: float) -> Accuracies | None:
    """Two labels' accuracy, per shared seed at the last step both evaluated (a job stops at the target): across
    two seeds or more a paired t-test on the per-seed differences; on one seed McNemar's test on the same images
    where both saved predictions, else the bound for two independent samples of the recorded test-set size. None
    where they share no evaluated step."""
    differences, means, mcnemars = [], [], []
    by_seed = {label: dict(tuple(group.groupby("seed"))) for label, group in accuracy.groupby("label")
               if label in (first, second)}
    for seed in sorted(set(by_seed.get(first, {})) & set(by_seed.get(second, {}))):
        one, other = (by_seed[label][seed].set_index("step")["test_accuracy"] for label in (first, second))
        common = one.index.intersection(other.index)
        if common.empty:
            continue
        step = common.max()
        differences.append(one[step] - other[step])
        means.append((one[step] + other[step]) / 2)
        saved = [predictions.get(owners.get((label, seed))) for label in (first, second)]
        if all(isinstance(found, Predictions) for found in saved):
            # the seeds' first repeats, whose predictions were saved, may have stopped apart from the seed's median
            shared = np.intersect1d(saved[0].steps, saved[1].steps)
            if len(shared):
                mcnemars.append((seed, int(shared.max()), paired_accuracy(saved[0], saved[1], shared.max(),
                                                                          shared.max())))
    if not differences:
        return None
    normal = NormalDist()
    if len(differences) >= 2:
        p, detectable = paired_t(np.array(differences), alpha=level)
        return Accuracies(f"paired t on {len(differences)} seeds", float(np.mean(differences)), p, detectable,
                          mcnemars)
    if mcnemars:
        paired = mcnemars[0][2]
        detectable = mcnemar_detectable(max(paired.only_first + paired.only_second, 1) / paired.images,
                                        paired.images, alpha=level)
        return Accuracies(f"McNemar on {paired.images:,} images", paired.first - paired.second, paired.p, detectable,
                          mcnemars)
    if not tests.evaluated:
        return Accuracies("none (test-set size unknown)", differences[0], np.nan, np.nan, [])
    error = np.sqrt(2 * means[0] * (1 - means[0]) / tests.evaluated)
    p = 2 * (1 - normal.cdf(abs(differences[0]) / error)) if error else 1.0
    detectable = (normal.inv_cdf(1 - level / 2) + normal.inv_cdf(POWER)) * error
    return Accuracies(f"independent-samples bound, {tests.evaluated:,} images", differences[0], p, detectable, [])


def convergence(seeds: pd.DataFrame, accuracy: pd.DataFrame, owners: dict, predictions: dict,
                tests: ImageCount) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per setting, every framework:variant against every other framework's (never its own framework's other
    variants, which share whatever its training does differently): `pairs`, one row per ordered pair with its
    accuracy test (`compare_accuracy`) and the permutation test of Gehan's statistic on the seeds' steps to target
    (censored seeds as "more than their last evaluation"), the pair's p-value the smaller of the two doubled
    (Bonferroni over the two measures); and `verdicts`, one row per framework:variant: its p-value the largest of
    its pairs' (it differs only if it differs from every other framework: an intersection-union test, so one
    framework unlike the rest flags none of its partners), Holm-corrected over the setting's verdicts, and
    flagged below paired.ALPHA; and `mcnemar`, per pair (once) and seed with predictions on both sides, McNemar's
    test on the images exactly one of them classified correctly."""
    pair_rows, verdict_rows, mcnemar_rows = [], [], []
    for key, setting in seeds.groupby(SETTING, sort=False):
        labels = setting.drop_duplicates("label").set_index("label")["framework"]
        level = ALPHA / (2 * max(len(labels), 1))  # the strictest step of Holm's, over two measures
        in_setting = accuracy[(accuracy[SETTING] == pd.Series(dict(zip(SETTING, key)))).all(axis=1)]
        found = []
        for first, second in permutations(labels.index, 2):
            if labels[first] == labels[second]:
                continue
            row = {**dict(zip(SETTING, key)), "label": first, "against": second}
            accuracies = compare_accuracy(first, second, in_setting, owners, predictions, tests, level)
            if accuracies is not None:
                below = sum(result.p < ALPHA for _, _, result in accuracies.mcnemar)
                mcnemar_rows += [{**row, "seed": seed, "step": step, "accuracy": result.first,
                                  "against_accuracy": result.second, "only_label": result.only_first,
                                  "only_against": result.only_second, "images": result.images, "p": result.p}
                                 for seed, step, result in accuracies.mcnemar if first < second]
                row.update(accuracy_test=accuracies.test, accuracy_difference=accuracies.difference,
                           accuracy_p=accuracies.p, accuracy_detectable=accuracies.detectable,
                           mcnemar_seeds=len(accuracies.mcnemar), mcnemar_below=below)
            one, other = (setting[setting["label"] == label] for label in (first, second))
            if min(len(one), len(other)) >= 2:
                row.update(steps_p=gehan_permutation(one["steps"].to_numpy(float), one["reached"].to_numpy(bool),
                                                     other["steps"].to_numpy(float),
                                                     other["reached"].to_numpy(bool)),
                           steps_smallest_p=smallest_permutation_p(len(one), len(other)))
            tested = [value for value in (row.get("accuracy_p"), row.get("steps_p")) if value is not None
                      and not np.isnan(value)]
            row["p"] = min(1.0, len(tested) * min(tested)) if tested else np.nan
            found.append(row)
        pair_rows += found
        pairs = pd.DataFrame(found, columns=["label", "against", "p"])
        worst = {label: group.loc[group["p"].idxmax()] if group["p"].notna().all() else None
                 for label, group in pairs.groupby("label", sort=False)}
        judged = [label for label in labels.index if worst.get(label) is not None]
        adjusted = dict(zip(judged, holm([float(worst[label]["p"]) for label in judged])))
        for label in labels.index:
            verdict_rows.append({**dict(zip(SETTING, key)), "label": label, "framework": labels[label],
                                 "against": worst[label]["against"] if label in adjusted else None,
                                 "p": adjusted.get(label, np.nan),
                                 "flagged": bool(adjusted.get(label, 1.0) < ALPHA)})
    pair_columns = [*SETTING, "label", "against", "accuracy_test", "accuracy_difference", "accuracy_p",
                    "accuracy_detectable", "mcnemar_seeds", "mcnemar_below", "steps_p", "steps_smallest_p", "p"]
    mcnemar_columns = [*SETTING, "label", "against", "seed", "step", "accuracy", "against_accuracy", "only_label",
                       "only_against", "images", "p"]
    return (pd.DataFrame(pair_rows, columns=pair_columns),
            pd.DataFrame(verdict_rows, columns=[*SETTING, "label", "framework", "against", "p", "flagged"]),
            pd.DataFrame(mcnemar_rows, columns=mcnemar_columns))


def _p(value: float) -> str:
    return "p < 0.0001" if value < 1e-4 else f"p = {value:.2g}" if value < 0.01 else f"p = {value:.2f}"


def verdict_sentences(verdicts: pd.DataFrame, pairs: pd.DataFrame) -> list[str]:
    """One sentence per framework:variant: whether it trains unlike every other framework, with its Holm-corrected
    p-value, the pair that decided it, and the smallest differences its seeds and test set could reveal."""
    varies = _varies(verdicts)
    sentences = []
    for key, group in verdicts.groupby(SETTING, sort=False):
        name = group_name(key, varies)
        in_setting = pairs[(pairs[SETTING] == pd.Series(dict(zip(SETTING, key)))).all(axis=1)]
        if in_setting.empty:
            sentences.append(f"{name}: one framework only, nothing to compare its convergence with.")
            continue
        frameworks = group["framework"].nunique()
        for _, row in group.iterrows():
            own = in_setting[in_setting["label"] == row["label"]]
            if pd.isna(row["p"]):
                sentences.append(f"{name}: {row['label']} not judged: a comparison with another framework has no "
                                 f"evaluation or seed in common.")
                continue
            decided = own[own["against"] == row["against"]].iloc[0]
            against = row["against"]
            if row["flagged"] and frameworks == 2:
                lead = (f"**{row['label']} and {against} converge differently** ({_p(row['p'])}, Holm-corrected; "
                        f"with two frameworks no test can say which of them trains differently)")
            elif row["flagged"]:
                lead = (f"**{row['label']} converges unlike every other framework** ({_p(row['p'])}, Holm-corrected "
                        f"over the frameworks, against the closest, {against})")
            else:
                lead = (f"{row['label']} converges like {against} as far as the tests can tell ({_p(row['p'])}, "
                        f"Holm-corrected; a framework is flagged only where it is unlike every other)")
            details = []
            if pd.notna(decided["accuracy_p"]):
                details.append(f"accuracy {decided['accuracy_difference'] * 100:+.2f} points "
                               f"({decided['accuracy_test']}, {_p(decided['accuracy_p'])})")
            if pd.notna(decided["steps_p"]):
                details.append(f"steps to target {_p(decided['steps_p'])} (permutation test)")
            reach = []
            worst = own["accuracy_detectable"].max()
            if pd.notna(worst):
                reach.append(f"an accuracy difference of {worst * 100:.2f} points ({POWER:.0%} power)")
            smallest = own["steps_smallest_p"].max()
            if pd.notna(smallest):  # steps alone flag where twice it, times Holm's first factor, is below ALPHA
                reach.append(f"a difference in steps to target with p as small as {smallest:.2g} (every seed of "
                             f"one beyond every seed of the other)" + ("" if 2 * len(group) * smallest < ALPHA else
                                                                       ": too few seeds for steps alone to flag it"))
            text = f"{name}: {lead}."
            text += f" Against {against}: {'; '.join(details)}." if details else ""
            text += f" Its seeds could detect {'; '.join(reach)}." if reach else ""
            sentences.append(text)
    return sentences


# --- Learning curves over seeds ---------------------------------------------------------------------------------


def bands(epochs: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Per framework:variant and evaluation step, over the seeds still training there (repeats merged by their
    median): the median, least and greatest test accuracy, the median wall-clock seconds to that evaluation
    (training and evaluation, as MLPerf counts time to quality), the epoch, and how many seeds it rests on."""
    rows = epochs.drop(columns=[column for column in epochs if column in [*LABEL, "seed", "repeat"]])
    rows = rows.merge(runs[["job_id", "attempt", *LABEL, "seed", "repeat"]], on=["job_id", "attempt"])
    rows = rows.sort_values("step", kind="stable")
    rows = rows.assign(wall_s=(rows["train_s"] + rows["eval_s"].fillna(0)).groupby(
        [rows["job_id"], rows["attempt"]]).cumsum())
    per_seed = rows.groupby([*LABEL, "seed", "step"], sort=False).agg(
        accuracy=("test_accuracy", "median"), wall_s=("wall_s", "median"), epoch=("epoch", "median")).reset_index()
    return per_seed.groupby([*LABEL, "step"], sort=False).agg(
        accuracy=("accuracy", "median"), low=("accuracy", "min"), high=("accuracy", "max"),
        wall_s=("wall_s", "median"), epoch=("epoch", "median"), seeds=("seed", "nunique")).reset_index()


# --- The report's section ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seeds:
    """Everything the seeds section shows, computed once from a run's tables and predictions (`analyse`)."""
    runs: pd.DataFrame
    table: pd.DataFrame
    pairs: pd.DataFrame
    verdicts: pd.DataFrame
    mcnemar: pd.DataFrame
    tests: ImageCount
    predictions: int
    unfinished: int


def analyse(summary: pd.DataFrame, epochs: pd.DataFrame, predictions: dict) -> Seeds | None:
    """A time-to-accuracy run's seeds analysed; None for a run without a target. `predictions`: the run's saved
    per-image predictions by (job_id, attempt) (`report.predictions.all_predictions`)."""
    runs = processes(summary, epochs)
    if runs.empty:
        return None
    seeds = per_seed(runs)
    tests = image_count(epochs, summary["test_accuracy"])
    pairs, verdicts, mcnemar = convergence(seeds, evaluations(epochs, runs), _first_process(runs), predictions,
                                           tests)
    unfinished = summary["target_accuracy"].notna() & ~summary["status"].isin(["ok", "diverged", "unavailable",
                                                                                "skipped"])
    return Seeds(runs, time_to_target(seeds), pairs, verdicts, mcnemar, tests, len(predictions),
                 int(unfinished.sum()))


def method_note(found: Seeds) -> str:
    """How the section's numbers were obtained, and what the run could not support."""
    counts = found.table.groupby(SETTING, sort=False)["seeds"]
    seeds = f"{counts.min().min()}" if counts.min().min() == counts.max().max() else \
        f"{counts.min().min()} to {counts.max().max()}"
    repeats = found.runs.groupby(["label", "seed"])["repeat"].nunique().max()
    text = (f"{seeds} seed(s) per framework:variant, each a different draw of initial weights, batch order and "
            f"augmentation, shared by every framework"
            + (f"; a seed's {repeats} repeats (re-timings) are merged into one value first" if repeats > 1 else "")
            + ". A seed that missed the target is kept, censored at its last evaluation: a median that falls on "
            f"one is *not reached* and shown as a lower bound. Intervals: {CONFIDENCE:.0%} bootstrap over seeds "
            f"({RESAMPLES} resamples; none below {MIN_SEEDS} seeds; the ratio's resamples draw the same seeds on both "
            f"sides). Accuracies rest on {found.tests.note()}.")
    if found.unfinished:
        text += (f" {found.unfinished} process(es) that failed or were interrupted before their end count in no seed "
                 f"(see the failed jobs).")
    if found.predictions == 0:
        text += (" **No per-image predictions in this run** (`predictions/`): McNemar's paired test on the same "
                 "test images cannot run; one seed's accuracies are compared by the independent-samples bound.")
    return text


def seeds_section(summary: pd.DataFrame, epochs: pd.DataFrame, predictions: dict, env: dict, run_dir: Path) -> str:
    """The report's time to target across seeds and its convergence verdicts, their CSV files and the chart of
    accuracy against time and steps over seeds."""
    found = analyse(summary, epochs, predictions)
    if found is None:
        return ""
    found.table.to_csv(run_dir / "time_to_target_seeds.csv", index=False)
    published(found.pairs, run_dir, "convergence_pairs")
    published(found.verdicts, run_dir, "convergence")
    if len(found.mcnemar):
        published(found.mcnemar, run_dir, "mcnemar")
    target = summary["target_accuracy"].dropna().iloc[0]
    chart = accuracy_time_chart(bands(epochs, found.runs), target, summary, run_dir, env)
    lines = "\n".join(f"- {sentence}" for sentence in [*ranking_sentences(found.table),
                                                        *verdict_sentences(found.verdicts, found.pairs)])
    return (f"## Time to {target:.1%} across seeds\n\n{method_note(found)} `median_train_s` is the training time "
            f"to the target (compilation included, evaluation excluded), as above; `ratio`: its median over the "
            f"fastest's.\n\n{time_to_target_markdown(found.table)}\n\n"
            f"Do they converge alike? Each framework against every other: its accuracy at the last evaluation both "
            f"made (paired t-test on the per-seed accuracies, the seeds pairing the frameworks; on one seed, McNemar's "
            f"test on the same test images), and its steps to target (a permutation test), the smaller p doubled; a "
            f"framework is flagged only where it differs from every other, Holm-corrected over the frameworks "
            f"(docs/method.md; the pairs in convergence_pairs.csv"
            + (", McNemar per seed in mcnemar.csv" if len(found.mcnemar) else "") + f").\n\n{lines}\n\n{chart}\n")
