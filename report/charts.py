"""The report's PNG charts: speed, memory and compile time per job, throughput against batch size,
learning curves and accuracy against time; each readable without colour (markers, dashes,
hatches and printed values) and titled with what its run measured."""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks.harness.results import measured  # noqa: E402
from report.tables import label  # noqa: E402



def save(fig, path: Path, alt: str) -> str:
    """Write the chart beside the report and close it; the Markdown that shows it."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"![{alt}]({path.name})"

def line_styles() -> itertools.cycle:
    """Line charts tell their jobs apart by marker and dash as well as by colour."""
    return itertools.cycle([{"marker": marker, "linestyle": dash}
                            for dash, marker in zip(itertools.cycle(["-", "--", ":", "-."]), "osD^v<>p*hX")])


def chart_title(summary: pd.DataFrame) -> str:
    """What every chart of a run shows: models, device, precision and data set, e.g.
    "lenet · cpu · fp32 · synthetic data"."""
    def values(column: str) -> str:
        return "+".join(summary[column].dropna().astype(str).unique())
    data = {"cifar10": "CIFAR-10", "synthetic": "synthetic data"}
    return " · ".join([values("model"), values("device"), values("precision"),
                       "+".join(data.get(name, name) for name in summary["data"].dropna().unique())])


def speed_whiskers(ranking: pd.DataFrame, summary: pd.DataFrame) -> tuple[pd.Series, pd.Series, str]:
    """The images/s range a rerun would show, per ranked row: the slowest and the fastest process
    where the job ran in several (repeats), else the one process's p5-p95 window step times; and
    the words for it."""
    ok = measured(summary)
    processes = (ok.assign(job=label(ok)).groupby(["job", "batch_size"])["images_per_s"]
                 .agg(low="min", high="max", count="count"))
    rows = processes.reindex(pd.MultiIndex.from_arrays([ranking["job"].str.removesuffix(" (busy)"),
                                                       ranking["batch_size"]])).set_index(ranking.index)
    several = rows["count"].fillna(1).gt(1)
    low = (ranking["images_per_s"] * ranking["step_ms"] / ranking["p95_ms"]).where(~several, rows["low"])
    high = (ranking["images_per_s"] * ranking["step_ms"] / ranking["p5_ms"]).where(~several, rows["high"])
    words = ("range over the repeats" if several.all() else "p5-p95 of windows" if not several.any() else
             "range over repeats, or p5-p95 of windows with one process")
    return low, high, words


def speed_chart(ranking: pd.DataFrame, summary: pd.DataFrame, run_dir: Path) -> str:
    """Images/s, peak memory and compile time per ranked row, side by side, values printed on the
    bars and busy rows hatched: readable without colour; images/s with `speed_whiskers`."""
    rows = ranking.iloc[::-1]  # matplotlib draws the first bar at the bottom
    labels = rows["job"] + " bs" + rows["batch_size"].astype(str)
    low, high, spread = speed_whiskers(rows, summary)
    whiskers = [(rows["images_per_s"] - low).clip(lower=0), (high - rows["images_per_s"]).clip(lower=0)]
    hatches = ["//" if job.endswith(" (busy)") else "" for job in rows["job"]]
    gpu = "device_mb" in rows and rows["device_mb"].notna().all()
    panels = [(f"images / s (whiskers: {spread})", rows["images_per_s"], whiskers, "{:,.0f}"),
              ("peak device memory, MiB" if gpu else "peak RSS, MiB", rows["device_mb" if gpu else "peak_rss_mb"],
               None, "{:,.0f}"),
              ("compile (first step), s", rows["compile_s"], None, "{:.2g}")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 0.45 * len(rows) + 1.9), sharey=True)
    for ax, (title, values, errors, fmt) in zip(axes, panels):
        bars = ax.barh(labels, values, xerr=errors, capsize=3, color="0.75", edgecolor="black", hatch=None)
        for bar, hatch in zip(bars, hatches):
            bar.set_hatch(hatch)
        ax.bar_label(bars, [fmt.format(value) for value in values], padding=3, fontsize="small")
        ax.set_title(title, fontsize="medium")
        if values.min() > 0 and values.max() / values.min() > 20:  # e.g. two models: a log axis keeps both legible
            ax.set_xscale("log")
            ax.set_title(title + ", log scale", fontsize="medium")
        ax.margins(x=0.25)
    fig.suptitle(f"Training speed, memory and compile time: {chart_title(summary)}")
    return save(fig, run_dir / "speed.png", "speed, memory and compile time per job")


def throughput_chart(pivot: pd.DataFrame, summary: pd.DataFrame, run_dir: Path) -> str:
    """Images/s against batch size, one line per job (`pivot`: tables.throughput_table)."""
    fig, ax = plt.subplots(figsize=(8, 4))
    for (job, row), style in zip(pivot.iterrows(), line_styles()):
        ax.plot(row.index, row.values, label=job, **style)
    ax.set_xscale("log", base=2)
    ax.minorticks_off()
    ax.set_xticks(pivot.columns, [str(c) for c in pivot.columns])
    ax.set(xlabel="batch size", ylabel="images / s (median)",
           title=f"Training throughput: {chart_title(summary)}")
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    return save(fig, run_dir / "throughput.png", "throughput")


def curves_chart(curves: pd.DataFrame, summary: pd.DataFrame, run_dir: Path) -> str:
    """Test loss and accuracy per epoch, one line per job (`curves`: tables.curves_table)."""
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for (job, curve), style in zip(curves.groupby(level="job", sort=False), line_styles()):
        curve = curve.droplevel("job")
        loss_ax.plot(curve.index, curve["test_loss"], label=job, **style)
        acc_ax.plot(curve.index, curve["test_accuracy"], label=job, **style)
    for ax, ylabel in ((loss_ax, "test loss"), (acc_ax, "test accuracy")):
        ax.set(xlabel="epoch", ylabel=ylabel)
        ax.xaxis.get_major_locator().set_params(integer=True)
    acc_ax.legend(fontsize="small")
    fig.suptitle(f"Learning curves: {chart_title(summary)}")
    return save(fig, run_dir / "curves.png", "curves")


def accuracy_time_chart(curves: pd.DataFrame, target: float, jobs: pd.DataFrame, run_dir: Path) -> str:
    """Each job's test accuracy against its cumulative training time, with the target."""
    fig, ax = plt.subplots(figsize=(8, 4))
    for (job, curve), style in zip(curves.groupby("job", sort=False), line_styles()):
        ax.plot(curve["epoch_s"].cumsum(), curve["test_accuracy"], label=job, **style)
    ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:.0%}")
    ax.set(xlabel="training time, s (evaluation excluded)", ylabel="test accuracy",
           title=f"Accuracy against time: {chart_title(jobs)}")
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    return save(fig, run_dir / "accuracy_time.png", "accuracy against time")
