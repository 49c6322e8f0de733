"""The report's tables, computed from a run's rows: the speed ranking, throughput per batch size,
scaling across devices and the learning curves; and how a table is written in Markdown."""

from __future__ import annotations

import pandas as pd

from benchmarks.harness.contention import SUM_BUSY_SHARE

from benchmarks.harness.results import measured


def markdown(table: pd.DataFrame) -> str:
    return table.astype(object).where(table.notna(), None).to_markdown(index=False, floatfmt=".4g",
                                                                         missingval="")  # an empty cell, not "nan"


def label(table: pd.DataFrame) -> pd.Series:
    """framework:variant, after the model's name when the run compared several models, after the
    device when it holds several devices (runs merged by `python -m report RUN RUN --out DIR`),
    with its tuning profile in brackets when the run has several, and with "xN" after it when it
    trained data-parallel on N devices."""
    name = table["framework"] + ":" + table["variant"]
    profiles = table["tuning"].fillna("") if "tuning" in table else pd.Series("", index=table.index)
    name = name + " [" + profiles + "]" if profiles.nunique() > 1 else name
    name = table["model"] + " " + name if table["model"].nunique() > 1 else name
    name = table["device"] + " " + name if table["device"].nunique() > 1 else name
    return name + table["devices"].astype(int).map(lambda n: f" x{n}" if n > 1 else "")


def _any_true(values: pd.Series) -> bool:
    return bool(values.astype(str).eq("True").any())  # CSV booleans read back as bool, or object with NaN


def ranking_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Jobs that measured steps, repeats merged (median of medians, spread across repeats),
    ranked by throughput, with the ratio to the fastest of the same model at the same batch size
    on the same device under the same tuning profile."""
    ok = measured(summary).copy()
    if ok.empty:
        return ok
    ok["job"] = label(ok)
    ok["devices"] = ok["devices"].astype(int)
    ok["tuning"] = ok["tuning"].fillna("")
    grouped = ok.groupby(["job", "batch_size"], sort=False)
    table = grouped.agg(
        model=("model", "first"), devices=("devices", "first"), device=("device", "first"),
        tuning=("tuning", "first"),
        step_ms=("step_ms_median", "median"), iqr_ms=("step_ms_iqr", "median"),
        p5_ms=("step_ms_p5", "median"),
        p95_ms=("step_ms_p95", "median"), windows=("windows", "sum"), repeats=("repeat", "nunique"),
        images_per_s=("images_per_s", "median"), gflops=("gflops", "median"), of_peak=("of_peak", "median"),
        compile_s=("compile_s", "median"),
        recompiles=("recompiles", "max"), peak_rss_mb=("peak_rss_mb", "max"),
        framework_rss_mb=("baseline_rss_mb", "max"), device_mb=("peak_device_mb", "max"),
        accuracy=("test_accuracy", "median"), input=("input", "first"), copy_ms=("copy_ms", "median"),
        busy=("busy", _any_true), contention=("contention", "median"),
    ).reset_index()
    spread = grouped["step_ms_median"].agg(lambda s: (s.max() - s.min()) / s.median() if len(s) > 1 else float("nan"))
    table["repeat_spread"] = spread.to_numpy()
    table["framework_rss_mb"] = table["peak_rss_mb"] - table["framework_rss_mb"]
    busy = table["busy"]
    clean = table["images_per_s"].where(~busy)  # a row measured on a busy machine is not compared
    order = ["device", "model", "devices", "batch_size", "tuning"]  # the same work per step, one profile
    table["vs_fastest"] = clean / clean.groupby([table[key] for key in order]).transform("max")
    table["images_per_s"] = table["images_per_s"].round().astype(int)
    table["job"] = table["job"] + busy.map({True: " (busy)", False: ""})
    table = table.assign(_busy=busy).sort_values([*order, "_busy", "images_per_s"],
                                                 ascending=[True] * len(order) + [True, False])
    several_devices = table["device"].nunique() > 1
    data_parallel = (table["devices"] > 1).any()
    columns = ["job", *(["device"] if several_devices else []), "model", *(["devices"] if data_parallel else []),
               "batch_size", "images_per_s", "vs_fastest", "gflops", "of_peak", "step_ms", "iqr_ms", "p5_ms", "p95_ms",
               "windows", "repeats", "repeat_spread", "compile_s", "recompiles", "peak_rss_mb", "framework_rss_mb",
               "device_mb", "accuracy", "input", "copy_ms", "contention"]
    return table[columns].dropna(axis="columns", how="all")  # e.g. device memory on CPU, accuracy of timing-only runs


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
        table[f"images/s x{devices}"] = pivot[devices].round()
    for devices in pivot.columns.drop(1):
        table[f"scaling x{devices}"] = pivot[devices] / (devices * pivot[1])
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
    """Per job and epoch: the median over repeats of its losses, accuracy and epoch time, and the
    largest busy share of that epoch time among the repeats (omitted where never measured)."""
    epochs = epochs.assign(job=label(epochs) + " bs" + epochs["batch_size"].astype(str))
    grouped = epochs.groupby(["job", "epoch"], sort=False)
    table = grouped[["train_loss", "test_loss", "test_accuracy", "epoch_s"]].median()
    table["epoch_busy_share"] = grouped["epoch_busy_share"].max()
    return table.dropna(axis="columns", how="all")
