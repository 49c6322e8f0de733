"""The report's Markdown sections, each from a run's tables and env.json: the first screen (each
framework's answer), the machine, the tuning settings, parity (a line here, its tables in parity.md),
speed, the gain from tuning, each framework's own input pipeline against the suite's, scaling,
throughput against batch size, learning curves, time to accuracy, the profile, the jobs that did not
finish, and how it was all measured. A table that no run table holds is also written as a CSV file
of the run (`tables.published`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmarks.checks.verdicts import (
    CALIBRATION_TITLE,
    REFERENCE,
    calibration,
    failures,
    grouped_outliers,
    parity_summary,
)
from benchmarks.harness.contention import BUSY_THRESHOLD, SUM_BUSY_SHARE
from benchmarks.harness.profiling import CATEGORIES, STEPS as PROFILED_STEPS
from benchmarks.harness.results import SETTING
from frameworks import REGISTRY, compiler_family
from report.charts import (
    MIN_EPOCHS,
    compile_chart,
    curves_chart,
    memory_chart,
    speed_chart,
    throughput_chart,
)
from report.findings import NAMED_WHEN_VARYING, group_name, process_note, read_parity, varying
from report.predictions import image_count, seed_of
from report.source import latest, read_table
from report.tables import (
    busy_sum,
    curves_table,
    identified,
    input_table,
    label,
    markdown,
    number,
    published,
    scaling_table,
    target_busy,
)


def machine_name(env: dict, summary: pd.DataFrame) -> str:
    """Where a run measured, in a few words: "AMD EPYC, 2 cores" on CPU, the GPU's name on GPU."""
    gpus = [gpu.split(",")[0] for gpu in env.get("gpus") or []]
    if summary["device"].ne("cpu").any() and gpus:
        return " + ".join(dict.fromkeys(gpus))
    return f"{env.get('cpu', '?')}, {env.get('usable_cores', '?')} cores"


RATIO_CONVENTION = ("`ratio`: a row's median step time over the fastest's at the same model and batch size (1 for the "
                    "fastest, 1.25: a quarter longer per step), with its 95% bootstrap interval `ratio_low` to "
                    "`ratio_high`; **tied** where the interval covers 1, **undecided** where too few timed windows "
                    "give no interval. `ratio` means this throughout the report.")


def answer_section(best: pd.DataFrame, compared: pd.DataFrame, summary: pd.DataFrame, env: dict,
                   convention: bool = True, also: list[str] | None = None) -> str:
    """The report's first screen: per model and batch size, each framework's fastest variant, its
    speed and its ratio to the fastest framework (`best`: findings.best_per_framework), then one
    sentence per model and batch size, and the sentences of `also` (what a front end costs,
    `front_end.cost_sentences`). `convention`: say what `ratio` means (a page that shows several
    answers says it once itself)."""
    data = "CIFAR-10" if env.get("data") == "cifar10" else "synthetic data"
    if best.empty:
        return (f"No job measured its steps on a quiet machine ({machine_name(env, summary)}, {data}): nothing is "
                f"compared; the Speed section lists what was measured.\n")
    constant = [column for column in (*NAMED_WHEN_VARYING, "tuning") if best[column].nunique() == 1]
    table = best.drop(columns=[*constant, "label", "processes"])
    varies = varying(summary)
    jobs = identified(summary)
    sentences = [f"- {answer_sentence(key, rows, varies)}"
                 f"{absent_frameworks(rows, jobs[(jobs[SETTING] == key).all(axis='columns')])}"
                 for key, rows in best.groupby(SETTING, sort=False)] + [f"- {sentence}" for sentence in also or []]
    return (f"Each framework's fastest variant per model and batch size, on {machine_name(env, summary)} "
            f"({'+'.join(summary['device'].unique())}), {data}.{' ' + RATIO_CONVENTION if convention else ''}\n\n"
            f"{markdown(table)}\n\n"
            + "\n".join(sentences) + f"\n\n{process_note(compared)}\n")


def absent_frameworks(best: pd.DataFrame, jobs: pd.DataFrame) -> str:
    """The frameworks of one model and batch size that have no answer, and why: " Not compared:
    jax (measured on a busy machine)."; nothing when every framework has one."""
    reasons = []
    for framework, rows in jobs[~jobs["framework"].isin(best["framework"])].groupby("framework", sort=False):
        timed = rows["status"].isin(["ok", "diverged"]) & rows["windows"].fillna(0).gt(0)
        if rows["status"].eq("unavailable").all() and rows["error"].nunique() == 1:
            why = str(rows["error"].iloc[0])  # e.g. "cannot import tensorflow: No module named 'tensorflow'"
        else:
            why = "measured on a busy machine" if timed.any() else "no timed steps: see Failed"
        reasons.append(f"{framework} ({why})")
    return f" Not compared: {', '.join(reasons)}." if reasons else ""


def answer_sentence(key: tuple, rows: pd.DataFrame, varies: set[str]) -> str:
    """One model and batch size in words: the fastest framework and each other's ratio."""
    fastest = rows.iloc[0]
    lead = (f"{group_name(key, varies)}: **{fastest['framework']}** is fastest "
            f"({fastest['variant']}, {fastest['images_per_s']:,.0f} images/s)")
    others = []
    for _, row in rows.iloc[1:].iterrows():
        name = f"{row['framework']} ({row['variant']})"
        if row["verdict"] == "undecided":
            others.append(f"{name} {row['ratio']:.2f}x, undecided: too few timed windows for an interval")
        elif row["verdict"] == "tied":
            others.append(f"{name} tied with it ({row['ratio']:.2f}x, {row['ratio_low']:.2f}-{row['ratio_high']:.2f})")
        else:
            others.append(f"{name} {row['ratio']:.2f}x ({row['ratio_low']:.2f}-{row['ratio_high']:.2f})")
    if not others:
        return lead + ", the only framework measured."
    return lead + "; " + "; ".join(others) + "."


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
    """The widest vector instruction sets, which decide the kernels: " (AVX2, FMA)"; nothing where the
    platform does not list them (env.json's `cpu_features` is null)."""
    features = env["cpu_features"]
    if features is None:
        return ""
    return f" ({', '.join(feature.upper() for feature in features if feature not in ('sse4_2', 'avx')) or 'no AVX2'})"


def gpu_text(env: dict) -> str:
    """Each GPU with its driver, memory, maximum clocks and power limit where env.json has them
    (`gpu_details`), else as nvidia-smi listed them (`gpus`); "none" without one."""
    def amount(value, unit: str) -> str:
        return "?" if value is None else f"{value:,.0f} {unit}"
    details = [f"{gpu['name']}, driver {gpu['driver']}, {amount(gpu['memory_mib'], 'MiB')}, max clocks "
               f"SM {amount(gpu['sm_clock_max_mhz'], 'MHz')} / memory {amount(gpu['memory_clock_max_mhz'], 'MHz')}, "
               f"power limit {amount(gpu['power_limit_w'], 'W')}" for gpu in env.get("gpu_details") or []]
    return "; ".join(details or env.get("gpus") or []) or "none"


def builds_lines(env: dict) -> list[str]:
    """One line per framework: its version and the build its workers read (`Adapter.build_info`'s
    summary: CUDA, cuDNN, oneDNN, BLAS, backend); the rest of each build stays in env.json."""
    builds = env.get("builds") or {}
    return ["- Builds (the rest in env.json's `builds`):",
            *(f"  - {framework} {build.get('version', '?')}: {build.get('summary', '?')}"
              for framework, build in builds.items())] if builds else []


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
        f"{'; transparent huge pages: ' + env['transparent_hugepages'] if env.get('transparent_hugepages') else ''}"
        f"{'; governor: ' + env['cpu_governor'] if env.get('cpu_governor') else ''}",
        f"- GPU: {gpu_text(env)}",
        *builds_lines(env),
        *([f"- Machine check before the run: {check_text(env['machine_check'])}"] if env.get("machine_check") else []),
        f"- Python {env.get('python', '?')} on {env.get('platform', '?')}; git commit `{env.get('git_commit')}`",
        f"- Packages: {packages}",
        *([migrated_line(env["migrated"])] if env.get("migrated") else []),
    ]
    return "\n".join(lines)


def migrated_line(migrated: dict) -> str:
    """How a run of an earlier results schema is read (env.json's `migrated`, report.migrate): today's columns
    it did not record are empty, not made up."""
    empty = ", ".join(f"`{column}`" for column in migrated["empty"]) or "none"
    return (f"- Written under results schema {migrated['from']}, read through its migrations (report/migrate.py); "
            f"not recorded under that schema, so empty here: {empty}")


PROFILE_TEXT = {"stock": "each framework as `pip install` gives it",
                "tuned": "each framework's own documented performance settings (docs/tuning.md)",
                "custom": "a run from before the profiles, with the settings it had"}


def settings_section(summary: pd.DataFrame) -> str:
    """What each framework:variant ran with under each profile, as its workers recorded it: every
    setting of the tuning table in effect (environment variables and framework state), and what the
    tuned profile asked for and did not get, with the reason."""
    if summary.empty:
        return ""
    rows = summary.assign(job=summary["framework"] + ":" + summary["variant"], profile=summary["tuning"].fillna(""),
                          settings=summary["settings"].fillna("").replace("", "none"),
                          missing=summary["settings_not_applied"].fillna(""))
    table = rows.drop_duplicates(["job", "profile", "settings", "missing"])[["job", "profile", "settings", "missing"]]
    if not table["missing"].str.len().any():
        table = table.drop(columns="missing")
    table = table.rename(columns={"settings": "settings in effect, beyond stock",
                                  "missing": "asked for, not applied (why)"})
    profiles = "; ".join(f"**{profile}**: {PROFILE_TEXT.get(profile, profile)}"
                         for profile in table["profile"].unique())
    return ("## Settings\n\nTuning profile(s) of this run: " + profiles + ". Each worker recorded the settings of "
            "the tuning table it found in effect, in its environment and in its framework's state; a stock row lists "
            "none unless the user's shell set one. Speed is ranked within one profile, never across.\n\n"
            f"{markdown(table)}\n")


def gains_section(gains: pd.DataFrame, run_dir: Path) -> str:
    """With both profiles: tuned against stock, per variant (`findings.tuning_gains`)."""
    if gains.empty:
        return ""
    constant = [column for column in NAMED_WHEN_VARYING if gains[column].nunique() == 1]
    shown = gains.drop(columns=constant + ([] if gains["busy"].str.len().any() else ["busy"]))
    return ("## Gain from tuning\n\n`gain` is the stock profile's median step time over the tuned profile's (above 1: "
            "tuning made it faster), with its 95% bootstrap interval `gain_low` to `gain_high` (each process's "
            "timed windows resampled, as in the findings; `verdict` tied where it holds 1); a job's two profiles "
            "took turns, so the same moments of the machine fell on both (one run's windows are paired by round: "
            "docs/method.md).\n\n"
            f"{published(shown, run_dir, 'gains')}\n")


AUGMENTATIONS = {"crop-flip": "4-pixel reflect padding, a random 32x32 crop and a random horizontal flip per image, "
                              "drawn from the seed and epoch",
                 "crop-flip-cutout": "4-pixel reflect padding, a random 32x32 crop, a random horizontal flip and an "
                                     "8x8 square set to the mean per image, drawn from the seed and epoch"}


def augmentation_text(summary: pd.DataFrame) -> str:
    """Each augmentation the jobs used and its median cost per job."""
    parts = []
    for augment, rows in summary.groupby("augment", sort=False):
        if augment == "none":
            parts.append("none")
            continue
        cost = rows["augment_s"].dropna()
        spent = (f", {number(cost.median())} s per job (median of {len(cost)}, `augment_s`), spent outside every timed "
                 f"window and epoch time" if len(cost) else "")
        parts.append(f"**{augment}** ({AUGMENTATIONS.get(augment, augment)}){spent}")
    return "; ".join(parts) or "none"


def parity_section(parity_dir: Path, report_dir: Path) -> str:
    """The parity verdict in one line, linking to parity.md, written into `parity_dir` (the run's
    folder, or a merged run's own folder in `report_dir`) with the tables and outliers."""
    table = read_parity(parity_dir)
    if table is None:
        return "Parity was not checked in this run (`--no-parity`, or no framework could run)."
    failed = failures(table)
    verdict = ("**Passed**: every framework variant computes the same function, gradients and training step "
               "as every other and as the float64 reference, within tolerance" if not failed else
               f"**FAILED** in {len(failed)} of {int(table['asserted'].sum())} asserted comparisons: read the "
               f"failing pairs before trusting their comparison")
    link = (parity_dir / "parity.md").relative_to(report_dir)
    flips = grouped_outliers(table)
    (parity_dir / "parity.md").write_text(parity_page(table, verdict, failed, flips))
    tolerated = (f"; tolerated: {len(flips)} one-step outlier{'s' * (len(flips) > 1)}, each a single flipped ReLU or "
                 f"max-pool decision" if flips else "")
    return f"{verdict}{tolerated}. Tables and outliers: [{link}]({link})."


def parity_page(table: pd.DataFrame, verdict: str, failed: list[str], flips: list[str]) -> str:
    """parity.md: the verdict, the failures and grouped outliers, and the tables per model and precision."""
    round_trip = table[table["check"] == "round trip"]
    exact = "exact" if round_trip["passed"].all() else "NOT exact"
    lines = ["# Parity", f"{verdict}.", f"Training state (weights, BatchNorm statistics, momentum buffers, step "
                                        f"count) round trips through every adapter: {exact}. `python -m "
                                        f"benchmarks.parity` reruns these checks."]
    notes = [f"- failed: {line}" for line in failed[:20]] + [f"- tolerated outlier: {line}" for line in flips]
    if len(failed) > 20:
        notes.insert(20, f"- ... and {len(failed) - 20} more failed comparisons (parity.csv)")
    if notes:
        lines.append("\n".join(notes))
    for (model, precision, devices), rows in table[table["check"] != "round trip"].groupby(
            ["model", "precision", "devices"], sort=False):
        lines += _parity_tables(model, precision, rows, devices)
    lines += [f"**{CALIBRATION_TITLE}.**", calibration(table).to_markdown(index=False, disable_numparse=True)]
    return "\n\n".join(lines) + "\n"


def _parity_tables(model: str, precision: str, pairs: pd.DataFrame, devices: int = 1) -> list[str]:
    """Between variants, and each against the float64 reference, for one model and precision
    (and, for the data-parallel check, `devices` devices: variants named "xN" there)."""
    tolerances = ", ".join(f"{check} {value:g}" for check, value in
                           pairs.groupby("check", sort=False)["tolerance"].first().items())
    per_step = pairs[pairs["check"] == "per-step"]  # none in the first parity checks' parity.csv (schema 1)
    steps = int(per_step["step"].max()) + 1 if len(per_step) else 0
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
        f"**{heading}.** Largest relative error per pair and check (tolerances: {tolerances})."
        + (f" *Per-step*: one step from the common state, worst over {per_step['setting'].nunique()} optimizer "
           f"setting(s) and {steps} steps, with the step, and the one-step outlier tolerated per pair and setting, "
           f"if any; *free-running*: {steps} steps without resets, reported, not asserted, with the first step at "
           f"which the losses part (docs/parity.md)." if steps else "")
        + (f" Reported, not asserted here: the gradient-derived parts of {', '.join(unasserted)} (docs/parity.md)."
           if unasserted else ""),
        between.reset_index().to_markdown(index=False, disable_numparse=True),
        "Error against the float64 reference, per variant:",
        against.reset_index().rename(columns={"pair": "variant"}).to_markdown(index=False, disable_numparse=True),
    ]


def speed_section(ranking: pd.DataFrame, summary: pd.DataFrame, env: dict, run_dir: Path) -> str:
    """The ranking with its notes and chart (`ranking`: tables.ranking_table, also ranking.csv)."""
    if ranking.empty:
        return "## Speed\n\nNo job finished its timed steps."
    device = " on the same device" if "merged" in env else ""
    return ("## Speed, ranked by throughput\n\n`ratio` as above, to the fastest variant of the same "
            f"model at the same batch size{device} (`verdict`: fastest, tied, slower or undecided). Repeats merged: "
            f"each column the median of the processes' values, `repeat_spread` (max - min) / median of their step "
            f"times. Times in ms, memory in MiB; the table is `ranking.csv`.{efficiency_note(ranking, env)}"
            f"{busy_note(ranking)}\n\n{markdown(ranking)}\n\n{speed_chart(ranking, summary, run_dir, env)}")


def compile_section(ranking: pd.DataFrame, summary: pd.DataFrame, env: dict, run_dir: Path) -> str:
    """Cumulative training time against steps, where a framework has an eager variant beside others."""
    chart = compile_chart(ranking, summary, run_dir, env)
    if not chart:
        return ""
    return ("## Compile pay-off\n\nEach variant's training time after n steps: `compile_s` (its first step, "
            "compilation included) plus n times `step_ms_median`. A compiled variant (dashed) has paid off where its "
            f"line falls below its framework's eager line (solid); the findings give each crossing.\n\n{chart}\n")


def input_section(summary: pd.DataFrame, run_dir: Path) -> str:
    """Native pipelines next to the suite-fed rows of the same jobs (`tables.input_table`)."""
    table = input_table(summary)
    if table.empty:
        return ""
    how = summary.loc[summary["input"].eq("native"), "input_cpu_how"].dropna()
    return ("## Input pipelines: each framework's own against the suite's\n\n"
            "A native row feeds the job from the framework's own pipeline (torchvision + DataLoader, tf.data, "
            "Grain), run inside every clock: its epoch time and images/s are end to end. A suite-fed row prepares "
            "each epoch before its clock (shuffle and augmentation, `suite_augment_s` over the whole job, apart): "
            "its times are the training step's alone. `vs_suite`: the native epoch time over the suite-fed one, "
            "what the framework's input pipeline costs an epoch. `input_stall_share`: the share of the training time "
            "the loop waited for its next batch; `input_cpu_s`: CPU seconds of the pipeline's workers over the "
            f"job ({how.iloc[0] if len(how) else 'not measured'}).\n\n{published(table, run_dir, 'input')}")


def efficiency_note(ranking: pd.DataFrame, env: dict) -> str:
    """How far the best row is from the machine's measured peak, the FLOP convention, and a warning
    when the peak itself was measured on a busy machine."""
    text = (" `gflops`: training FLOPs per step (2 per multiply-add of the convolutions and dense layers, three "
            "forward passes' worth per step) over the median step time.")
    if "of_peak" not in ranking or ranking["of_peak"].isna().all():  # no peak measured on this machine
        return text
    text += (f" The machine's measured peak is {env['peak_gflops']:,.0f} GFLOP/s ({env['peak_how']}); `of_peak` is "
             f"the share of it." if "peak_gflops" in env else  # merged runs: each run's env.json has its own
             " `of_peak`: the share of the measured peak of the machine that ran it (its run's env.json).")
    if env.get("peak_busy"):
        text += (f" **The peak was measured on a busy machine** (other processes took {env['peak_others_cpu']:.0%} of "
                 f"the cores, measured twice): it is too low, so every `of_peak` below is too high.")
    clean = ranking[~ranking["job"].str.endswith(" (busy)")]
    if clean["of_peak"].isna().all():
        return text
    best = clean.loc[clean["of_peak"].idxmax()]
    return (text + f" The most efficient row, {best['job']} ({best['model']}, batch {best['batch_size']}), reaches "
            f"{best['gflops']:,.1f} GFLOP/s, {best['of_peak']:.0%} of the peak.")


def busy_note(ranking: pd.DataFrame) -> str:
    busy = ranking[ranking["job"].str.endswith(" (busy)")]
    if busy.empty:
        return ""
    return (f"\n\n**{len(busy)} row(s) marked (busy) were measured on a busy machine**: other processes took more "
            f"than {BUSY_THRESHOLD:.0%} of the worker's cores in at least half of their timed windows (`contention` "
            f"is the median share). Their speed says more about the machine than about the framework: they are "
            f"listed after the clean rows and not compared (`ratio` left empty). Rerun them on a quiet "
            f"machine (`--require-quiet` refuses to start on a busy one).")


def scaling_section(ranking: pd.DataFrame, summary: pd.DataFrame, env: dict, run_dir: Path) -> str:
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
            "batch grows with the devices), through each framework's own engine: `scaling_xN` is images/s on N "
            "devices over N times images/s on one. BatchNorm is synchronised across replicas, so N devices compute "
            f"what one device computes on the global batch (parity above).{caveat}"
            + (" Rows marked busy rest on timings taken while other processes used the cores." if "busy" in table
               else "")
            + f"\n\n{published(table, run_dir, 'scaling')}\n")


def sweep_section(table: pd.DataFrame, summary: pd.DataFrame, env: dict, run_dir: Path) -> str:
    if table["batch_size"].nunique() < 2:
        return ""
    throughput = throughput_chart(table, summary, run_dir, env)
    memory = memory_chart(table, summary, run_dir, env)
    return ("## Throughput and memory vs batch size\n\nEach variant's `images_per_s` and peak memory from the "
            f"ranking above, against its batch size (dashed: measured on a busy machine).\n\n{throughput}\n\n"
            f"{memory}\n")


def test_images(summary: pd.DataFrame, epochs: pd.DataFrame) -> int | None:
    """The images each evaluation scored, as the run recorded them, else read off its accuracies
    (`predictions.image_count`)."""
    return image_count(epochs, summary["test_accuracy"]).evaluated


def epochs_section(epochs: pd.DataFrame, summary: pd.DataFrame, env: dict, run_dir: Path) -> str:
    if epochs.empty:
        return ""
    curves = curves_table(epochs)
    chart = curves_chart(curves, summary[summary["job_id"].isin(epochs["job_id"])], run_dir, env,
                         test_images(summary, epochs))
    busy = curves[busy_sum(curves["train_busy_share"])] if "train_busy_share" in curves else curves.iloc[:0]
    note = (f" **{len(busy)} training time(s) rest on contention**: more than {SUM_BUSY_SHARE:.0%} of each fell in "
            f"windows where other processes took more than {BUSY_THRESHOLD:.0%} of the worker's cores "
            f"(`train_busy_share`; " + ", ".join(f"{job} epoch {epoch}" for job, epoch in busy.index) + "); a training "
            "time is a sum, so those windows inflate it in full: do not compare them." if len(busy) else "")
    return ("## Learning curves\n\nSame initial weights and batches in every framework: the curves should "
            "overlap. `train_s` counts the training steps since the previous evaluation, the first (compile) step "
            "included in the first; "
            f"the chart is drawn from {MIN_EPOCHS} evaluations per job on."
            f"{note}\n\n{published(curves.reset_index(), run_dir, 'curves')}\n\n{chart}\n")


def time_to_accuracy_section(summary: pd.DataFrame, epochs: pd.DataFrame, run_dir: Path) -> str:
    """Jobs ranked by training time to the target accuracy (those that missed it last, with their
    best), one row per process; across seeds, and in a chart, in `report.seeds`."""
    if summary["target_accuracy"].isna().all():
        return ""
    jobs = summary[summary["target_accuracy"].notna()].copy()
    seeds = seed_of(jobs)
    seed = " s" + seeds.astype(str) if seeds.nunique() > 1 else ""
    jobs["job"] = label(jobs) + " bs" + jobs["batch_size"].astype(str) + seed + " r" + jobs["repeat"].astype(str)
    jobs["reached"] = jobs["target_reached"].astype(str).eq("True")
    jobs["busy"] = target_busy(jobs)
    jobs["job"] = jobs["job"] + jobs["busy"].map({True: " (busy)", False: ""})
    jobs = jobs.sort_values(["reached", "busy", "train_s_to_target", "best_accuracy"],
                            ascending=[False, True, True, False])
    # what it trained: up to its last evaluation (--epochs is only the most it may take)
    trained = epochs.groupby(["job_id", "attempt"]).agg(epochs_trained=("epoch", "max"), train_s=("train_s", "sum"))
    jobs = jobs.join(trained, on=["job_id", "attempt"])
    table = jobs[["job", "reached", "epochs_trained", "compile_s", "train_s", "epochs_to_target", "steps_to_target",
                  "train_s_to_target", "wall_s_to_target", "train_busy_share_to_target", "wall_busy_share_to_target",
                  "best_accuracy"]]
    table = table.dropna(axis="columns", how="all")  # busy shares: not measured in older runs
    busy = jobs[jobs["busy"]]
    note = (f"\n\n**{len(busy)} time(s) to target marked (busy) rest on contention**: more than "
            f"{SUM_BUSY_SHARE:.0%} of the training or wall time fell in windows where other processes took more than "
            f"{BUSY_THRESHOLD:.0%} of the worker's cores (`train_busy_share_to_target`, `wall_busy_share_to_target`). "
            f"A time to accuracy is a sum: a median step time shrugs off a few slow windows, a sum counts them in "
            f"full. They are listed after the clean times and not ranked against them; rerun them on a quiet machine."
            if len(busy) else "")
    target = jobs["target_accuracy"].iloc[0]
    curves = epochs.merge(jobs[["job_id", "attempt", "job"]], on=["job_id", "attempt"]).sort_values("epoch")
    fractional = not curves["epoch"].astype(float).apply(float.is_integer).all()
    when = f"every {int(curves['step'].min())} training steps" if fractional else "after every epoch"  # --eval-every
    return (f"## Time to {target:.1%} test accuracy\n\nEvaluated {when}; a job stops at the first "
            f"evaluation that reaches the target. `epochs_trained` and `train_s`: how far it trained and its "
            f"training time, `compile_s` (its first step) included. `train_s_to_target` counts training only "
            f"(compilation included), `wall_s_to_target` adds the evaluations, as MLPerf counts time to quality."
            f"{note}\n\n"
            f"{published(table, run_dir, 'time_to_target')}\n")


def profile_section(run_dir: Path, summary: pd.DataFrame, top: int = 8) -> str:
    """With --profile: per job, the share of self time in each category, and its largest operations."""
    ops = latest(read_table(run_dir, "profile"), summary)
    if ops.empty:
        return ""
    ops = ops[ops["repeat"] == ops["repeat"].min()].copy()  # one process's profile per job
    ops["job"] = label(ops) + " bs" + ops["batch_size"].astype(str)
    ops["job"] = pd.Categorical(ops["job"], categories=ops["job"].unique())  # in the run's order
    shares = ops.pivot_table(index="job", columns="category", values="share", aggfunc="sum", observed=True)
    shares = shares.reindex(columns=[category for category in CATEGORIES if category in shares.columns])
    table = (100 * shares).round(1).fillna(0.0)
    table.insert(0, "profiled_ms", ops.groupby("job", observed=True)["self_ms"].sum().round(1))
    largest = ops.sort_values(["job", "self_ms"], ascending=[True, False]).groupby("job", observed=True).head(top)
    largest = largest.assign(share_pct=(100 * largest["share"]).round(1), self_ms=largest["self_ms"].round(2),
                             detail=largest["detail"].fillna("").str.slice(0, 90))
    xla = pd.Series([compiler_family(framework, variant) == "xla"
                     for framework, variant in zip(summary["framework"], summary["variant"])], summary.index, bool)
    threads = summary.loc[xla & summary["threads"].gt(1), "job_id"]
    caveat = (" XLA runs its own convolutions asynchronously when it has more than one thread, and their events end "
              "at dispatch: the XLA rows under-count them (profile with `--threads 1` to attribute them)."
              if ops["job_id"].isin(threads).any() else "")
    viewers = "; ".join(f"{name}: {entry.trace_viewer}" for name, entry in REGISTRY.items()
                        if entry.trace_viewer and name in set(ops["framework"]))
    return (f"## Where the time goes (profile)\n\nEach job ran {PROFILED_STEPS} more training steps after its timed "
            f"ones, under its framework's own profiler. Self time is the time spent in an operation itself, not in "
            f"the operations it called, summed over the threads that ran it; `profiled_ms` is its sum per step. It "
            f"can exceed the step time on several cores, and the profiler adds its own cost: compare the shares, not "
            f"the sums. Shares in % per category, each operation sorted by its framework's name for it (rules in "
            f"`benchmarks/harness/profiling.py`; `data transfer` counts copies and layout transposes).{caveat}\n\n"
            f"{published(table.reset_index(), run_dir, 'profile_shares')}\n\nThe {top} largest operations of each job "
            f"(self ms per step, `share_pct` of the job's self time; "
            f"`detail`: for XLA, the HLO instruction's opcode, shape, the JAX op_name or TensorFlow op it came "
            f"from, and JAX's Python call stack):\n\n"
            f"{published(largest[['job', 'op', 'category', 'self_ms', 'share_pct', 'detail']], run_dir, 'profile_ops')}"
            f"\n\n"
            f"Traces, per job in `profiles/<job_id>/`: {viewers}.\n")


def problems_section(summary: pd.DataFrame) -> str:
    problems = summary[summary["status"] != "ok"]
    recompiled = summary[summary["recompiles"].fillna(0) > 0]
    parts = []
    unavailable = problems[problems["status"] == "unavailable"]
    if not unavailable.empty:  # a framework that is not installed: one line, not a row per job
        counts = unavailable.groupby(["framework", "error"], sort=False, dropna=False).size()
        parts.append("Not run, their framework (or a package it needs) could not be imported:\n\n" + "\n".join(
            f"- {framework}, {jobs} job{'s' if jobs > 1 else ''}: {error}"
            for (framework, error), jobs in counts.items()))
        problems = problems[problems["status"] != "unavailable"]
    if not problems.empty:
        columns = ["job", "batch_size", "repeat", "status", "windows", "diverged_step", "error"]
        shown = problems.assign(job=label(problems))[columns]
        shown = shown.astype({"windows": "Int64", "diverged_step": "Int64"}).astype(str)
        shown = shown.replace({"<NA>": "", "nan": ""})
        parts.append(f"Jobs that did not finish (failed, skipped, diverged or interrupted), with the timed windows "
                     f"each measured before it stopped (in `steps.csv`, never ranked):\n\n{markdown(shown)}")
    if not recompiled.empty:
        shown = recompiled.assign(job=label(recompiled))[["job", "batch_size", "repeat", "recompiles"]]
        parts.append(f"**Recompiled after warm-up** (their step times include compilation):\n\n{markdown(shown)}")
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


TURNS = {  # by env.json's "interleave"
    "jobs": "Every job of one model and batch size (a data-parallel job: its repeats) ran at once, the "
            "processes taking turns",
    "repeats": "The repeats of a job ran at once, taking turns",
    None: "Processes that ran at once (each run's env.json says which: `interleave`) took turns",  # merged runs
}


def method_section(env: dict) -> str:
    return METHOD.format(turns=TURNS[None if "merged" in env else env["interleave"]])
