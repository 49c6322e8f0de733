"""The report's tables, computed from a run's rows: the speed ranking, throughput per batch size,
scaling across devices and the learning curves; and how a table is written in Markdown."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from benchmarks.harness.contention import SUM_BUSY_SHARE
from benchmarks.harness.results import JOB, SETTING, measured
from report.predictions import seed_of


def number(value: float) -> str:
    """A measured value as a report prints it: four significant digits in plain notation, whole
    numbers from 1,000 on, and "0" for a magnitude that rounds away (a contention of 1e-11)."""
    magnitude = abs(value)
    if magnitude < 5e-5:
        return "0"
    decimals = max(0, 3 - math.floor(math.log10(magnitude)))
    text = f"{value:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def published(table: pd.DataFrame, run_dir: Path, name: str) -> str:
    """`table` written beside the report as `name`.csv, under the column names it is shown with, and
    its Markdown: every number the report's tables show is in a CSV file of the run."""
    table.to_csv(run_dir / f"{name}.csv", index=False)
    return markdown(table)


def markdown(table: pd.DataFrame) -> str:
    """The table in Markdown, floats by `number`, numeric columns right-aligned, missing values empty."""
    cells = table.astype(object).map(lambda value: "" if value is None or value is pd.NA or
                                     (isinstance(value, float) and math.isnan(value)) else
                                     number(value) if isinstance(value, float) else str(value))
    align = ["right" if pd.api.types.is_numeric_dtype(table[column]) else "left" for column in table.columns]
    return cells.to_markdown(index=False, disable_numparse=True, colalign=align)


def identified(table: pd.DataFrame) -> pd.DataFrame:
    """`table` with its job identity (`results.JOB`) in a form that groups and merges as it should: device
    and node counts as integers (one node where a row does not say) and an empty text field as "" (a
    missing value would drop out of a grouping, or never equal another)."""
    counts = {column: table[column].fillna(1).astype(int) for column in ("devices", "nodes")}
    texts = {column: table[column].fillna("") for column in JOB if column not in counts and column != "batch_size"}
    return table.assign(**counts, **texts)


def process_of(table: pd.DataFrame) -> pd.Series:
    """Which process of its job each row came from: its seed and repeat. Speed pools a job's seeds as it pools
    its repeats, each (seed, repeat) a process of its own."""
    return seed_of(table).astype(str) + "/" + table["repeat"].astype(str)


def label(table: pd.DataFrame) -> pd.Series:
    """framework:variant, after the model's name when the run compared several models, after the
    device when it holds several devices (runs merged by `python -m report RUN RUN --out DIR`),
    with its precision and its tuning profile in brackets when the run has several, with "xN" after it
    when it trained data-parallel on N devices (and "on M nodes" where the run's jobs ran on different
    numbers of machines), so that a label names one job of the table."""
    name = table["framework"] + ":" + table["variant"]
    precisions = table["precision"].fillna("") if "precision" in table else pd.Series("", index=table.index)
    name = name + " [" + precisions + "]" if precisions.nunique() > 1 else name
    profiles = table["tuning"].fillna("") if "tuning" in table else pd.Series("", index=table.index)
    name = name + " [" + profiles + "]" if profiles.nunique() > 1 else name
    name = table["model"] + " " + name if table["model"].nunique() > 1 else name
    name = table["device"] + " " + name if table["device"].nunique() > 1 else name
    name = name + table["devices"].astype(int).map(lambda n: f" x{n}" if n > 1 else "")
    nodes = table["nodes"].fillna(1).astype(int) if "nodes" in table else pd.Series(1, index=table.index)
    name = name + nodes.map(lambda n: f" on {n} nodes") if nodes.nunique() > 1 else name
    paths = table["input"].fillna("prefetch") if "input" in table else pd.Series("prefetch", index=table.index)
    return name + " (" + paths + " input)" if paths.nunique() > 1 else name


def input_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Each job that ran on a native pipeline next to the same job fed by the suite, repeats merged
    (medians): epoch time, images/s over the epoch and over the steady windows, the stall and the
    input workers' CPU time, and `vs_suite`, the native epoch time over the suite-fed one (prefetch
    input, or the run's other suite path)."""
    ok = summary[summary["status"].eq("ok")].copy()
    if ok.empty or not ok["input"].eq("native").any():
        return pd.DataFrame()
    ok["input"] = ok["input"].fillna("prefetch")
    ok["job"] = label(ok.assign(input="prefetch"))  # the job without its input path
    table = ok.groupby(["job", "batch_size", "input"], sort=False).agg(
        input_workers=("input_workers", "first"), epoch_s=("epoch_s", "median"),
        epoch_images_per_s=("epoch_images_per_s", "median"), images_per_s=("images_per_s", "median"),
        input_stall_share=("input_stall_share", "median"), input_cpu_s=("input_cpu_s", "median"),
        suite_augment_s=("augment_s", "median"), test_accuracy=("test_accuracy", "median"),
        repeats=("repeat", "nunique")).reset_index()
    suite = table[table["input"].ne("native")].drop_duplicates(["job", "batch_size"]).set_index(["job", "batch_size"])
    base = pd.MultiIndex.from_frame(table[["job", "batch_size"]]).map(lambda key: suite["epoch_s"].get(key))
    table["vs_suite"] = table["epoch_s"] / pd.Series(base, index=table.index, dtype=float)
    table = table[table["job"].isin(table.loc[table["input"].eq("native"), "job"])]
    return table.sort_values(["job", "batch_size"], key=lambda column: column.map(list(dict.fromkeys(column)).index),
                             kind="stable")


def _any_true(values: pd.Series) -> bool:
    return bool(values.astype(str).eq("True").any())  # CSV booleans read back as bool, or object with NaN


RATIOS = ["ratio", "ratio_low", "ratio_high", "verdict"]  # findings.comparisons' columns the ranking shows


def ranking_table(summary: pd.DataFrame, compared: pd.DataFrame | None = None) -> pd.DataFrame:
    """Jobs that measured steps, repeats merged (median of the per-process values, spread across
    repeats), ranked by throughput within each model, batch size, device and tuning profile; the
    columns keep summary.csv's names (`framework_rss_mb`: peak RSS over the RSS before the
    framework's import, `repeat_spread`: (max - min) / median of the processes' step times). With
    `compared` (`findings.comparisons`): each row's step-time ratio to the fastest, its interval and
    verdict, empty for a row not compared (busy, or fed by a framework's own pipeline)."""
    ok = measured(summary).copy()
    if ok.empty:
        return ok
    ok["job"] = label(ok)
    ok = identified(ok).assign(process=process_of(ok))
    grouped = ok.groupby(JOB, sort=False)
    table = grouped.agg(
        job=("job", "first"),
        step_ms_median=("step_ms_median", "median"), step_ms_iqr=("step_ms_iqr", "median"),
        step_ms_p5=("step_ms_p5", "median"), step_ms_p95=("step_ms_p95", "median"),
        windows=("windows", "sum"), repeats=("process", "nunique"),
        images_per_s=("images_per_s", "median"), gflops=("gflops", "median"), of_peak=("of_peak", "median"),
        compile_s=("compile_s", "median"),
        recompiles=("recompiles", "max"), peak_rss_mb=("peak_rss_mb", "max"),
        framework_rss_mb=("baseline_rss_mb", "max"), peak_device_mb=("peak_device_mb", "max"),
        test_accuracy=("test_accuracy", "median"), copy_ms=("copy_ms", "median"),
        busy=("busy", _any_true), contention=("contention", "median"),
    ).reset_index()
    spread = grouped["step_ms_median"].agg(lambda s: (s.max() - s.min()) / s.median() if len(s) > 1 else float("nan"))
    table["repeat_spread"] = spread.to_numpy()
    table["framework_rss_mb"] = table["peak_rss_mb"] - table["framework_rss_mb"]
    # ranked within each setting (the same work per step, one profile); settings listed device first
    order = ["device", *(column for column in SETTING if column != "device")]
    if compared is not None:
        table = table.merge(compared[[*JOB, *RATIOS]], on=JOB, how="left")
        table.loc[table["busy"] | table["input"].eq("native"), RATIOS] = None
    busy = table["busy"]
    table["images_per_s"] = table["images_per_s"].round().astype(int)
    table["job"] = table["job"] + busy.map({True: " (busy)", False: ""})
    table = table.assign(_busy=busy).sort_values([*order, "_busy", "images_per_s"],
                                                 ascending=[True] * len(order) + [True, False])
    several_devices = table["device"].nunique() > 1
    data_parallel = (table["devices"] > 1).any()
    columns = ["job", *(["device"] if several_devices else []), "model", *(["devices"] if data_parallel else []),
               "batch_size", "images_per_s", *(RATIOS if compared is not None else []), "gflops", "of_peak",
               "step_ms_median", "step_ms_iqr", "step_ms_p5", "step_ms_p95", "windows", "repeats", "repeat_spread",
               "compile_s", "recompiles", "peak_rss_mb", "framework_rss_mb", "peak_device_mb", "test_accuracy", "input",
               "copy_ms", "contention"]
    empty = [column for column in columns if column not in RATIOS and table[column].replace("", None).isna().all()]
    return table[[column for column in columns if column not in empty]]  # e.g. device memory on CPU


def throughput_table(ranking: pd.DataFrame) -> pd.DataFrame:
    """Images/s per job (rows) and batch size (columns)."""
    return ranking.pivot(index="job", columns="batch_size", values="images_per_s")


def throughput_markdown(pivot: pd.DataFrame) -> str:
    return pivot.rename(columns=lambda c: f"batch {c}").reset_index().to_markdown(index=False, floatfmt=".0f")


def scaling_table(ranking: pd.DataFrame) -> pd.DataFrame:
    """Per job and per-device batch size: images/s on each device count, and the scaling at N
    devices, images/s at N / (N x images/s at 1) (1.0: each device adds its whole throughput);
    `busy` where any of its rows was measured on a busy machine."""
    if "devices" not in ranking:  # the ranking shows it only when a job trained data-parallel
        return pd.DataFrame()
    busy = ranking["job"].str.endswith(" (busy)")
    rows = ranking.assign(job=ranking["job"].str.replace(r"( x\d+)?( \(busy\))?$", "", regex=True), busy=busy)
    pivot = rows.pivot_table(index=["job", "batch_size"], columns="devices", values="images_per_s")
    if 1 not in pivot or len(pivot.columns) < 2:
        return pd.DataFrame()
    table = pd.DataFrame(index=pivot.index)
    for devices in pivot.columns:
        table[f"images_per_s_x{devices}"] = pivot[devices].round()
    for devices in pivot.columns.drop(1):
        table[f"scaling_x{devices}"] = pivot[devices] / (devices * pivot[1])
    if busy.any():
        table["busy"] = rows.groupby(["job", "batch_size"])["busy"].any().reindex(table.index).map({True: "busy",
                                                                                                   False: ""})
    return table.reset_index()


def busy_sum(share: pd.Series) -> pd.Series:
    """Whether each sum of times rests on contention: more than SUM_BUSY_SHARE of it fell in busy
    windows (a share not measured, in runs written before it was, is not flagged)."""
    return share.astype(float).gt(SUM_BUSY_SHARE)


def target_busy(jobs: pd.DataFrame) -> pd.Series:
    """Whether each job's time to target, in training or in wall time, rests on contention."""
    return busy_sum(jobs["train_busy_share_to_target"]) | busy_sum(jobs["wall_busy_share_to_target"])


def curves_table(epochs: pd.DataFrame) -> pd.DataFrame:
    """Per job and evaluation: the median over repeats of its losses, accuracy and training time
    since the previous evaluation, and the largest busy share of that time among the repeats."""
    epochs = epochs.assign(job=label(epochs) + " bs" + epochs["batch_size"].astype(str))
    grouped = epochs.groupby(["job", "epoch"], sort=False)
    table = grouped[["train_loss", "test_loss", "test_accuracy", "train_s"]].median()
    table["train_busy_share"] = grouped["train_busy_share"].max()
    return table.dropna(axis="columns", how="all")
