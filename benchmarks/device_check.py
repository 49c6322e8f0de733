"""`python -m benchmarks.device_check`: the one prepared check of what only a GPU exercises
(pinned-memory prefetch, the GPU matmul and bf16 peaks, device memory counters, bf16 autocast,
ResNet-9's BatchNorm and time to 94%, NCCL data parallelism with synced BatchNorm, JAX sharding,
the profiler), each step one of the suite's own commands in a child process with its own time
limit, in priority order within one time budget. A failed step is a finding: it is recorded and
the next step runs. `--dry-run` runs the same steps scaled down on the CPU.

Exit status: 0 the check ran to its end (whatever its steps found), 2 bad input, 130 interrupted."""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import shlex
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from benchmarks import cli
from benchmarks.harness import data as datasets
from benchmarks.harness.results import latest_attempts, read_table
from benchmarks.harness.spawn import PROJECT_ROOT
from frameworks import registry

BUDGET_S = 540.0  # a lent device machine gives one check 9 minutes
DRY_RUN_BUDGET_S = 1500.0  # a busy 2-core CPU: the float64 parity reference alone can take minutes there
GRACE_S = 15.0  # a step stopped at its limit gets this long after Ctrl-C to stop its workers and render its report
RETURN_LIMIT = 16 * 2**20  # the largest file a device machine hands back from $OUT
LOG_TAIL = 256 * 2**10  # a log in the bundle keeps its last bytes: where a failure says why
BUNDLED = (".csv", ".json", ".md", ".log")  # profiles/ holds traces (.json too) and stays out
NO_DATA = "no CIFAR-10 copy (give --data-dir)"
PARITY_CSV = "parity.csv"  # a parity step's comparisons, as a run folder's parity.csv holds them


# --- The plan -----------------------------------------------------------------------------------


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
    tuning: bool  # whether benchmarks.run offers --tuning


@dataclass(frozen=True)
class Scale:
    """What each kind of step selects and how large it runs, and each step's time limit in seconds:
    the GPU check's, or the dry run's on a CPU."""

    parity: tuple[str, ...]
    timing: tuple[str, ...]
    recipe: tuple[str, ...]  # besides the recipe's own settings and the data
    parallel: tuple[str, ...]
    profile: tuple[str, ...]
    limits: dict[str, float]


GPU = Scale(
    parity=("--framework", "all", "--variant", "all", "--model", "lenet,resnet9"),
    timing=("--framework", "all", "--variant", "all", "--model", "lenet,resnet9", "--repeats", "3", "--steps", "60",
            "--window", "20"),
    recipe=("--framework", "pytorch,jax"),  # the recipe's batch 512 and 24 epochs, stopped at the target
    parallel=("--framework", "all", "--model", "lenet,resnet9", "--steps", "40", "--window", "20"),  # synced BatchNorm
    profile=("--framework", "all", "--model", "resnet9", "--steps", "20", "--window", "10"),
    # Guesses, not measurements, summing to BUDGET_S on a one-GPU machine (where the two-device
    # step is skipped). A step that ends early passes its unused time on (see `run_check`); one that
    # outgrows what it is given is stopped and recorded as a timeout, with what it had measured kept.
    limits={"parity-fp32": 120, "parity-bf16": 75, "recipe-bf16": 120, "timing": 110, "recipe-fp32": 50,
            "parity-tf32": 35, "devices-2": 60, "profile": 30},
)
# The dry run tests the check, not the frameworks: each step runs the same command on JAX alone
# (the lightest import), LeNet where the step allows, and a handful of steps, so that the whole
# check fits a few minutes of a small CPU.
TINY = ("--framework", "jax", "--batch-size", "16", "--train-size", "64", "--test-size", "32", "--warmup", "1")
DRY_RUN = Scale(
    parity=("--framework", "jax", "--variant", "default", "--model", "lenet"),
    timing=(*TINY, "--model", "lenet", "--repeats", "2", "--steps", "4", "--window", "2"),
    recipe=(*TINY, "--epochs", "1"),
    parallel=(*TINY, "--model", "lenet", "--steps", "2", "--window", "2"),
    profile=(*TINY, "--model", "lenet", "--steps", "2", "--window", "2"),
    # The parity steps compute the float64 reference in NumPy, which no option shrinks.
    limits={**dict.fromkeys(GPU.limits, 240), "parity-fp32": 360, "parity-tf32": 360, "parity-bf16": 360},
)


def plan(machine: Machine) -> list[Step]:
    """Every step, in priority order, with the reason it is skipped on this machine, if any: first
    what a GPU reference needs (parity in fp32 and bf16, time to 94% in bf16, throughput with
    repeats), then what adds to it (time to 94% in fp32, TF32 parity, two devices, profiles)."""
    scale, device = (DRY_RUN, "cpu") if machine.dry_run else (GPU, "cuda")
    synthetic = ("--data", "synthetic")
    if machine.dry_run:
        data, no_data = synthetic, None
    elif machine.data_dir is None:
        data, no_data = (), NO_DATA
    else:
        data, no_data = ("--data", "cifar10", "--data-dir", str(machine.data_dir)), None

    def parity(precision: str) -> Step:
        return Step(f"parity-{precision}", "benchmarks.parity",
                    ("--device", device, *scale.parity, "--precision", precision), scale.limits[f"parity-{precision}"],
                    "tf32 is fp32 on a CPU (no TF32 units): parity-fp32 covers it"
                    if machine.dry_run and precision == "tf32" else None)

    def recipe(precision: str) -> Step:
        return Step(f"recipe-{precision}", "benchmarks.run",
                    ("--device", device, *scale.recipe, "--recipe", "resnet9-94", "--target-accuracy", "0.94",
                     "--precision", precision, *data, "--no-parity"), scale.limits[f"recipe-{precision}"], no_data)

    tuning = ("--tuning", "both") if machine.tuning else ()
    timing = Step("timing", "benchmarks.run", ("--device", device, *scale.timing, *synthetic, "--no-parity", *tuning),
                  scale.limits["timing"])
    # On a CPU the two devices are host devices (docs/devices.md). The
    # runner first checks 2 devices against one, so this step keeps its parity check.
    one_gpu = None if machine.dry_run or machine.gpus >= 2 else f"{machine.gpus} GPU listed by nvidia-smi -L, 2 needed"
    devices = Step("devices-2", "benchmarks.run", ("--device", device, "--devices", "2", *scale.parallel, *synthetic),
                   scale.limits["devices-2"], one_gpu)
    profile = Step("profile", "benchmarks.run", ("--device", device, "--profile", *scale.profile, *synthetic,
                                                 "--no-parity"), scale.limits["profile"])
    return [parity("fp32"), parity("bf16"), recipe("bf16"), timing, recipe("fp32"), parity("tf32"), devices, profile]


# --- What the machine offers --------------------------------------------------------------------


def gpu_names() -> list[str]:
    """nvidia-smi's list (no framework is imported to count GPUs); none without the tool."""
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in listing.splitlines() if line.startswith("GPU ")]


def runner_offers_tuning() -> bool:
    """Whether this tree's runner has --tuning yet: read from its help, so the check works either way."""
    help_text = subprocess.run([sys.executable, "-m", "benchmarks.run", "--help"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=120).stdout
    return "--tuning" in help_text


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


# --- Running ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    step: str
    command: str
    status: str  # ok, failed (exit N), timeout, interrupted, skipped: why, not started: why
    limit_s: float | None  # what it was given: its own limit and the time earlier steps left unused
    seconds: float | None
    run_folder: str  # relative to the check's folder; empty where none was written
    frameworks: str  # each framework's job statuses in the run folder, or those not installed


def stop(process: subprocess.Popen) -> None:
    """Ctrl-C, as a user would: the runner stops its workers and renders what it measured; a
    process still there after the grace period is killed (its workers die with it)."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def execute(step: Step, folder: Path, limit_s: float) -> str:
    """Run one step, stopped after limit_s, with its output in folder/console.log; its status."""
    folder.mkdir()
    argv = [sys.executable, "-m", step.module, *step.options, *step.output_options(folder)]
    with open(folder / "console.log", "wb") as log:
        # Same process group: a Ctrl-C at the terminal reaches the step too, which stops itself.
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT)
        try:
            returncode = process.wait(max(limit_s - GRACE_S, 1.0))
        except subprocess.TimeoutExpired:
            stop(process)
            return "timeout"
        except KeyboardInterrupt:
            stop(process)
            raise
    return "ok" if returncode == 0 else f"failed (exit {returncode})"


def run_folder_of(folder: Path) -> Path | None:
    """The run folder a step wrote: the runner's, or the step's own where parity wrote its table."""
    if (folder / PARITY_CSV).is_file():
        return folder
    runs = [path for path in folder.iterdir() if (path / "plan.json").is_file()] if folder.is_dir() else []
    return runs[0] if runs else None


def parity_statuses(table: pd.DataFrame, absent: list[str]) -> str:
    """Per framework, the verdict of the asserted comparisons it is part of, e.g. "pytorch: passed;
    jax: FAILED 2 of 1,204; tensorflow: not installed"."""
    asserted = table[table["asserted"]]
    first = asserted["pair"].str.extract(r"^(\w+):", expand=False)  # "pytorch:eager vs jax:jit": pytorch
    second = asserted["pair"].str.extract(r" vs (\w+):", expand=False)  # jax; none against float64
    parts = []
    for framework in dict.fromkeys(first.dropna()):
        rows = asserted[first.eq(framework) | second.eq(framework)]
        failed = int((~rows["passed"]).sum())
        parts.append(f"{framework}: " + ("passed" if not failed else f"FAILED {failed:,} of {len(rows):,}"))
    return "; ".join([*parts, *(f"{name}: not installed" for name in absent)])


def framework_statuses(run_dir: Path, absent: list[str] = ()) -> str:
    """Per framework, its jobs' statuses, e.g. "pytorch: ok x6; tensorflow: not installed", or, for a
    parity step, its verdict."""
    if not (run_dir / "summary.csv").is_file():
        return parity_statuses(pd.read_csv(run_dir / PARITY_CSV), list(absent))
    summary = latest_attempts(read_table(run_dir, "summary"))
    parts = []
    for framework, rows in summary.groupby("framework", sort=False):
        missing = rows["status"].eq("unavailable") & rows["error"].astype(str).str.contains("No module named")
        if missing.all():
            parts.append(f"{framework}: not installed")
            continue
        counts = rows["status"].value_counts()
        parts.append(f"{framework}: " + ", ".join(f"{status} x{count}" for status, count in counts.items()))
    return "; ".join(parts)


def run_check(steps: list[Step], folder: Path, budget_s: float, absent: list[str],
              after_each: Callable[[list[Outcome]], None] = lambda outcomes: None) -> list[Outcome]:
    """Each step in order while the budget fits its limit; a failure does not stop the check. A
    step is given its limit and whatever earlier steps left unused, as long as the later steps'
    limits still fit the budget: time saved early goes to the next step instead of being lost.
    `after_each(outcomes so far)` once a step has ended, so that what it found is written at once."""
    console, start, outcomes = cli.console(), time.monotonic(), []
    absent_note = "; ".join(f"{name}: not installed" for name in absent)
    interrupted = False
    for number, step in enumerate(steps, 1):
        left = budget_s - (time.monotonic() - start)
        later = sum(each.limit_s for each in steps[number:] if not each.skip)
        limit_s = max(step.limit_s, left - later)
        status, given, seconds, run_folder, frameworks, why = None, None, None, "", "", ""
        if step.skip:
            status = f"skipped: {step.skip}"
        elif interrupted:
            status = "not started: interrupted"
        elif step.limit_s > left:
            status = "not started: out of time"
            why = f" (its limit of {step.limit_s:.0f} s exceeds the {max(left, 0):.0f} s left of --budget-s)"
        else:
            given = round(limit_s, 1)
            console.print(f"[{number}/{len(steps)}] {step.name} (limit {limit_s:.0f} s, {left:.0f} s left): "
                          f"{step.command}", markup=False)
            began = time.monotonic()
            try:
                status = execute(step, folder / step.name, limit_s)
            except KeyboardInterrupt:
                interrupted, status = True, "interrupted"
            seconds = time.monotonic() - began
            run_dir = run_folder_of(folder / step.name)
            run_folder = str(run_dir.relative_to(folder)) if run_dir else ""
            frameworks = framework_statuses(run_dir, absent) if run_dir else absent_note
        console.print(f"[{number}/{len(steps)}] {step.name}: {status}{why}"
                      + (f" after {seconds:.0f} s" if seconds is not None else ""), markup=False)
        outcomes.append(Outcome(step.name, step.command, status, given,
                                None if seconds is None else round(seconds, 1), run_folder, frameworks))
        if seconds is not None:
            after_each(outcomes)
    return outcomes


# --- What comes back ----------------------------------------------------------------------------


def write_summary(outcomes: list[Outcome], folder: Path, context: list[str]) -> pd.DataFrame:
    table = pd.DataFrame([asdict(outcome) for outcome in outcomes])
    table.to_csv(folder / "summary.csv", index=False)
    lines = [f"# Device check {folder.name}", "", *(f"- {line}" for line in context), "",
             table.astype(object).where(table.notna(), "").to_markdown(index=False, disable_numparse=True)]
    (folder / "device-check.md").write_text("\n".join(lines) + "\n")
    return table


def bundle(folder: Path, path: Path) -> int:
    """A tar.gz of the check's tables, reports, plans and log tails (no traces, no charts); its size.
    Written beside `path` and then renamed, so a check stopped meanwhile leaves the last whole one."""
    partial = path.with_name(path.name + ".partial")
    with tarfile.open(partial, "w:gz") as archive:
        for member in sorted(folder.rglob("*")):
            relative = member.relative_to(folder)
            if not member.is_file() or member.suffix not in BUNDLED or "profiles" in relative.parts:
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
    parser.add_argument("--data-dir", type=Path,
                        help="a folder holding cifar-10-batches-py/, for time to 94%% (default: the cached copy; "
                             "without one those steps are skipped)")
    parser.add_argument("--dry-run", action="store_true",
                        help="every step scaled down on the CPU (synthetic data, a few steps), to test the check")
    parser.add_argument("--bundle", type=Path, metavar="PATH",
                        help="also write a tar.gz of the summary and the run folders' tables, plans and reports")
    return parser


def main(argv: list[str] | None = None) -> int:
    # The steps must stop on Ctrl-C even when a shell started this with SIGINT ignored: a Python
    # handler here gives every child the default action, which Python turns into KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = build_parser()
    args = parser.parse_args(argv)
    budget_s = args.budget_s if args.budget_s is not None else DRY_RUN_BUDGET_S if args.dry_run else BUDGET_S
    if args.dry_run and args.data_dir:
        parser.error("argument --data-dir: the dry run trains on synthetic data; give --data-dir to the GPU check")
    try:
        batches = None if args.dry_run else datasets.find_cifar10(args.data_dir)
    except datasets.DataError as error:
        parser.error(f"argument --data-dir: {error}")
    gpus = [] if args.dry_run else gpu_names()
    if not args.dry_run and not gpus:
        parser.error("no GPU: nvidia-smi -L lists none (on a machine without one, test the check with --dry-run)")
    if args.bundle and not args.bundle.parent.is_dir():
        parser.error(f"argument --bundle: {str(args.bundle.parent)!r} is not a folder")
    folder = (args.out or Path("results") / time.strftime("device-check-%Y%m%d-%H%M%S", time.gmtime())).resolve()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        parser.error(f"argument --out: {str(folder)!r} exists and is not an empty folder")
    folder.mkdir(parents=True, exist_ok=True)

    machine = Machine(args.dry_run, len(gpus), batches.parent if batches else None, runner_offers_tuning())
    absent = not_installed()
    started = time.monotonic()

    def context() -> list[str]:
        return [f"device: {', '.join(gpus) if gpus else 'CPU (dry run: every step scaled down, synthetic data)'}",
                f"budget {budget_s:.0f} s, used {time.monotonic() - started:.0f} s; "
                f"data for time to 94%: {machine.data_dir or 'none'}",
                *([f"not installed: {', '.join(absent)} (its rows say unavailable; no step needs it)"]
                  if absent else [])]

    def save(outcomes: list[Outcome]) -> None:  # after each step: a check stopped from outside keeps what it found
        write_summary(outcomes, folder, context())
        if args.bundle:
            bundle(folder, args.bundle)

    outcomes = run_check(plan(machine), folder, budget_s, absent, save)
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
    return 130 if any(outcome.status == "interrupted" for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
