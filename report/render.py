"""Renders `report.md` (and its PNG charts) from a run folder's CSV files and env.json alone:
what ran where, parity verdict, speed ranking, batch-size sweep, learning curves, failures."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks.harness.contention import BUSY_THRESHOLD  # noqa: E402
from benchmarks.harness.efficiency import step_flops  # noqa: E402
from benchmarks.checks.verdicts import REFERENCE, failures, outliers, parity_summary  # noqa: E402
from benchmarks.harness.profiling import CATEGORIES, STEPS as PROFILED_STEPS  # noqa: E402
from benchmarks.harness.results import latest_attempts, measured, read_table  # noqa: E402
from report.findings import findings_section, read_parity  # noqa: E402


def _markdown(table: pd.DataFrame) -> str:
    return table.astype(object).where(table.notna(), None).to_markdown(index=False, floatfmt=".4g",
                                                                         missingval="")  # an empty cell, not "nan"


def _devices(table: pd.DataFrame) -> pd.Series:
    """Each row's data-parallel device count (1 in tables written before there were several)."""
    return table["devices"].fillna(1).astype(int) if "devices" in table else pd.Series(1, index=table.index)


def _label(table: pd.DataFrame) -> pd.Series:
    """framework:variant, after the model's name when the run compared several models, after the
    device when it holds several devices (runs merged by `python -m report RUN RUN --out DIR`),
    and with "xN" after it when it trained data-parallel on N devices."""
    label = table["framework"] + ":" + table["variant"]
    label = table["model"] + " " + label if table["model"].nunique() > 1 else label
    label = table["device"] + " " + label if "device" in table and table["device"].nunique() > 1 else label
    return label + _devices(table).map(lambda n: f" x{n}" if n > 1 else "")


def _latest(table: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Rows of the attempt that produced each job's final summary row."""
    keys = summary[["job_id", "attempt"]]
    return table.merge(keys, on=["job_id", "attempt"])


# --- Sections -----------------------------------------------------------------------------------


def training_line(settings: dict) -> str:
    """The run's optimizer in words, e.g. 'SGD lr 0.4, Nesterov momentum 0.9, ...'."""
    momentum = f"{'Nesterov ' if settings.get('nesterov') else ''}momentum {settings.get('momentum')}"
    schedule = settings.get("lr_schedule", "constant")
    if schedule == "onecycle":
        warmup = settings.get("warmup_fraction", 0)
        schedule = f"one-cycle (linear up over the first {warmup:.1%} of the steps, then down)"
    parts = [f"SGD lr {settings.get('learning_rate')} ({schedule})", momentum,
             f"L2 weight decay {settings.get('weight_decay')}", f"label smoothing {settings.get('label_smoothing')}"]
    recipe = settings.get("recipe")
    return ", ".join(parts) + (f"; recipe `{recipe}`" if recipe else "")


def check_text(check: dict) -> str:
    if check.get("others_cpu") is None:
        return "not measured on this platform"
    verdict = "**busy**" if check["others_cpu"] > BUSY_THRESHOLD else "quiet"
    busiest = ", ".join(f"{row['name']} {row['cpu_percent']:.0f}%" for row in check.get("top", [])[:3])
    return f"{verdict}, other processes took {check['others_cpu']:.1%} of the cores" + (
        f" (busiest: {busiest})" if busiest and verdict != "quiet" else "")


def cpu_features_text(env: dict) -> str:
    """The widest vector instruction sets, which decide the kernels: " (AVX2, FMA)"; older runs did not record them."""
    features = env.get("cpu_features")
    if features is None:
        return ""
    return f" ({', '.join(feature.upper() for feature in features if feature not in ('sse4_2', 'avx')) or 'no AVX2'})"


def machine_section(env: dict, summary: pd.DataFrame) -> str:
    packages = ", ".join(f"{name} {version}" for name, version in env.get("packages", {}).items() if version)
    data = env.get("data", "?")
    data_line = (f"**CIFAR-10** (`{env.get('data_source')}`)" if data == "cifar10" else
                 "**SYNTHETIC** (timings are valid; accuracies are not CIFAR-10's)")
    lines = [
        f"- Command: `{env.get('command', '?')}`",
        f"- Data: {data_line}",
        *([f"- Training: {training_line(env['training'])}"] if env.get("training") else []),
        f"- Augmentation: {augmentation_text(summary)}",
        f"- CPU: {env.get('cpu', '?')}{cpu_features_text(env)}, {env.get('usable_cores', '?')} usable cores; threads "
        f"per worker: {env.get('threads', '?')}; memory {env.get('memory_gb', '?')} GB"
        f"{'; transparent huge pages: ' + env['transparent_hugepages'] if env.get('transparent_hugepages') else ''}",
        f"- GPU: {'; '.join(env.get('gpus') or []) or 'none'}",
        *([f"- Machine check before the run: {check_text(env['machine_check'])}"] if env.get("machine_check") else []),
        f"- Python {env.get('python', '?')} on {env.get('platform', '?')}; git commit `{env.get('git_commit')}`",
        f"- Packages: {packages}",
    ]
    return "\n".join(lines)


AUGMENTATIONS = {"crop-flip": "4-pixel reflect padding, a random 32x32 crop and a random horizontal flip per image, "
                              "drawn from the seed and epoch"}


def augmentation_text(summary: pd.DataFrame) -> str:
    """Each augmentation the jobs used and its median cost per job. Tables written before the
    option existed have no `augment` column: their jobs were not augmented."""
    if "augment" not in summary or summary["augment"].isna().all():
        return "none"
    parts = []
    for augment, rows in summary.groupby("augment", sort=False):
        if augment == "none":
            parts.append("none")
            continue
        cost = rows["augment_s"].dropna()
        spent = (f", {cost.median():.3g} s per job (median of {len(cost)}, `augment_s`), spent outside every timed "
                 f"window and epoch time" if len(cost) else "")
        parts.append(f"**{augment}** ({AUGMENTATIONS.get(augment, augment)}){spent}")
    return "; ".join(parts)


def parity_section(run_dir: Path) -> str:
    path = run_dir / "parity.csv"
    if not path.exists():
        return "Parity was not checked in this run (`--no-parity`, or no framework could run)."
    table = pd.read_csv(path, keep_default_na=False, na_values={"step": [""], "error": [""], "devices": [""]})
    if not {"model", "precision", "step", "asserted"} <= set(table.columns):  # written before per-step checks
        verdict = "passed" if table["passed"].astype(str).eq("True").all() else "FAILED"
        return (f"This run's `parity.csv` comes from an earlier version of the checks (pairwise forward, gradients "
                f"and a 20-step trajectory in float32), which **{verdict}**. `python -m benchmarks.parity` runs "
                f"today's checks.")
    table["step"] = table["step"].astype("Int64")
    failed = failures(table)
    verdict = ("**Passed**: every framework variant computes the same function, gradients and training step "
               "as every other and as the float64 reference, within tolerance." if not failed else
               f"**FAILED** in {len(failed)} of {int(table['asserted'].sum())} asserted comparisons: see the "
               f"pairs below before trusting their comparison.")
    round_trip = table[table["check"] == "round trip"]
    exact = "exact" if round_trip["passed"].all() else "NOT exact"
    lines = [verdict, f"Training state (weights, BatchNorm statistics, momentum buffers, step count) round trips "
                      f"through every adapter: {exact}. `python -m benchmarks.parity` reruns these checks."]
    notes = [f"- failed: {line}" for line in failed[:20]] + [f"- tolerated outlier: {line}" for line in outliers(table)]
    if notes:
        lines.append("\n".join(notes))
    table["devices"] = table["devices"].fillna(1).astype(int) if "devices" in table else 1
    for (model, precision, devices), rows in table[table["check"] != "round trip"].groupby(
            ["model", "precision", "devices"], sort=False):
        lines += _parity_tables(model, precision, rows, devices)
    return "\n\n".join(lines)


def _parity_tables(model: str, precision: str, pairs: pd.DataFrame, devices: int = 1) -> list[str]:
    """Between variants, and each against the float64 reference, for one model and precision
    (and, for the data-parallel check, `devices` devices: variants named "xN" there)."""
    tolerances = ", ".join(f"{check} {value:g}" for check, value in
                           pairs.groupby("check", sort=False)["tolerance"].first().items())
    steps = int(pairs.loc[pairs["check"] == "per-step", "step"].max()) + 1
    settings = pairs.loc[pairs["check"] == "per-step", "setting"].nunique()
    unasserted = sorted(set(pairs.loc[~pairs["asserted"] & (pairs["check"] != "free-running"), "check"]))
    worst = parity_summary(pairs)
    between = worst[~worst.index.str.endswith(f" vs {REFERENCE}")]
    against = worst[worst.index.str.endswith(f" vs {REFERENCE}")].rename(index=lambda pair: pair.split(" vs ")[0])
    heading = {"fp64": "in float64, where no rounding can flip a ReLU or max-pool decision (the proof of the same "
                       "computation)", "fp32": "in float32, as the benchmark runs"}.get(precision, f"in {precision}")
    heading = f"{model}, {heading}"
    if devices > 1:
        heading = (f"{model}, data-parallel training on {devices} devices (`xN`) against one device on the global "
                   f"batch, in float32")
    return [
        f"**{heading}.** Largest relative error per pair and check (tolerances: {tolerances}). *Per-step*: one "
        f"step from the common state, worst over {settings} optimizer setting(s) and {steps} steps, with the step, "
        f"and the one-step outlier tolerated per pair and setting, if any; *free-running*: {steps} steps without "
        f"resets, reported, not asserted, with the first step at which the losses part (README, *Parity*)."
        + (f" Reported, not asserted here: the gradient-derived parts of {', '.join(unasserted)} (README)."
           if unasserted else ""),
        between.reset_index().to_markdown(index=False, disable_numparse=True),
        "Error against the float64 reference, per variant:",
        against.reset_index().rename(columns={"pair": "variant"}).to_markdown(index=False, disable_numparse=True),
    ]


def _any_true(values: pd.Series) -> bool:
    return bool(values.astype(str).eq("True").any())  # CSV booleans read back as bool, or object with NaN


def ranking_table(summary: pd.DataFrame, peak_gflops: float | None = None) -> pd.DataFrame:
    """Jobs that measured steps, repeats merged (median of medians, spread across repeats),
    ranked by throughput, with the ratio to the fastest of the same model at the same batch size
    on the same device."""
    ok = measured(summary).copy()
    if ok.empty:
        return ok
    ok["job"] = _label(ok)
    ok["devices"] = _devices(ok)
    grouped = ok.groupby(["job", "batch_size"], sort=False)
    table = grouped.agg(
        model=("model", "first"), devices=("devices", "first"),
        **({"device": ("device", "first")} if "device" in ok else {}),
        step_ms=("step_ms_median", "median"), iqr_ms=("step_ms_iqr", "median"),
        p5_ms=("step_ms_p5", "median"),
        p95_ms=("step_ms_p95", "median"), windows=("windows", "sum"), repeats=("repeat", "nunique"),
        images_per_s=("images_per_s", "median"), compile_s=("compile_s", "median"),
        recompiles=("recompiles", "max"), peak_rss_mb=("peak_rss_mb", "max"),
        framework_rss_mb=("baseline_rss_mb", "max"), device_mb=("peak_device_mb", "max"),
        accuracy=("test_accuracy", "median"),
        **({"input": ("input", "first"), "copy_ms": ("copy_ms", "median")} if "input" in ok else {}),
        **({"busy": ("busy", _any_true), "contention": ("contention", "median")} if "busy" in ok else {}),
    ).reset_index()
    spread = grouped["step_ms_median"].agg(lambda s: (s.max() - s.min()) / s.median() if len(s) > 1 else float("nan"))
    table["repeat_spread"] = spread.to_numpy()
    table["framework_rss_mb"] = table["peak_rss_mb"] - table["framework_rss_mb"]
    busy = table["busy"] if "busy" in table else pd.Series(False, index=table.index)
    clean = table["images_per_s"].where(~busy)  # a row measured on a busy machine is not compared
    same = [table[key] for key in ("device", "model", "devices", "batch_size") if key in table]  # same work per step
    table["vs_fastest"] = clean / clean.groupby(same).transform("max")
    table["gflops"] = [step_flops(model, int(batch) * devices) / (ms / 1000) / 1e9 for model, batch, devices, ms
                       in zip(table["model"], table["batch_size"], table["devices"], table["step_ms"])]
    if peak_gflops:  # measured on one device: GPUs add theirs, CPU host devices share the cores
        gpus = table["devices"].where(table["device"] == "cuda", 1) if "device" in table else 1
        table["of_peak"] = table["gflops"] / (peak_gflops * gpus)
    table["images_per_s"] = table["images_per_s"].round().astype(int)
    table["job"] = table["job"] + busy.map({True: " (busy)", False: ""})
    order = [key for key in ("device", "model", "devices", "batch_size") if key in table]
    table = table.assign(_busy=busy).sort_values([*order, "_busy", "images_per_s"],
                                                 ascending=[True] * len(order) + [True, False])
    several_devices = "device" in table and table["device"].nunique() > 1
    data_parallel = (table["devices"] > 1).any()
    columns = ["job", *(["device"] if several_devices else []), "model", *(["devices"] if data_parallel else []),
               "batch_size", "images_per_s", "vs_fastest", "gflops", "of_peak", "step_ms", "iqr_ms", "p5_ms", "p95_ms",
               "windows", "repeats", "repeat_spread", "compile_s", "recompiles", "peak_rss_mb", "framework_rss_mb",
               "device_mb", "accuracy", "input", "copy_ms", "contention"]
    table = table[[column for column in columns if column in table]]  # older runs lack the input path
    return table.dropna(axis="columns", how="all")  # e.g. device memory on CPU, accuracy of timing-only runs


def efficiency_note(ranking: pd.DataFrame, env: dict) -> str:
    """How far the best row is from the machine's measured peak, and the FLOP convention."""
    text = (" `gflops`: training FLOPs per step (2 per multiply-add of the convolutions and dense layers, three "
            "forward passes' worth per step) over the median step time.")
    clean = ranking[~ranking["job"].str.endswith(" (busy)")]
    if not env.get("peak_gflops") or clean.empty:
        return text
    best = clean.loc[clean["gflops"].idxmax()]
    return (text + f" The machine's measured peak is {env['peak_gflops']:,.0f} GFLOP/s ({env.get('peak_how')}); "
            f"`of_peak` is the share of it. The most efficient row, {best['job']} ({best['model']}, batch "
            f"{best['batch_size']}), reaches {best['gflops']:,.1f} GFLOP/s, {best['gflops'] / env['peak_gflops']:.0%} "
            f"of the peak.")


def busy_note(ranking: pd.DataFrame) -> str:
    busy = ranking[ranking["job"].str.endswith(" (busy)")]
    if busy.empty:
        return ""
    return (f"\n\n**{len(busy)} row(s) marked (busy) were measured on a busy machine**: other processes took more "
            f"than {BUSY_THRESHOLD:.0%} of the worker's cores in at least half of their timed windows (`contention` "
            f"is the median share). Their speed says more about the machine than about the framework: they are "
            f"listed after the clean rows and not compared (`vs_fastest` left empty). Rerun them on a quiet "
            f"machine (`--require-quiet` refuses to start on a busy one).")


def line_styles() -> itertools.cycle:
    """Line charts tell their jobs apart by marker and dash as well as by colour."""
    return itertools.cycle([{"marker": marker, "linestyle": dash}
                            for dash, marker in zip(itertools.cycle(["-", "--", ":", "-."]), "osD^v<>p*hX")])


def chart_title(summary: pd.DataFrame) -> str:
    """What every chart of a run shows: models, device, precision and data set, e.g.
    "lenet · cpu · fp32 · synthetic data"."""
    def values(column: str) -> str:
        return "+".join(summary[column].dropna().astype(str).unique()) if column in summary else "?"
    data = {"cifar10": "CIFAR-10", "synthetic": "synthetic data"}
    return " · ".join([values("model"), values("device"), values("precision"),
                       "+".join(data.get(name, name) for name in summary["data"].dropna().unique())
                       if "data" in summary else "?"])


def speed_whiskers(ranking: pd.DataFrame, summary: pd.DataFrame) -> tuple[pd.Series, pd.Series, str]:
    """The images/s range a rerun would show, per ranked row: the slowest and the fastest process
    where the job ran in several (repeats), else the one process's p5-p95 window step times; and
    the words for it."""
    ok = measured(summary)
    processes = (ok.assign(job=_label(ok)).groupby(["job", "batch_size"])["images_per_s"]
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
    fig.tight_layout()
    fig.savefig(run_dir / "speed.png", dpi=120)
    plt.close(fig)
    return "![speed, memory and compile time per job](speed.png)"


def scaling_table(ranking: pd.DataFrame) -> pd.DataFrame:
    """Per job and per-device batch size: images/s on each device count, and the scaling at N
    devices, images/s at N / (N x images/s at 1) (1.0: each device adds its whole throughput);
    `busy` where any of its rows was measured on a busy machine."""
    if "devices" not in ranking:
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


def scaling_section(ranking: pd.DataFrame, summary: pd.DataFrame, env: dict) -> str:
    table = scaling_table(ranking)
    if table.empty:
        return ""
    caveat = ""
    if summary["device"].eq("cpu").all():
        caveat = (f" **On this CPU the devices are not extra hardware:** every replica shares the same "
                  f"{env.get('threads', 'few')} cores (host devices in JAX, logical devices in TensorFlow, one "
                  f"process per device with its share of the cores in PyTorch), so these ratios measure what each "
                  f"engine's replication and gradient exchange cost, not how it speeds up; scaling is measured on a "
                  f"machine with several GPUs.")
    return ("## Scaling across devices\n\nData-parallel training with the batch size per device fixed (the global "
            "batch grows with the devices), through each framework's own engine: `scaling xN` is images/s on N "
            "devices over N times images/s on one. BatchNorm is synchronised across replicas, so N devices compute "
            f"what one device computes on the global batch (parity above).{caveat}"
            f"{' Rows marked busy rest on timings taken while other processes used the cores.' if 'busy' in table else ''}"
            f"\n\n{_markdown(table)}\n")


def throughput_table(ranking: pd.DataFrame) -> pd.DataFrame:
    """Images/s per job (rows) and batch size (columns)."""
    return ranking.pivot(index="job", columns="batch_size", values="images_per_s")


def sweep_section(table: pd.DataFrame, summary: pd.DataFrame, run_dir: Path) -> str:
    if table["batch_size"].nunique() < 2:
        return ""
    pivot = throughput_table(table)
    fig, ax = plt.subplots(figsize=(8, 4))
    for (job, row), style in zip(pivot.iterrows(), line_styles()):
        ax.plot(row.index, row.values, label=job, **style)
    ax.set_xscale("log", base=2)
    ax.minorticks_off()
    ax.set_xticks(pivot.columns, [str(c) for c in pivot.columns])
    ax.set(xlabel="batch size", ylabel="images / s (median)",
           title=f"Training throughput: {chart_title(summary)}")
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    fig.savefig(run_dir / "throughput.png", dpi=120)
    plt.close(fig)
    return ("## Throughput vs batch size\n\nImages per second (median of timed windows).\n\n"
            f"{throughput_markdown(pivot)}\n\n![throughput](throughput.png)\n")


def throughput_markdown(pivot: pd.DataFrame) -> str:
    return pivot.rename(columns=lambda c: f"batch {c}").reset_index().to_markdown(index=False, floatfmt=".0f")


def curves_table(epochs: pd.DataFrame) -> pd.DataFrame:
    """Per job and epoch: the median over repeats of its losses, accuracy and epoch time."""
    epochs = epochs.assign(job=_label(epochs) + " bs" + epochs["batch_size"].astype(str))
    columns = ["train_loss", "test_loss", "test_accuracy", "epoch_s"]
    return epochs.groupby(["job", "epoch"], sort=False)[columns].median()


def epochs_section(epochs: pd.DataFrame, summary: pd.DataFrame, run_dir: Path) -> str:
    if epochs.empty:
        return ""
    preparation_timed = "augment_s" not in summary  # older tables counted the shuffling into the epoch time
    curves = curves_table(epochs)
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for (job, curve), style in zip(curves.groupby(level="job", sort=False), line_styles()):
        curve = curve.droplevel("job")
        loss_ax.plot(curve.index, curve["test_loss"], label=job, **style)
        acc_ax.plot(curve.index, curve["test_accuracy"], label=job, **style)
    for ax, ylabel in ((loss_ax, "test loss"), (acc_ax, "test accuracy")):
        ax.set(xlabel="epoch", ylabel=ylabel)
        ax.xaxis.get_major_locator().set_params(integer=True)
    acc_ax.legend(fontsize="small")
    fig.suptitle(f"Learning curves: {chart_title(summary[summary['job_id'].isin(epochs['job_id'])])}")
    fig.tight_layout()
    fig.savefig(run_dir / "curves.png", dpi=120)
    plt.close(fig)
    return ("## Learning curves\n\nSame initial weights and batches in every framework: the curves should "
            "overlap. Epoch time counts the epoch's training steps, the first (compile) step in epoch 1 included"
            f"{', and the shuffling of its batches' if preparation_timed else ''}.\n\n"
            f"{_markdown(curves.reset_index())}\n\n![curves](curves.png)\n")


def time_to_accuracy_section(summary: pd.DataFrame, epochs: pd.DataFrame, run_dir: Path) -> str:
    """Jobs ranked by training time to the target accuracy (those that missed it last, with their
    best), and every job's test accuracy against its cumulative training time in one chart."""
    if "target_accuracy" not in summary or summary["target_accuracy"].isna().all():
        return ""
    jobs = summary[summary["target_accuracy"].notna()].copy()
    jobs["job"] = _label(jobs) + " bs" + jobs["batch_size"].astype(str) + " r" + jobs["repeat"].astype(str)
    jobs["reached"] = jobs["target_reached"].astype(str).eq("True")
    jobs = jobs.sort_values(["reached", "train_s_to_target", "best_accuracy"], ascending=[False, True, False])
    table = jobs[["job", "reached", "epochs_to_target", "steps_to_target", "train_s_to_target", "wall_s_to_target",
                  "best_accuracy"]]
    target = jobs["target_accuracy"].iloc[0]
    curves = epochs.merge(jobs[["job_id", "attempt", "job"]], on=["job_id", "attempt"]).sort_values("epoch")
    fig, ax = plt.subplots(figsize=(8, 4))
    for (job, curve), style in zip(curves.groupby("job", sort=False), line_styles()):
        ax.plot(curve["epoch_s"].cumsum(), curve["test_accuracy"], label=job, **style)
    ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:.0%}")
    ax.set(xlabel="training time, s (evaluation excluded)", ylabel="test accuracy",
           title=f"Accuracy against time: {chart_title(jobs)}")
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    fig.savefig(run_dir / "accuracy_time.png", dpi=120)
    plt.close(fig)
    fractional = "step" in curves and not curves["epoch"].astype(float).apply(float.is_integer).all()
    when = f"every {int(curves['step'].min())} training steps" if fractional else "after every epoch"  # --eval-every
    return (f"## Time to {target:.1%} test accuracy\n\nEvaluated {when}; a job stops at the first "
            f"evaluation that reaches the target. `train_s_to_target` counts training only (compilation included), "
            f"`wall_s_to_target` adds the evaluations, as MLPerf counts time to quality.\n\n{_markdown(table)}\n\n"
            f"![accuracy against time](accuracy_time.png)\n")


TRACE_VIEWERS = {"pytorch": "`trace.json`: chrome://tracing or ui.perfetto.dev",
                 "tensorflow": "`plugins/profile/*/*.xplane.pb`: TensorBoard's profile plugin or xprof; "
                               "`train_step.hlo.txt` (tensorflow:xla): the compiled step",
                 "jax": "`plugins/profile/*/perfetto_trace.json.gz`: ui.perfetto.dev; `*.xplane.pb`: TensorBoard or "
                        "xprof; `train_step.hlo.txt`: the compiled step the op names refer to"}


def profile_section(run_dir: Path, summary: pd.DataFrame, top: int = 8) -> str:
    """With --profile: per job, the share of self time in each category, and its largest operations."""
    ops = _latest(read_table(run_dir, "profile"), summary)
    if ops.empty:
        return ""
    ops = ops[ops["repeat"] == ops["repeat"].min()].copy()  # one process's profile per job
    ops["job"] = _label(ops) + " bs" + ops["batch_size"].astype(str)
    ops["job"] = pd.Categorical(ops["job"], categories=ops["job"].unique())  # in the run's order
    shares = ops.pivot_table(index="job", columns="category", values="share", aggfunc="sum", observed=True)
    shares = shares.reindex(columns=[category for category in CATEGORIES if category in shares.columns])
    table = (100 * shares).round(1).fillna(0.0)
    table.insert(0, "profiled_ms", ops.groupby("job", observed=True)["self_ms"].sum().round(1))
    largest = ops.sort_values(["job", "self_ms"], ascending=[True, False]).groupby("job", observed=True).head(top)
    largest = largest.assign(share=(100 * largest["share"]).round(1), self_ms=largest["self_ms"].round(2),
                             detail=largest["detail"].fillna("").str.slice(0, 90))
    xla = summary["framework"].eq("jax") | summary["variant"].eq("xla")
    threads = summary.loc[xla & summary["threads"].gt(1), "job_id"]
    caveat = (" XLA runs its own convolutions asynchronously when it has more than one thread, and their events end "
              "at dispatch: the XLA rows under-count them (profile with `--threads 1` to attribute them)."
              if ops["job_id"].isin(threads).any() else "")
    viewers = "; ".join(f"{name}: {text}" for name, text in TRACE_VIEWERS.items() if name in set(ops["framework"]))
    return (f"## Where the time goes (profile)\n\nEach job ran {PROFILED_STEPS} more training steps after its timed "
            f"ones, under its framework's own profiler. Self time is the time spent in an operation itself, not in "
            f"the operations it called, summed over the threads that ran it; `profiled_ms` is its sum per step. It "
            f"can exceed the step time on several cores, and the profiler adds its own cost: compare the shares, not "
            f"the sums. Shares in % per category, each operation sorted by its framework's name for it (rules in "
            f"`benchmarks/profiling.py`; `data transfer` counts copies and layout transposes).{caveat}\n\n"
            f"{_markdown(table.reset_index())}\n\nThe {top} largest operations of each job (self ms per step; "
            f"`detail`: for XLA, the HLO instruction's opcode, shape, the JAX op_name or TensorFlow op it came "
            f"from, and JAX's Python call stack):\n\n"
            f"{_markdown(largest[['job', 'op', 'category', 'self_ms', 'share', 'detail']])}\n\n"
            f"Traces, per job in `profiles/<job_id>/`: {viewers}.\n")


def problems_section(summary: pd.DataFrame) -> str:
    problems = summary[summary["status"] != "ok"]
    recompiled = summary[summary["recompiles"].fillna(0) > 0]
    parts = []
    if not problems.empty:
        columns = ["job", "batch_size", "repeat", "status", "diverged_step", "error"]
        shown = problems.assign(job=_label(problems))[columns]
        shown = shown.astype({"diverged_step": "Int64"}).astype(str).replace({"<NA>": "", "nan": ""})
        parts.append(f"Jobs that did not finish (failed, skipped, diverged or interrupted):\n\n{_markdown(shown)}")
    if not recompiled.empty:
        shown = recompiled.assign(job=_label(recompiled))[["job", "batch_size", "repeat", "recompiles"]]
        parts.append(f"**Recompiled after warm-up** (their step times include compilation):\n\n{_markdown(shown)}")
    return "## Failed, skipped and diverged jobs\n\n" + "\n\n".join(parts) + "\n" if parts else ""


METHOD = """\
## How this was measured

Each job ran in a fresh process that imported one framework, pinned to the threads shown.
All frameworks started from the same NumPy-drawn weights and were fed the same batches,
prepared (shuffled, and augmented if shown above) by one NumPy pipeline outside every timed window.
The first training step is timed alone and reported as compile time; the next warm-up steps
are untimed; then every window of steps ends with a device sync before its clock stops.
Step time is the median over windows (IQR and p5/p95 show the spread); images/s is batch size
over the median step time. {turns}, one timed window each, so the machine's slow and fast spells
fell on all of them alike; the turns of the others count in no job's times. With repeats, the
median of the per-process medians is shown and `repeat_spread` is (max - min) / median across them.
`framework_rss_mb` is peak RSS minus the RSS after loading the data set, before importing the
framework.
"""
TURNS = {  # by env.json's "interleave"; runs made before it took turns by repeats
    "jobs": "Every job of one model and batch size (a data-parallel job: its repeats) ran at once, the "
            "processes taking turns",
    "repeats": "The repeats of a job ran at once, taking turns",
    None: "Processes that ran at once (each run's env.json says which: `interleave`) took turns",  # merged runs
}


def method_section(env: dict, run_dir: Path) -> str:
    plan = run_dir / "plan.json"  # runs of the first version with --interleave recorded it there only
    planned = json.loads(plan.read_text()).get("interleave") if plan.exists() else None
    return METHOD.format(turns=TURNS[None if "merged" in env else env.get("interleave", planned or "repeats")])


def _read_env(run_dir: Path) -> dict:
    path = run_dir / "env.json"
    return json.loads(path.read_text()) if path.exists() else {}


def write_report(run_dir: Path) -> Path:
    """report.md of a run folder, or of runs merged into one (their env.json names them, and each
    keeps its env.json and parity.csv in a folder named after it)."""
    env = _read_env(run_dir)
    summary = latest_attempts(read_table(run_dir, "summary"))
    epochs = _latest(read_table(run_dir, "epochs"), summary)
    ranking = ranking_table(summary, env.get("peak_gflops"))
    run_id = summary["run_id"].iloc[0] if len(summary) else run_dir.name
    runs = {run: run_dir / run for run in env["merged"]} if "merged" in env else {run_id: run_dir}
    findings = findings_section(summary, read_table(run_dir, "steps"), epochs,
                                {run: read_parity(folder) for run, folder in runs.items()})
    if "merged" in env:
        machines = [f"### Run {run}\n\n{machine_section(_read_env(folder), summary[summary['run_id'] == run])}"
                    for run, folder in runs.items()]
        parities = [f"### Run {run}\n\n{parity_section(folder)}" for run, folder in runs.items()]
        sections = [f"# Framework comparison: runs {', '.join(runs)}\n", *machines, findings, "## Parity\n", *parities]
    else:
        sections = [f"# Framework comparison: run {run_id}\n", machine_section(env, summary), findings,
                    "## Parity\n", parity_section(run_dir)]
    if ranking.empty:
        sections.append("## Speed\n\nNo job finished its timed steps.")
    else:
        device = " on the same device" if "merged" in env else ""
        sections.append("## Speed, ranked by throughput\n\nRatio `vs_fastest` is to the fastest job of the same model "
                        f"at the same batch size{device}. Times in ms, memory in MiB.{efficiency_note(ranking, env)}"
                        f"{busy_note(ranking)}\n\n"
                        f"{_markdown(ranking)}\n\n{speed_chart(ranking, summary, run_dir)}")
    sections += [time_to_accuracy_section(summary, epochs, run_dir),
                 scaling_section(ranking, summary, env) if not ranking.empty else "",
                 sweep_section(ranking, summary, run_dir) if not ranking.empty else "",
                 epochs_section(epochs, summary, run_dir),
                 profile_section(run_dir, summary), problems_section(summary),
                 method_section(env, run_dir)]
    path = run_dir / "report.md"
    path.write_text("\n\n".join(section for section in sections if section) + "\n")
    return path
