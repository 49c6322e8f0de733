"""`python -m benchmarks.device_check`: the one prepared check of what only a GPU exercises
(pinned-memory prefetch, the GPU matmul and bf16 peaks, device memory counters, bf16 autocast,
ResNet-9's BatchNorm and time to 94%, over several seeds too, NCCL data parallelism with synced
BatchNorm, JAX sharding, the profiler), each step one of the suite's own commands in a child process with its own time
limit, in priority order within one time budget. A failed or stopped step is a finding: whatever
it got to write is summarised, and the next step runs. `--dry-run` runs the same steps scaled down
on the CPU.

Exit status: 0 the check ran to its end (whatever its steps found), 2 bad input, 130 interrupted."""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import pandas as pd

from benchmarks import cli
from benchmarks.harness import data as datasets
from benchmarks.harness.jobs import Job
from benchmarks.harness.results import latest_attempts, read_table
from benchmarks.harness.spawn import PROJECT_ROOT
from frameworks import REGISTRY, registry

BUDGET_S = 540.0  # a lent device machine gives one check 9 minutes
DRY_RUN_BUDGET_S = 1500.0  # a busy 2-core CPU: the float64 parity reference alone can take minutes there
GRACE_S = 15.0  # a step stopped at its limit gets this long after Ctrl-C to stop its workers and render its report
POLL_S = 0.2  # how soon a running step's end, its limit or a Ctrl-C is noticed
LIMIT_MARGIN = 1.25  # a limit taken from the seconds an earlier check measured (--limits-from) leaves this much room
OUTGROWN = 1.5  # a step stopped at its limit needed more, how much more is unknown: half as much again
RETURN_LIMIT = 16 * 2**20  # the largest file a device machine hands back from $OUT
LOG_TAIL = 256 * 2**10  # a log in the bundle keeps its last bytes: where a failure says why
BUNDLED = (".csv", ".json", ".md", ".log")  # profiles/ holds traces (.json too) and stays out
NO_DATA = "no CIFAR-10 copy (give --data-dir)"
PARITY_CSV = "parity.csv"  # a parity step's comparisons, as a run folder's parity.csv holds them
JAX_CACHE = "jax-cache"  # the default compilation cache: a folder of the check's own, left out of the bundle


# --- The plan -----------------------------------------------------------------------------------

# Time to 94% runs one framework per step, in this order, so that a slow framework cannot take
# another's time; the timing step runs these first, then every other registered framework.
PRIORITY = ("pytorch", "jax")
# Time to 94% over several seeds, last, one framework per step: PRIORITY's, then every other built-in one.
SEEDED = tuple(dict.fromkeys([*PRIORITY, *REGISTRY]))


@dataclass(frozen=True)
class Step:
    name: str
    module: str  # the suite's command: benchmarks.parity (which writes parity.csv) or benchmarks.run (a run folder)
    options: tuple[str, ...]
    limit_s: float
    skip: str | None = None  # why it does not run on this machine

    def output_options(self, folder: Path) -> tuple[str, ...]:
        """Where the command writes what it found: inside the step's folder."""
        return ("--out", str(folder)) if self.module == "benchmarks.run" else ("--csv", str(folder / PARITY_CSV))

    @property
    def command(self) -> str:
        return shlex.join(["python", "-m", self.module, *self.options])


@dataclass(frozen=True)
class Machine:
    dry_run: bool
    gpus: int  # as nvidia-smi -L lists them
    data_dir: Path | None  # a folder holding cifar-10-batches-py/
    absent: tuple[str, ...] = ()  # registered frameworks whose package is not installed


@dataclass(frozen=True)
class Scale:
    """What each kind of step selects and how large it runs, and each step's time limit in seconds
    by name: the GPU check's, or the dry run's on a CPU."""

    frameworks: str | None  # the steps that run several frameworks; None: every one (the timing step PRIORITY's first)
    parity: tuple[str, ...]
    timing: tuple[str, ...]
    recipe: tuple[str, ...]  # besides the framework, the recipe's own settings and the data
    seeds: tuple[str, ...]  # the same, over several seeds (--seeds)
    parallel: tuple[str, ...]
    profile: tuple[str, ...]
    limits: dict[str, float]
    limits_are: str  # where the limits come from, for the check's summary


GPU = Scale(
    frameworks=None,
    parity=("--variant", "all", "--model", "lenet,resnet9"),
    # The first GPU run times what `--framework all --device cuda` runs (each framework's default
    # variant under the default profile, LeNet) and ResNet-9, 3 repeats each: 6 jobs per framework.
    # Every job pays its first turn (import, CUDA start, compile, warm-up) before its first timed
    # window, seconds each and more for torch.compile, so every variant under both profiles (84 jobs,
    # 36 without TensorFlow) cannot fit a step of two minutes; the parity steps still run every variant
    # on the card, and the other variants and profile wait for limits set from the first run.
    # Repeats take turns only with each other (--interleave repeats), so a step stopped at its limit
    # keeps every job that came before in plan order, where turns across all jobs would finish none.
    timing=("--variant", "default", "--model", "lenet,resnet9", "--repeats", "3", "--steps", "60", "--window", "20",
            "--interleave", "repeats"),
    recipe=(),  # the recipe's batch 512 and 24 epochs, stopped at the target
    # Three seeds, one after the other (each its own turn group), so that a step stopped at its limit keeps
    # the seeds that reached the target or ended before it.
    seeds=("--seeds", "3"),
    parallel=("--model", "lenet,resnet9", "--steps", "40", "--window", "20"),  # synced BatchNorm
    profile=("--model", "resnet9", "--steps", "20", "--window", "10"),
    # Estimates from FLOP counts, not measurements: set them from the first GPU run (--limits-from its
    # summary.csv). A run step starts with its runner, the machine's peak and a probe of its frameworks
    # (about 15 s). ResNet-9 trains at 2.3 GFLOP an image (benchmarks.harness.efficiency), 2.7 PFLOP
    # over the recipe's 24 epochs: about 30 s at an assumed 100 TFLOP/s in bf16, 110 s at 25 TFLOP/s in
    # fp32 without TF32, besides compiling and evaluating. What a GPU reference needs (parity in fp32
    # and bf16, time to 94% in bf16, timing) fits BUDGET_S; the later steps run as far as the time the
    # earlier ones leave unused goes (see `run_check`). A step that outgrows its limit is stopped and
    # recorded as a timeout, with what it had measured kept.
    limits={"parity-fp32": 120, "parity-bf16": 75, "recipe-bf16-pytorch": 60, "recipe-bf16-jax": 60, "timing": 110,
            "recipe-fp32-pytorch": 140, "recipe-fp32-jax": 140, "parity-tf32": 35, "devices-2": 60, "profile": 30,
            **{f"seeds-{framework}": 3 * 60 for framework in SEEDED}},  # three runs of a bf16 recipe step each
    limits_are="estimates from FLOP counts, not measured (--limits-from sets them from a GPU run's summary.csv)",
)
# The dry run tests the check, not the frameworks: the steps that run several frameworks run JAX
# alone (the lightest import), each time-to-94% step its own framework, LeNet where the step allows,
# a handful of steps, so that the whole check fits a few minutes of a small CPU.
TINY = ("--batch-size", "16", "--train-size", "64", "--test-size", "32", "--warmup", "1")
DRY_RUN = Scale(
    frameworks="jax",
    parity=("--variant", "default", "--model", "lenet"),
    timing=(*TINY, "--model", "lenet", "--repeats", "2", "--steps", "4", "--window", "2", "--interleave", "repeats"),
    recipe=(*TINY, "--epochs", "1"),
    seeds=(*TINY, "--epochs", "1", "--model", "lenet", "--seeds", "2"),
    parallel=(*TINY, "--model", "lenet", "--steps", "2", "--window", "2"),
    profile=(*TINY, "--model", "lenet", "--steps", "2", "--window", "2"),
    # A parity step computes the float64 reference in NumPy where its cache is cold, which no option shrinks.
    limits={**dict.fromkeys(GPU.limits, 240), "parity-fp32": 360, "parity-tf32": 360, "parity-bf16": 360},
    limits_are="the dry run's bounds for a busy 2-core CPU",
)


def plan(machine: Machine, limits: Mapping[str, float] | None = None) -> list[Step]:
    """Every step, in priority order, with the reason it is skipped on this machine, if any: first
    what a GPU reference needs (parity in fp32 and bf16, time to 94% in bf16 for each framework of
    PRIORITY, throughput with repeats), then what adds to it (time to 94% in fp32, TF32 parity, two
    devices, profiles, time to 94% in bf16 over several seeds for each framework of SEEDED). `limits`:
    each step's limit by name where it is not the scale's own."""
    scale, device = (DRY_RUN, "cpu") if machine.dry_run else (GPU, "cuda")
    limits = {**scale.limits, **(limits or {})}
    every = ("--framework", scale.frameworks or "all")
    synthetic = ("--data", "synthetic")
    if machine.dry_run:
        data, no_data = synthetic, None
    elif machine.data_dir is None:
        data, no_data = (), NO_DATA
    else:
        data, no_data = ("--data", "cifar10", "--data-dir", str(machine.data_dir)), None

    def parity(precision: str) -> Step:
        name = f"parity-{precision}"
        return Step(name, "benchmarks.parity", ("--device", device, *every, *scale.parity, "--precision", precision),
                    limits[name], "tf32 is fp32 on a CPU (no TF32 units): parity-fp32 covers it"
                    if machine.dry_run and precision == "tf32" else None)

    def recipe(precision: str, framework: str, name: str = "", options: tuple[str, ...] = scale.recipe) -> Step:
        name = name or f"recipe-{precision}-{framework}"
        return Step(name, "benchmarks.run",
                    ("--device", device, "--framework", framework, *options, "--recipe", "resnet9-94",
                     "--target-accuracy", "0.94", "--precision", precision, *data, "--no-parity"), limits[name],
                    no_data or (f"{framework} is not installed" if framework in machine.absent else None))

    in_order = scale.frameworks or ",".join(dict.fromkeys([*PRIORITY, *registry()]))
    timing = Step("timing", "benchmarks.run", ("--device", device, "--framework", in_order, *scale.timing, *synthetic,
                                               "--no-parity"), limits["timing"])
    # On a CPU the two devices are host devices (docs/devices.md). The
    # runner first checks 2 devices against one, so this step keeps its parity check.
    one_gpu = None if machine.dry_run or machine.gpus >= 2 else f"{machine.gpus} GPU listed by nvidia-smi -L, 2 needed"
    devices = Step("devices-2", "benchmarks.run", ("--device", device, *every, "--devices", "2", *scale.parallel,
                                                   *synthetic), limits["devices-2"], one_gpu)
    profile = Step("profile", "benchmarks.run", ("--device", device, *every, "--profile", *scale.profile, *synthetic,
                                                 "--no-parity"), limits["profile"])
    return [parity("fp32"), parity("bf16"), *(recipe("bf16", framework) for framework in PRIORITY), timing,
            *(recipe("fp32", framework) for framework in PRIORITY), parity("tf32"), devices, profile,
            *(recipe("bf16", framework, f"seeds-{framework}", scale.seeds) for framework in SEEDED)]


def round_up(seconds: float) -> float:
    """To the next multiple of 5 s."""
    return float(5 * math.ceil(seconds / 5))


def limits_from(path: Path, estimates: Mapping[str, float]) -> tuple[dict[str, float], str]:
    """Each step's limit from an earlier check's summary.csv (the first GPU run's): LIMIT_MARGIN
    times the seconds it took where it ran to its end (ok, or exit status 1: it found a failure),
    OUTGROWN times the limit it was given where it was stopped at it; and a line saying which. Any
    other step keeps its estimate. ValueError where `path` is not such a table."""
    table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    missing = sorted({"step", "status", "limit_s", "seconds"} - set(table.columns))
    if missing:
        raise ValueError(f"it has no {', '.join(missing)} column: not a device check's summary.csv")
    limits, measured, outgrown = {}, [], []
    for row in table.itertuples(index=False):
        if row.step not in estimates:
            continue
        if row.status in ("ok", "failed (exit 1)") and pd.notna(row.seconds):
            limits[row.step] = round_up(LIMIT_MARGIN * float(row.seconds))
            measured.append(row.step)
        elif row.status == "timeout" and pd.notna(row.limit_s):
            limits[row.step] = round_up(OUTGROWN * float(row.limit_s))
            outgrown.append(row.step)
    parts = [f"{LIMIT_MARGIN:g} x the seconds used for {', '.join(measured)}" if measured else "",
             f"{OUTGROWN:g} x the limit of {', '.join(outgrown)}, stopped at it" if outgrown else ""]
    which = "; ".join(filter(None, parts)) or "no step ran to its end there"
    return limits, f"from {path} ({which}); estimates for the rest"


# --- What the machine offers --------------------------------------------------------------------


def gpu_names() -> list[str]:
    """nvidia-smi's list (no framework is imported to count GPUs); none without the tool."""
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in listing.splitlines() if line.startswith("GPU ")]


def not_installed() -> list[str]:
    """Registered frameworks whose package is absent (from package metadata: nothing is imported)."""
    absent = []
    for entry in registry().values():
        try:
            if entry.packages:
                importlib.metadata.version(entry.packages[0])
        except importlib.metadata.PackageNotFoundError:
            absent.append(entry.name)
    return absent


def jax_cache_env(folder: Path) -> dict[str, str]:
    """JAX's persistent compilation cache in `folder` ("Persistent compilation cache", JAX's docs;
    the variables are its config options in capitals): a process of the check that compiles a
    program another has compiled (a repeat, a later step) loads it instead. Every program is kept,
    however quick its compile or small its entry (JAX keeps only those of a second or more by
    default); XLA's GPU autotuning results are kept beside them (jax_persistent_cache_enable_xla_caches)."""
    return {"JAX_COMPILATION_CACHE_DIR": str(folder), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1"}


# --- Running ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    step: str
    command: str
    status: str  # ok, failed (exit N), timeout, interrupted, skipped: why, not started: why
    limit_s: float | None  # what it was given: its own limit and the time earlier steps left unused
    seconds: float | None
    run_folder: str  # relative to the check's folder; empty where none was written
    frameworks: str  # each framework's job statuses or parity verdict, as far as the step got to write them


class Interruption:
    """The check's SIGINT handler: a Ctrl-C is noted, and acted on where the check can stop cleanly
    (a running step is stopped, what it wrote is summarised and bundled), never raised halfway
    through writing a table or the bundle."""

    def __init__(self):
        self.requested = False

    def __call__(self, signum, frame) -> None:
        self.requested = True


def stop(process: subprocess.Popen) -> None:
    """Ctrl-C, as a user would: the runner stops its workers and renders what it measured; a
    process still there after the grace period is killed (its workers die with it)."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def execute(step: Step, folder: Path, limit_s: float, env: Mapping[str, str], stopping: Callable[[], bool]) -> str:
    """Run one step in `env`, stopped after limit_s or once `stopping()`, with its output in
    folder/console.log; its status."""
    folder.mkdir()
    argv = [sys.executable, "-m", step.module, *step.options, *step.output_options(folder)]
    deadline = time.monotonic() + max(limit_s - GRACE_S, 1.0)
    with open(folder / "console.log", "wb") as log:
        # Same process group: a Ctrl-C at the terminal reaches the step too, which stops itself.
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT, env=dict(env))
        while process.poll() is None and not stopping() and time.monotonic() < deadline:
            time.sleep(POLL_S)
        if process.returncode is None:
            status = "interrupted" if stopping() else "timeout"
            stop(process)
            return status
    if process.returncode == 0:
        return "ok"
    return "interrupted" if stopping() else f"failed (exit {process.returncode})"


# --- What a step found --------------------------------------------------------------------------


def run_folder_of(step: Step, folder: Path) -> Path | None:
    """Where a step's findings are: a parity step's own folder once its parity.csv exists, or the
    run folder the runner made inside it, whatever it got to write there."""
    if step.module == "benchmarks.parity":
        return folder if (folder / PARITY_CSV).is_file() else None
    runs = sorted(path for path in folder.iterdir() if path.is_dir()) if folder.is_dir() else []
    return runs[-1] if runs else None


def findings(step: Step, folder: Path, absent: Sequence[str]) -> str:
    """What a step found, from whatever it wrote before it ended or was stopped: per framework, a
    parity step's verdict or a run's job statuses; or how far it got."""
    run_dir = run_folder_of(step, folder)
    if step.module == "benchmarks.parity":
        return "; ".join([parity_findings(run_dir / PARITY_CSV) if run_dir else NO_COMPARISON,
                          *(f"{name}: not installed" for name in absent)])
    return job_statuses(run_dir, absent) if run_dir else "no run folder written"


VERDICTS = ("True", "False")
NO_COMPARISON = "no comparison written"


def parity_findings(path: Path) -> str:
    """A parity step's verdict per framework from its parity.csv, as far as it got to write it: a
    row cut off by a stop halfway through a write is left out, and said so."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        whole = table["asserted"].isin(VERDICTS) & table["passed"].isin(VERDICTS)
    except pd.errors.EmptyDataError:  # stopped before its first byte
        return NO_COMPARISON
    except (OSError, ValueError, KeyError) as error:  # pandas' parser errors are ValueErrors
        return f"{path.name} unreadable ({type(error).__name__}: {error})"
    verdicts = table[whole].assign(asserted=table["asserted"].eq("True"), passed=table["passed"].eq("True"))
    cut = int((~whole).sum())
    return parity_statuses(verdicts) + (f" ({cut} cut-off row{'s' * (cut != 1)} left out)" if cut else "")


def parity_statuses(table: pd.DataFrame) -> str:
    """Per framework, the verdict of the asserted comparisons it is part of, e.g. "pytorch: passed;
    jax: FAILED 2 of 1,204"."""
    asserted = table[table["asserted"]]
    first = asserted["pair"].str.extract(r"^(\w+):", expand=False)  # "pytorch:eager vs jax:jit": pytorch
    second = asserted["pair"].str.extract(r" vs (\w+):", expand=False)  # jax; none against float64
    parts = []
    for framework in dict.fromkeys(first.dropna()):
        rows = asserted[first.eq(framework) | second.eq(framework)]
        failed = int((~rows["passed"]).sum())
        parts.append(f"{framework}: " + ("passed" if not failed else f"FAILED {failed:,} of {len(rows):,}"))
    return "; ".join(parts) or NO_COMPARISON


def job_statuses(run_dir: Path, absent: Sequence[str] = ()) -> str:
    """Per framework, its planned jobs' statuses, e.g. "pytorch: ok x5, not finished x1; tensorflow:
    not installed", where a job without a summary row (not started, or stopped before it wrote one)
    is not finished; or how far the run got."""
    if not (run_dir / "plan.json").is_file():
        return "stopped before its jobs were planned"
    try:
        jobs = [Job.from_dict(job) for job in json.loads((run_dir / "plan.json").read_text())["jobs"]]
    except (OSError, ValueError, KeyError, TypeError) as error:  # cut off by a stop halfway through its write
        return f"plan.json unreadable ({type(error).__name__}: {error})"
    try:
        summary = read_table(run_dir, "summary")
    except (OSError, ValueError) as error:  # pandas' parser errors are ValueErrors
        return f"summary.csv unreadable ({type(error).__name__}: {error})"
    ended = latest_attempts(summary[summary["status"].notna()])  # a row cut off before its status is no row
    planned = pd.DataFrame({"job_id": [job.job_id for job in jobs], "framework": [job.what.framework for job in jobs]})
    rows = planned.merge(ended[["job_id", "status", "error"]], on="job_id", how="left")
    parts = []
    for framework, jobs_of in rows.groupby("framework", sort=False):
        missing = jobs_of["status"].eq("unavailable") & jobs_of["error"].astype(str).str.contains("No module named")
        if framework in absent or missing.all():
            parts.append(f"{framework}: not installed")
            continue
        counts = [f"{status} x{count}" for status, count in jobs_of["status"].value_counts().items()]
        unfinished = int(jobs_of["status"].isna().sum())
        parts.append(f"{framework}: " + ", ".join([*counts, *([f"not finished x{unfinished}"] if unfinished else [])]))
    return "; ".join(parts) or "no job planned"


# --- The check ----------------------------------------------------------------------------------


def run_check(steps: list[Step], folder: Path, budget_s: float, absent: Sequence[str], env: Mapping[str, str],
              stopping: Callable[[], bool] = lambda: False,
              after_each: Callable[[list[Outcome]], None] = lambda outcomes: None) -> list[Outcome]:
    """Each step in order while the budget fits its limit; a failure does not stop the check, a
    Ctrl-C (`stopping()`) does, after the running step has been stopped and summarised. A step is
    given its limit and whatever earlier steps left unused, as long as the later steps' limits still
    fit the budget: time saved early goes to the next step instead of being lost. `after_each(outcomes
    so far)` once a step has ended, so that what it found is written at once."""
    console, start, outcomes = cli.console(), time.monotonic(), []
    for number, step in enumerate(steps, 1):
        left = budget_s - (time.monotonic() - start)
        later = sum(each.limit_s for each in steps[number:] if not each.skip)
        limit_s = max(step.limit_s, left - later)
        status, given, seconds, run_folder, frameworks, why = None, None, None, "", "", ""
        if step.skip:
            status = f"skipped: {step.skip}"
        elif stopping():
            status = "not started: interrupted"
        elif step.limit_s > left:
            status = "not started: out of time"
            why = f" (its limit of {step.limit_s:.0f} s exceeds the {max(left, 0):.0f} s left of --budget-s)"
        else:
            given = round(limit_s, 1)
            console.print(f"[{number}/{len(steps)}] {step.name} (limit {limit_s:.0f} s, {left:.0f} s left): "
                          f"{step.command}", markup=False)
            began = time.monotonic()
            status = execute(step, folder / step.name, limit_s, env, stopping)
            seconds = time.monotonic() - began
            run_dir = run_folder_of(step, folder / step.name)
            run_folder = str(run_dir.relative_to(folder)) if run_dir else ""
            frameworks = findings(step, folder / step.name, absent)
        console.print(f"[{number}/{len(steps)}] {step.name}: {status}{why}"
                      + (f" after {seconds:.0f} s" if seconds is not None else ""), markup=False)
        outcomes.append(Outcome(step.name, step.command, status, given,
                                None if seconds is None else round(seconds, 1), run_folder, frameworks))
        if seconds is not None:
            after_each(outcomes)
    return outcomes


# --- What comes back ----------------------------------------------------------------------------


def write_summary(outcomes: list[Outcome], folder: Path, context: list[str]) -> pd.DataFrame:
    table = pd.DataFrame([asdict(outcome) for outcome in outcomes], columns=[field.name for field in fields(Outcome)])
    table.to_csv(folder / "summary.csv", index=False)
    lines = [f"# Device check {folder.name}", "", *(f"- {line}" for line in context), "",
             table.astype(object).where(table.notna(), "").to_markdown(index=False, disable_numparse=True)]
    (folder / "device-check.md").write_text("\n".join(lines) + "\n")
    return table


def bundle(folder: Path, path: Path) -> int:
    """A tar.gz of the check's tables, reports, plans and log tails (no traces, no charts, no
    compilation cache); its size. Written beside `path` and then renamed, so a check stopped
    meanwhile leaves the last whole one."""
    partial = path.with_name(path.name + ".partial")
    with tarfile.open(partial, "w:gz") as archive:
        for member in sorted(folder.rglob("*")):
            relative = member.relative_to(folder)
            if not member.is_file() or member.suffix not in BUNDLED or {"profiles", JAX_CACHE} & set(relative.parts):
                continue
            name = str(Path(folder.name) / relative)
            if member.suffix == ".log" and member.stat().st_size > LOG_TAIL:
                with open(member, "rb") as log:
                    log.seek(-LOG_TAIL, 2)
                    tail = log.read()
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(tail), int(member.stat().st_mtime)
                archive.addfile(info, io.BytesIO(tail))
            else:
                archive.add(member, arcname=name)
    partial.replace(path)
    return path.stat().st_size


# --- Command line -------------------------------------------------------------------------------


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.device_check", description=__doc__.split("\n\n")[0],
                                     formatter_class=cli.HelpFormatter)
    parser.add_argument("--out", type=Path, help="the check's folder (default: results/device-check-<UTC stamp>/)")
    parser.add_argument("--budget-s", type=non_negative_float, metavar="SECONDS",
                        help=f"no step starts whose time limit exceeds what is left of this (default: {BUDGET_S:.0f}, "
                             f"or {DRY_RUN_BUDGET_S:.0f} for the dry run)")
    parser.add_argument("--limits-from", type=Path, metavar="SUMMARY_CSV",
                        help=f"an earlier check's summary.csv (the first GPU run's): each step's time limit "
                             f"{LIMIT_MARGIN:g} x the seconds it took there, {OUTGROWN:g} x its limit where it was "
                             f"stopped at it (default: the estimates, from FLOP counts)")
    parser.add_argument("--data-dir", type=Path,
                        help="a folder holding cifar-10-batches-py/, for time to 94%% (default: the cached copy; "
                             "without one those steps are skipped)")
    parser.add_argument("--jax-cache", type=Path, metavar="DIR",
                        help=f"JAX's persistent compilation cache for every step's JAX workers (default: {JAX_CACHE}/ "
                             f"in the check's folder, so that each program is compiled once per check; a folder "
                             f"shared by several checks spares even that, and compile_s then reads a load)")
    parser.add_argument("--dry-run", action="store_true",
                        help="every step scaled down on the CPU (synthetic data, a few steps), to test the check")
    parser.add_argument("--bundle", type=Path, metavar="PATH",
                        help="also write a tar.gz of the summary and the run folders' tables, plans and reports")
    return parser


def main(argv: list[str] | None = None) -> int:
    # A Ctrl-C is noted and acted on where the check can stop cleanly (see Interruption). A handler of
    # our own also gives every step the default action on SIGINT, even where a shell started this with
    # SIGINT ignored, so that the steps stop on Ctrl-C.
    interruption = Interruption()
    previous = signal.signal(signal.SIGINT, interruption)
    try:
        return check(argv, interruption)
    finally:
        signal.signal(signal.SIGINT, previous)


def check(argv: list[str] | None, interruption: Interruption) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    budget_s = args.budget_s if args.budget_s is not None else DRY_RUN_BUDGET_S if args.dry_run else BUDGET_S
    if args.dry_run and args.data_dir:
        parser.error("argument --data-dir: the dry run trains on synthetic data; give --data-dir to the GPU check")
    try:
        batches = None if args.dry_run else datasets.find_cifar10(args.data_dir)
    except datasets.DataError as error:
        parser.error(f"argument --data-dir: {error}")
    scale = DRY_RUN if args.dry_run else GPU
    limits, limits_are = {}, scale.limits_are
    if args.limits_from:
        try:
            limits, limits_are = limits_from(args.limits_from, scale.limits)
        except (OSError, ValueError) as error:  # pandas' parser errors are ValueErrors
            parser.error(f"argument --limits-from: {args.limits_from}: {error}")
    gpus = [] if args.dry_run else gpu_names()
    if not args.dry_run and not gpus:
        parser.error("no GPU: nvidia-smi -L lists none (on a machine without one, test the check with --dry-run)")
    if args.bundle and not args.bundle.parent.is_dir():
        parser.error(f"argument --bundle: {str(args.bundle.parent)!r} is not a folder")
    folder = (args.out or Path("results") / time.strftime("device-check-%Y%m%d-%H%M%S", time.gmtime())).resolve()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        parser.error(f"argument --out: {str(folder)!r} exists and is not an empty folder")
    cache = (args.jax_cache or folder / JAX_CACHE).resolve()
    if cache.exists() and not cache.is_dir():
        parser.error(f"argument --jax-cache: {str(cache)!r} is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    cached = sum(1 for path in cache.rglob("*") if path.is_file())

    absent = not_installed()
    machine = Machine(args.dry_run, len(gpus), batches.parent if batches else None, tuple(absent))
    started = time.monotonic()

    def context() -> list[str]:
        return [f"device: {', '.join(gpus) if gpus else 'CPU (dry run: every step scaled down, synthetic data)'}",
                f"budget {budget_s:.0f} s, used {time.monotonic() - started:.0f} s; "
                f"data for time to 94%: {machine.data_dir or 'none'}",
                f"step limits: {limits_are}",
                f"JAX compilation cache: {cache} ({cached:,} files at the start): a JAX job whose program an earlier "
                f"process compiled into it loads that program, and its compile_s is the load",
                *([f"not installed: {', '.join(absent)} (its rows say unavailable; no step needs it)"]
                  if absent else [])]

    def save(outcomes: list[Outcome]) -> None:  # after each step: a check stopped from outside keeps what it found
        write_summary(outcomes, folder, context())
        if args.bundle:
            bundle(folder, args.bundle)

    env = {**os.environ, **jax_cache_env(cache)}
    outcomes = run_check(plan(machine, limits), folder, budget_s, absent, env, lambda: interruption.requested, save)
    lines = context()
    table = write_summary(outcomes, folder, lines)
    console = cli.console()
    console.print("\n" + "\n".join(lines), markup=False)
    # Each command was printed as its step started; the table's files keep it.
    console.print(cli.dataframe_to_text(table.drop(columns="command")), markup=False)
    console.print(f"summary: {folder / 'summary.csv'} and {folder / 'device-check.md'}", markup=False)
    if args.bundle:
        size = bundle(folder, args.bundle)
        over = size > RETURN_LIMIT
        console.print(f"bundle: {args.bundle} ({size / 2**10:,.0f} KiB)"
                      + (f"; WARNING: over the {RETURN_LIMIT // 2**20} MiB a device machine returns" if over else ""),
                      markup=False)
    return 130 if interruption.requested else 0


if __name__ == "__main__":
    sys.exit(main())
