"""The report's PNG charts: step-time ratios with their intervals, compile pay-off, throughput and
memory against batch size, learning curves, and accuracy against wall-clock time and steps over seeds. Every chart gives
a framework the same colour and each of its variants the same marker, draws a step trained through a
front end (Keras) with half-filled markers and dash-dotted lines, apart from the native ones, draws
measured values as dots or lines (never bars, so a log axis cannot mislead), and names the model,
device and machine in its title."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from frameworks import REGISTRY, front_end  # noqa: E402
from report.findings import break_even_steps  # noqa: E402

# Each registered framework's colour and its variants' markers, as its registry entry gives them.
FRAMEWORK_COLOURS = {name: entry.colour for name, entry in REGISTRY.items() if entry.colour}
# Frameworks added from outside, by name, in a colour no registered framework has.
OTHER_COLOURS = [hue for hue in ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")
                 if hue not in FRAMEWORK_COLOURS.values()]
OTHER_MARKERS = ["X", "*", "h", "<", ">", "p"]
# A front end's steps (frameworks.front_end): the marker's right half white, lines dash-dotted (dashed: busy).
FRONT_END_MARKER = {"fillstyle": "left", "markerfacecoloralt": "white"}
FRONT_END_LINE = "-."
MIN_EPOCHS = 4  # fewer evaluations per job draw no learning curve: two points make a line, not a curve


def colour(framework: str) -> str:
    """A framework's colour, the same in every chart of every report."""
    if framework in FRAMEWORK_COLOURS:
        return FRAMEWORK_COLOURS[framework]
    return OTHER_COLOURS[sum(map(ord, framework)) % len(OTHER_COLOURS)]


def marker(framework: str, variant: str) -> str:
    """A variant's marker as its framework's registry entry gives it, the same in every chart of every report."""
    markers = REGISTRY[framework].markers if framework in REGISTRY else {}
    if variant in markers:
        return markers[variant]
    return OTHER_MARKERS[sum(map(ord, variant)) % len(OTHER_MARKERS)]


def style(framework: str, variant: str) -> dict:
    """Colour and marker, the marker half-filled for a step trained through a front end."""
    return {"color": colour(framework), "marker": marker(framework, variant),
            **(FRONT_END_MARKER if front_end(framework, variant) else {})}


def line_style(framework: str, variant: str, busy: bool = False) -> str:
    """A job's line style: dashed where it was measured on a busy machine, dash-dotted for a front end's step."""
    return "--" if busy else FRONT_END_LINE if front_end(framework, variant) else "-"


def save(fig, path: Path, alt: str) -> str:
    """Write the chart beside the report and close it; the Markdown that shows it."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"![{alt}]({path.name})"


def machine(env: dict, summary: pd.DataFrame) -> str:
    """The machine a run measured on: its GPU's name on a GPU run, else its CPU model and cores."""
    gpus = [gpu.split(",")[0] for gpu in env.get("gpus") or []]
    if summary["device"].ne("cpu").any() and gpus:
        return " + ".join(dict.fromkeys(gpus))
    return f"{env.get('cpu', '?')}, {env.get('usable_cores', '?')} cores"


def chart_title(summary: pd.DataFrame, env: dict | None = None) -> str:
    """What every chart of a run shows: models, device, machine, precision and data set, e.g.
    "lenet · cpu · AMD EPYC, 2 cores · fp32 · synthetic data"."""
    def values(column: str) -> str:
        return "+".join(summary[column].dropna().astype(str).unique())
    data = {"cifar10": "CIFAR-10", "synthetic": "synthetic data"}
    parts = [values("model"), values("device"), *([machine(env, summary)] if env else []), values("precision"),
             "+".join(data.get(name, name) for name in summary["data"].dropna().unique())]
    return " · ".join(parts)


def _jobs(table: pd.DataFrame) -> pd.DataFrame:
    """`table` with framework and variant read off its job label (tables.label, with what follows), and
    `setting`: the rest of the label, which names what else tells the run's jobs apart but batch size
    (model, device, precision, profile, devices, nodes, input path, as far as they differ)."""
    parts = table["job"].str.extract(r"(?P<framework>[^\s:]+):(?P<variant>[^\s:]+)")
    setting = table["job"].str.replace(r"[^\s:]+:[^\s:]+", "", n=1, regex=True).str.replace(" (busy)", "", regex=False)
    return table.assign(**parts, setting=setting.str.strip())


# --- Speed --------------------------------------------------------------------------------------


def speed_chart(ranking: pd.DataFrame, summary: pd.DataFrame, run_dir: Path, env: dict | None = None) -> str:
    """Per model and batch size, each variant's step-time ratio to the fastest as a dot with its 95%
    interval, the fastest at 1 without one, an undecided row as a hollow dot, and so a busy row, at its
    step time over the fastest's (`ranking`: tables.ranking_table with its ratios)."""
    rows = _jobs(ranking)
    if rows.empty:
        return ""
    # Panels as the ratios are taken: per device, model, device count, batch size and tuning profile.
    rows["profile"] = rows["job"].str.extract(r"\[([^\]]+)\]", expand=False).fillna("")
    keys = [key for key in ("device", "model", "devices", "batch_size") if key in rows] + ["profile", "setting"]
    # A row not compared (busy) is placed by its step time over its group's fastest, as a hollow dot.
    fastest = rows.groupby(keys)["step_ms_median"].transform("min")
    ratio = rows["ratio"] if "ratio" in rows else pd.Series(float("nan"), index=rows.index)
    rows = rows.assign(ratio=ratio.fillna(rows["step_ms_median"] / fastest),
                       ratio_low=rows.get("ratio_low"), ratio_high=rows.get("ratio_high"),
                       verdict=rows.get("verdict", pd.Series("", index=rows.index)).fillna(""))
    groups = list(rows.groupby(keys, sort=False))
    heights = [len(group) + 1 for _, group in groups]
    fig, axes = plt.subplots(len(groups), 1, figsize=(8, 0.32 * sum(heights) + 1.4), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, (key, group) in zip(axes[:, 0], groups):
        where = dict(zip(keys, key))
        model = where["model"]
        group = group.sort_values("ratio", ascending=False)
        positions = np.arange(len(group))
        for position, row in zip(positions, group.itertuples()):
            if row.verdict == "fastest":  # the reference every ratio of its group is taken to
                ax.plot(row.ratio, position, markersize=7, linestyle="none", **style(row.framework, row.variant))
            elif not pd.isna(row.ratio_low):
                ax.errorbar(row.ratio, position, xerr=[[row.ratio - row.ratio_low], [row.ratio_high - row.ratio]],
                            capsize=3, markersize=7, **style(row.framework, row.variant))
            else:
                ax.plot(row.ratio, position, markersize=7, markerfacecolor="none", linestyle="none",
                        **style(row.framework, row.variant))
        ax.axvline(1, color="grey", linewidth=0.8, linestyle="--")
        ax.set_yticks(positions, group["job"].str.replace(f"{model} ", "", regex=False)
                      .str.replace(r" \[[^\]]+\]", "", regex=True))
        ax.set_ylim(-0.7, len(group) - 0.3)
        ax.set_title(", ".join([model, f"batch {where['batch_size']}",
                                *([f"x{where['devices']} devices"] if where.get("devices", 1) > 1 else []),
                                *([where["device"]] if "device" in where else []),
                                *([where["profile"]] if where["profile"] else [])]), fontsize="medium", loc="left")
        highest = group["ratio_high"].fillna(group["ratio"]).max()
        if highest > 8:  # e.g. an eager variant far behind: dots stay apart
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        else:  # at least 0.9 to 1.25: a few percent never fills the axis
            ax.set_xlim(min(0.9, group["ratio_low"].fillna(group["ratio"]).min() * 0.97), max(1.25, highest * 1.05))
    axes[-1, 0].set_xlabel("step time / fastest's (bar: 95% interval; hollow: no interval)")
    fig.suptitle(f"Step time relative to the fastest: {chart_title(summary, env)}", fontsize="medium")
    return save(fig, run_dir / "speed.png", "step-time ratio to the fastest, per variant, with 95% intervals")


def compile_chart(ranking: pd.DataFrame, summary: pd.DataFrame, run_dir: Path, env: dict | None = None) -> str:
    """Compile pay-off: per model and batch size, each variant's cumulative training time against
    the number of steps, compile_s + n x median step time; where a compiled variant's line crosses
    its framework's eager line, its compilation has paid off. Drawn where a framework has an eager
    variant and another one."""
    if ranking.empty:  # no job finished its timed steps
        return ""
    rows = _jobs(ranking[~ranking["job"].str.endswith(" (busy)")]).dropna(subset=["compile_s"])
    panels = ["model", "batch_size", "setting"]  # a compiled variant pays off against its eager one of the same setting
    frameworks = rows.groupby([*panels, "framework"])["variant"].agg(lambda v: "eager" in set(v) and len(set(v)) > 1)
    if not frameworks.any():
        return ""
    groups = [(key, group) for key, group in rows.groupby(panels, sort=False) if frameworks.loc[key].any()]
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4.2), squeeze=False)
    for ax, ((model, batch, setting), group) in zip(axes[0], groups):
        steps = np.linspace(0, 2 * max([50, *payoff_steps(group)]), 200)
        for row in group.itertuples():
            cumulative = row.compile_s + steps * row.step_ms_median / 1000
            ax.plot(steps, cumulative, linestyle="-" if row.variant == "eager" else "--", markevery=40, markersize=6,
                    label=f"{row.framework}:{row.variant}", **style(row.framework, row.variant))
        ax.set(xlabel="training steps after the first", ylabel="cumulative time, s (compile_s + n x step)",
               title=f"{model}, batch {batch}" + (f" ({setting})" if setting else ""))
        ax.set_xlim(0, steps[-1])
        ax.set_ylim(bottom=0)
    axes[0, -1].legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(f"Compile pay-off: {chart_title(summary, env)}", fontsize="medium")
    return save(fig, run_dir / "compile.png", "cumulative training time against steps, per variant")


def payoff_steps(group: pd.DataFrame) -> list[int]:
    """The steps after which each compiled variant of `group` (one model and batch size) overtakes
    its framework's eager variant, for those that ever do."""
    steps = []
    for _, rows in group.groupby("framework"):
        eager = rows[rows["variant"] == "eager"]
        for row in rows[rows["variant"] != "eager"].itertuples() if len(eager) else []:
            steps.append(break_even_steps(row.compile_s, row.step_ms_median, eager["compile_s"].iloc[0],
                                          eager["step_ms_median"].iloc[0]))
    return [step for step in steps if step is not None]


# --- Against batch size -------------------------------------------------------------------------


def _against_batch_size(ax, ranking: pd.DataFrame, column: str) -> None:
    rows = _jobs(ranking)
    for job, group in rows.groupby("job", sort=False):
        first = group.iloc[0]
        ax.plot(group["batch_size"], group[column], label=job,
                linestyle=line_style(first["framework"], first["variant"], job.endswith(" (busy)")),
                **style(first["framework"], first["variant"]))
    sizes = sorted(rows["batch_size"].unique())
    ax.set_xscale("log", base=2)
    ax.minorticks_off()
    ax.set_xticks(sizes, [str(size) for size in sizes])
    ax.set_xlabel("batch size")


def throughput_chart(ranking: pd.DataFrame, summary: pd.DataFrame, run_dir: Path, env: dict | None = None) -> str:
    """Images/s against batch size, one line per job (dashed: measured on a busy machine)."""
    fig, ax = plt.subplots(figsize=(8, 4))
    _against_batch_size(ax, ranking.assign(job=ranking["job"].str.replace(r" bs\d+$", "", regex=True)), "images_per_s")
    ax.set(ylabel="images / s (median)", title=f"Training throughput: {chart_title(summary, env)}")
    ax.title.set_fontsize("medium")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    return save(fig, run_dir / "throughput.png", "throughput against batch size")


def memory_chart(ranking: pd.DataFrame, summary: pd.DataFrame, run_dir: Path, env: dict | None = None) -> str:
    """Peak memory against batch size, one line per job: device memory where every job reports it,
    else the process's peak RSS."""
    device = "peak_device_mb" in ranking and ranking["peak_device_mb"].notna().all()
    column = "peak_device_mb" if device else "peak_rss_mb"
    fig, ax = plt.subplots(figsize=(8, 4))
    _against_batch_size(ax, ranking, column)
    ax.set(ylabel=f"{'peak device memory' if device else 'peak RSS'}, MiB ({column})",
           title=f"Memory: {chart_title(summary, env)}")
    ax.title.set_fontsize("medium")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    return save(fig, run_dir / "memory.png", "peak memory against batch size")


# --- Accuracy -----------------------------------------------------------------------------------


def binomial_band(accuracy: pd.Series, test_images: int | None, z: float) -> tuple[pd.Series, pd.Series]:
    """The z-sigma sampling band of an accuracy measured on `test_images` images (none when unknown)."""
    if not test_images:
        return accuracy, accuracy
    half = z * np.sqrt(accuracy * (1 - accuracy) / test_images)
    return accuracy - half, accuracy + half


def curves_chart(curves: pd.DataFrame, summary: pd.DataFrame, run_dir: Path, env: dict | None = None,
                 test_images: int | None = None, z: float = 1.96) -> str:
    """Test loss and accuracy per epoch, one line per job, the accuracy with the band its test set's
    sampling error allows (`curves`: tables.curves_table); nothing with fewer than MIN_EPOCHS points."""
    if curves.groupby(level="job", sort=False).size().max() < MIN_EPOCHS:
        return ""
    jobs = _jobs(curves.reset_index())
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for job, curve in jobs.groupby("job", sort=False):
        first = curve.iloc[0]
        drawn = {"label": job, "linestyle": line_style(first["framework"], first["variant"]),
                 **style(first["framework"], first["variant"])}
        loss_ax.plot(curve["epoch"], curve["test_loss"], **drawn)
        acc_ax.plot(curve["epoch"], curve["test_accuracy"], **drawn)
        low, high = binomial_band(curve["test_accuracy"], test_images, z)
        acc_ax.fill_between(curve["epoch"], low, high, color=colour(first["framework"]), alpha=0.15, linewidth=0)
    for ax, ylabel in ((loss_ax, "test loss"), (acc_ax, "test accuracy")):
        ax.set(xlabel="epoch", ylabel=ylabel)
    band = f"; band: 95% binomial interval over {test_images:,} test images" if test_images else ""
    acc_ax.set_title(f"test accuracy{band}", fontsize="small")
    acc_ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(f"Learning curves: {chart_title(summary, env)}", fontsize="medium")
    return save(fig, run_dir / "curves.png", "learning curves")


def accuracy_time_chart(bands: pd.DataFrame, target: float, summary: pd.DataFrame, run_dir: Path,
                        env: dict | None = None) -> str:
    """Test accuracy against wall-clock seconds (training and evaluation, as MLPerf counts time to quality) and
    against steps: per framework:variant the median over seeds as a line and their least to greatest accuracy as a
    band (`bands`: seeds.bands, from the seeds still training at each evaluation), with the target."""
    fig, (time_ax, step_ax) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for label, curve in bands.groupby("label", sort=False):
        framework, variant = curve["framework"].iloc[0], curve["variant"].iloc[0]
        seeds = int(curve["seeds"].max())
        drawn = {"label": f"{label} ({seeds} seed{'s' if seeds > 1 else ''})", "markersize": 5,
                 "linestyle": line_style(framework, variant), **style(framework, variant)}
        for ax, x in ((time_ax, curve["wall_s"]), (step_ax, curve["step"])):
            ax.plot(x, curve["accuracy"], **drawn)
            ax.fill_between(x, curve["low"], curve["high"], color=colour(framework), alpha=0.15, linewidth=0)
    for ax in (time_ax, step_ax):
        ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:.0%}")
    time_ax.set(xlabel="wall-clock seconds (training and evaluation), median over seeds", ylabel="test accuracy")
    step_ax.set(xlabel="training steps")
    step_ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(f"Accuracy over seeds (line: median; band: least to greatest): {chart_title(summary, env)}",
                 fontsize="medium")
    return save(fig, run_dir / "accuracy_time.png", "accuracy against wall-clock time and steps, median and range "
                "over seeds")
