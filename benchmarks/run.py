"""`python -m benchmarks.run`: plan the jobs, check parity, run every job in its own worker
process under a progress display, append the result tables as each job ends, render the report.

Exit status: 0 all jobs ran, 1 a job failed (error, timeout, divergence), 2 bad input,
3 nothing could run on the device, 4 the machine was busy and --require-quiet refused to start,
130 interrupted (what finished is kept)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import psutil
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from benchmarks import cli
from benchmarks.checks.runner import ParityOutcome, run_data_parallel_parity, run_parity_jobs
from benchmarks.harness import data as datasets
from benchmarks.harness.contention import BUSY_THRESHOLD, SUM_BUSY_SHARE, machine_check
from benchmarks.harness.environment import collect
from benchmarks.harness.jobs import INPUTS, Data, Job, Placement, Timing, Workload
from benchmarks.harness.recording import JobRecorder, close_killed_attempts, load_plan, resume_note
from benchmarks.harness.results import SCHEMA, latest_attempts, new_run_dir, read_table
from benchmarks.harness.rows import SummaryRow
from benchmarks.harness.spawn import PROJECT_ROOT, run_worker, run_workers
from frameworks import profiled, tuning
from frameworks.base import LR_SCHEDULES, TrainConfig

INTERLEAVE = ("jobs", "repeats")

FAILED = ("error", "timeout", "diverged")


def _number(text: str) -> float:
    """The value, or NaN (which every range check below rejects) when `text` is not a number."""
    try:
        return float(text)
    except ValueError:
        return float("nan")


def fraction(text: str) -> float:
    value = _number(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number in [0, 1)")
    return value


def accuracy(text: str) -> float:
    value = _number(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be an accuracy in (0, 1]")
    return value


def input_paths(text: str) -> list[str]:
    """A comma-separated list of INPUTS; native alone is compared with the suite's prefetch path."""
    paths = cli.unique_list(text)
    unknown = [path for path in paths if path not in INPUTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"{', '.join(map(repr, unknown))}: not an input path (choose from: "
                                         f"{', '.join(INPUTS)})")
    return ["prefetch", *paths] if paths == ["native"] else paths


def seed_choice(text: str) -> int | list[int]:
    """--seeds: a count N (N seeds from --seed on), or, where it holds a comma, the distinct seeds themselves."""
    if "," in text:
        return [cli.non_negative_int(item) for item in cli.unique_list(text)]
    return cli.positive_int(text)


def seeds_of(args: argparse.Namespace) -> list[int]:
    """The seeds every job runs from, in order."""
    return list(range(args.seed, args.seed + args.seeds)) if isinstance(args.seeds, int) else args.seeds


# Published training settings, applied as defaults that explicit options override.
RECIPES = {
    # Myrtle.ai's DAWNBench ResNet-9 (D. Page, "How to train your ResNet", 2018), as the DAWNBench
    # dawn.py of davidcpage/cifar10-fast sets it; its logs.tsv reaches 94.08% at epoch 24 (93.35% at
    # 23). The network, its 0.125 logit scale and PyTorch's BatchNorm defaults are frameworks/base.py's.
    "resnet9-94": {
        "model": ["resnet9"],
        "batch_size": [512],  # dawn.py: batch_size = 512 (the last partial batch dropped: 97 steps an epoch)
        "epochs": 24,  # dawn.py: epochs = 24
        # dawn.py: PiecewiseLinear([0, 5, epochs], [0, 0.4, 0]) at step / steps-per-epoch, a step's rate
        # read before the step is counted (the first step's rate is 0), as LambdaLR reads the suite's
        # (the repository's later rewrite of dawn.py counts from 1).
        "lr": 0.4, "lr_schedule": "onecycle", "lr_warmup": 5 / 24,
        "momentum": 0.9,  # dawn.py: momentum = 0.9
        # utils.py's Nesterov: g += wd * w; v = momentum * v + g; w -= lr * (g + momentum * v), PyTorch's form
        # (the later rewrite keeps lr inside v).
        "nesterov": True,
        # dawn.py: weight_decay = 5e-4, given as 5e-4 * 512 beside a rate divided by 512 because its
        # loss is CrossEntropyLoss(reduction='sum'): the same steps as 5e-4 and 0.4 on the batch mean.
        "weight_decay": 5e-4,
        "label_smoothing": 0.0,  # dawn.py's loss is plain cross-entropy (smoothing is a later part's trick)
        "augment": "crop-flip-cutout",  # dawn.py: pad 4, [Crop(32, 32), FlipLR(), Cutout(8, 8)]
    },
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0],
                                     formatter_class=cli.HelpFormatter)
    cli.add_selection_arguments(parser)
    parser.add_argument("--batch-size", type=cli.positive_ints, default=[128], metavar="N[,N...]",
                        help="training batch size per device, or a comma-separated sweep such as 32,128,512")
    parser.add_argument("--devices", type=cli.positive_ints, default=[1], metavar="N[,N...]",
                        help="data-parallel training over N devices per node (a sweep such as 1,2), through each "
                             "framework's engine: PyTorch DDP (a process per device), tf.distribute, JAX sharding; "
                             "the global batch is N x nodes x --batch-size. On CPU: PyTorch processes over gloo on "
                             "their own cores, TensorFlow logical devices, XLA host devices")
    parser.add_argument("--nodes", type=cli.positive_int, default=1,
                        help="machines that train each job together: run the same command on each, with its "
                             "--node-rank and node 0's --coordinator; node 0's run folder holds the results")
    parser.add_argument("--node-rank", type=cli.non_negative_int, default=0, help="this machine's rank, 0..nodes-1")
    parser.add_argument("--coordinator", type=cli.address, metavar="HOST:PORT",
                        help="where the nodes meet (node 0's address); the engines use PORT and the ports above it")
    parser.add_argument("--node-hosts", type=cli.unique_list, metavar="HOST[,HOST...]",
                        help="every node's host in rank order, for TensorFlow's multi-worker cluster (default: the "
                             "coordinator's host for all, i.e. one machine)")
    parser.add_argument("--epochs", type=cli.non_negative_int, default=None,
                        help="training epochs, each timed and evaluated (default 1, or 0 with --steps)")
    parser.add_argument("--target-accuracy", type=accuracy, default=None, metavar="A",
                        help="time to accuracy: evaluate after every epoch and stop a job when its test accuracy "
                             "first reaches A (--epochs is then the most it may take)")
    parser.add_argument("--eval-every", type=cli.positive_int, default=None, metavar="N",
                        help="evaluate the test set after every N training steps (and the last) instead of after "
                             "every epoch; timed windows restart after each evaluation, so make N a multiple of "
                             "--window")
    parser.add_argument("--steps", type=cli.non_negative_int, default=0,
                        help="timed steps of a timing-only run (no evaluation unless --epochs is given)")
    parser.add_argument("--warmup", type=cli.non_negative_int, default=5, help="untimed steps after the first")
    parser.add_argument("--window", type=cli.positive_int, default=20,
                        help="steps per timed window; each window ends with a device sync")
    parser.add_argument("--input", type=input_paths, default=["prefetch"], metavar="PATH[,PATH...]",
                        help="input paths, each run for every job: the suite's NumPy pipeline, prepared before the "
                             "clock, with each batch's host-to-device copy placed so: prefetch, the next batch while "
                             "the current step runs; resident, a window's batches before its clock starts (as if the "
                             "data lived on the device); step, inside the timed step. native: each framework's own "
                             "pipeline (torchvision + DataLoader, tf.data, Grain) timed end to end, run beside "
                             "prefetch unless a suite path is given too (docs/input-pipelines.md)")
    parser.add_argument("--input-workers", type=int, default=None, metavar="N",
                        help="workers of every native pipeline (DataLoader and Grain processes, tf.data parallel "
                             "calls and threads), 0 to run it in the training process (default: each framework's "
                             "own, recorded per row)")
    parser.add_argument("--repeats", type=cli.positive_int, default=1, help="separate processes per job")
    parser.add_argument("--interleave", choices=INTERLEAVE, default="jobs",
                        help="which processes take turns, one timed window each: jobs = every job (and repeat) "
                             "of one model, batch size and device count, so a slow spell of the machine falls on "
                             "every framework alike; repeats = only the repeats of one job (fewer processes held "
                             "in memory at once). Data-parallel jobs (--devices N) interleave repeats only")
    parser.add_argument("--seed", type=cli.non_negative_int, default=0, help="the first of --seeds N")
    parser.add_argument("--seeds", type=seed_choice, default=1, metavar="N|S,S,...",
                        help="seeds to train every job from, each setting its initial weights, batch order and "
                             "augmentation: N seeds from --seed on, or a comma-separated list of seeds (such as "
                             "3,7,11); each seed runs --repeats processes, and its job ids end in -s<seed>-r<repeat> "
                             "(seed 0's in -r<repeat>)")
    parser.add_argument("--lr", type=cli.positive_float, default=0.01, help="SGD learning rate")
    parser.add_argument("--momentum", type=fraction, default=0.9, help="SGD momentum (PyTorch's form)")
    parser.add_argument("--weight-decay", type=fraction, default=0.0, help="L2 added to the gradient")
    parser.add_argument("--nesterov", action="store_true", help="Nesterov momentum (PyTorch's form)")
    parser.add_argument("--label-smoothing", type=fraction, default=0.0, metavar="S",
                        help="cross-entropy against (1 - S) on the true class plus S / 10 on every class")
    parser.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="constant",
                        help="cosine decays the learning rate to 0 over the run's steps; onecycle rises linearly "
                             "from 0 to --lr over the warm-up and falls linearly to 0 at the last step")
    parser.add_argument("--lr-warmup", type=fraction, default=0.25, metavar="F",
                        help="fraction of the run's steps over which the onecycle schedule rises")
    parser.add_argument("--recipe", choices=RECIPES,
                        help="published training settings as defaults (explicit options override them): "
                             "resnet9-94 is the DAWNBench ResNet-9 recipe (see docs/method.md)")
    parser.add_argument("--data", choices=("auto", "cifar10", "synthetic"), default="auto",
                        help="auto: CIFAR-10 if cached, given or downloadable, else synthetic")
    parser.add_argument("--data-dir", type=Path, help="a folder holding cifar-10-batches-py/")
    parser.add_argument("--augment", choices=datasets.AUGMENTATIONS, default="none",
                        help="crop-flip: 4-pixel reflect padding, a random 32x32 crop and a random horizontal flip "
                             "per image, drawn from the seed and epoch; crop-flip-cutout: then an 8x8 square of each "
                             "image set to the mean (the suite's pipeline only); its cost is reported as augment_s, "
                             "outside the timed windows")
    parser.add_argument("--train-size", type=cli.positive_int, help="use only the first N training examples")
    parser.add_argument("--test-size", type=cli.positive_int, help="use only the first N test examples")
    parser.add_argument("--out", type=Path, default=Path("results"), help="runs are written to OUT/<run-id>/")
    parser.add_argument("--require-quiet", action="store_true",
                        help="refuse to start (exit status 4) when other processes use more than "
                             f"{BUSY_THRESHOLD:.0%}% of the cores during a one-second look before the run")
    parser.add_argument("--no-parity", action="store_true", help="skip the parity check before the jobs")
    parser.add_argument("--profile", action="store_true",
                        help="after each job's timed steps, run a few more under the framework's own profiler "
                             "(torch.profiler, tf.profiler, jax.profiler): traces in RUN/profiles/<job>/, self time "
                             "per operation in profile.csv, and where the time goes in the report")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR",
                        help="finish an earlier run: run only its jobs without an ok row (other options ignored)")
    return parser


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The options, a --recipe's settings standing in for any not given (a timing-only run, with
    --steps, keeps its own epochs)."""
    args = parser.parse_args(argv)
    if args.recipe:
        recipe = {name: value for name, value in RECIPES[args.recipe].items() if not (name == "epochs" and args.steps)}
        own = {name: parser.get_default(name) for name in recipe}
        parser.set_defaults(**recipe)
        args = parser.parse_args(argv)
        parser.set_defaults(**own)
    return args


# --- Planning -----------------------------------------------------------------------------------


def resolve_data(args: argparse.Namespace, console) -> tuple[str, str | None]:
    """('cifar10', batches folder) or ('synthetic', None); a fallback is announced loudly."""
    if args.data == "synthetic":
        return "synthetic", None
    folder = datasets.find_cifar10(args.data_dir)
    if folder is None:
        try:
            console.print("CIFAR-10 is not cached: downloading the official archive...")
            folder = datasets.download_cifar10()
        except datasets.DataError as error:
            if args.data == "cifar10":
                raise
            console.print(f"[bold yellow]WARNING: {error}\nWARNING: falling back to SYNTHETIC data: "
                          f"timings are valid, accuracies are not CIFAR-10's.[/]")
            return "synthetic", None
    for name in (*datasets.TRAIN_FILES, datasets.TEST_FILE):  # fail now, not in every worker
        datasets.read_batch(folder / name)
    return "cifar10", str(folder)


def training_settings(args: argparse.Namespace) -> dict:
    """The optimizer and schedule every job of the run trains with, for env.json and the report."""
    settings = {"recipe": args.recipe, "learning_rate": args.lr, "momentum": args.momentum, "nesterov": args.nesterov,
                "weight_decay": args.weight_decay, "label_smoothing": args.label_smoothing,
                "lr_schedule": args.lr_schedule}
    if args.lr_schedule == "onecycle":
        settings["warmup_fraction"] = args.lr_warmup
    return settings


def tuning_plan(selection: cli.Selection) -> dict:
    """For env.json: the run's profiles, and what the tuned one asks of each selected variant on the
    run's device and precision (what each worker found is in summary.csv's `settings`)."""
    return {"profiles": list(selection.profiles),
            "tuned": {f"{framework}:{variant}": [setting.text for setting in tuning.settings_for(
                framework, selection.device, selection.precision, variant)] for framework, variant in selection.pairs}}


def plan_jobs(args: argparse.Namespace, selection: cli.Selection, data: str, data_dir: str | None) -> list[Job]:
    training = TrainConfig(learning_rate=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
                           lr_schedule=args.lr_schedule, precision=selection.precision, nesterov=args.nesterov,
                           label_smoothing=args.label_smoothing, warmup_fraction=args.lr_warmup)
    timing = Timing(epochs=args.epochs if args.epochs is not None else (0 if args.steps else 1), steps=args.steps,
                    warmup_steps=args.warmup, window=args.window, eval_every=args.eval_every or 0,
                    target_accuracy=args.target_accuracy, profile=args.profile)
    feeds = [Data(name=data, folder=data_dir, train_size=args.train_size, test_size=args.test_size,
                  augment=args.augment, input=path, input_workers=args.input_workers if path == "native" else None)
             for path in args.input]
    return [
        Job(kind="benchmark", what=Workload(framework, variant, model, batch_size, profile), training=training,
            timing=timing,
            data=feed, placement=Placement(device=selection.device, threads=selection.threads, devices=devices,
                                           nodes=args.nodes, node_rank=args.node_rank, coordinator=args.coordinator,
                                           node_hosts=tuple(args.node_hosts or ())),
            repeat=repeat, seed=seed)
        for model in selection.models
        for framework, variant in selection.pairs
        for profile in selection.profiles
        for batch_size in args.batch_size
        for devices in args.devices
        for feed in feeds
        for seed in seeds_of(args)
        for repeat in range(1, args.repeats + 1)
    ]


# --- Running ------------------------------------------------------------------------------------


def describe(row: SummaryRow) -> str:
    if row.status != "ok":
        return f"[bold red]{row.status}[/]: {escape(str(row.error))}"  # worker text, not markup
    parts = []
    if row.windows:
        parts.append(f"{row.step_ms_median:.2f} ms/step, {row.images_per_s:,.0f} images/s")
        if row.busy:
            parts.append(f"[bold yellow]measured on a busy machine (other processes took {row.contention:.0%} "
                         f"of its cores)[/]")
    else:
        parts.append("[yellow]no complete timed window (give more steps or a smaller --window)[/]")
    if row.test_accuracy is not None:
        parts.append(f"test accuracy {row.test_accuracy:.1%}")
    if row.profile_error:
        parts.append(f"[yellow]not profiled: {escape(row.profile_error)}[/]")
    if row.target_reached:
        parts.append(f"reached {row.target_accuracy:.1%} in epoch {row.epochs_to_target}, "
                     f"{row.train_s_to_target:.1f} s of training ({row.wall_s_to_target:.1f} s with evaluation)")
    elif row.target_reached is False:
        parts.append(f"[yellow]did not reach {row.target_accuracy:.1%} (best {row.best_accuracy:.1%})[/]")
    return ", ".join(parts)


# A worker of any of the three frameworks peaks at up to 3,328 MiB of RSS on a CPU (results/reference:
# pytorch:compile, LeNet at batch 512; ResNet-9 at batch 128 takes 3.2 GiB): the processes that take turns all hold
# theirs at once, so a turn group is no larger than the memory available at the start allows.
WORKER_MEMORY = 3.5 * 2**30


def most_at_once() -> int:
    """How many workers the memory available now holds at once, at WORKER_MEMORY each."""
    return max(1, int(psutil.virtual_memory().available // WORKER_MEMORY))


def turn_groups(jobs: list[Job], interleave: str, most: int | None = None) -> list[list[Job]]:
    """The jobs in plan order, gathered into the groups whose processes run at once, taking turns:
    with "jobs", every job of one comparison (model, batch size, seed and the rest, all but framework,
    variant, tuning profile and repeat); with "repeats", the repeats of one job under every profile
    (so that the gain from tuning compares processes that ran at once). Data-parallel jobs group by
    repeats alone: a group's non-leading processes wait for their leader inside the engine's
    collectives, which may spin beside another job's turn, and over several nodes the repeat tells
    the coordinator ports apart. A group of more than `most` jobs is cut, repeat by repeat, into
    the fewest groups of at most `most`, as even as they come (21 = 7 variants x 3 repeats at most
    6: 6, 5, 5 and 5 jobs, the first repeat's variants together)."""
    groups: dict[Job, list[Job]] = {}
    for job in jobs:
        key = dataclasses.replace(job, repeat=0, what=dataclasses.replace(job.what, tuning=""))
        if interleave == "jobs" and job.replicas == 1 and job.data.input != "native":
            key = dataclasses.replace(key, what=dataclasses.replace(key.what, framework="", variant=""))
        groups.setdefault(key, []).append(job)
    if most is None:
        return list(groups.values())
    cut = []
    for group in groups.values():
        if len(group) <= most:
            cut.append(group)
            continue
        ordered = sorted(group, key=lambda job: job.repeat)  # stable: plan order within a repeat
        count = -(-len(ordered) // most)  # ceiling
        sizes = [len(ordered) // count + (index < len(ordered) % count) for index in range(count)]
        starts = [sum(sizes[:index]) for index in range(count)]
        cut += [ordered[start:start + size] for start, size in zip(starts, sizes)]
    return cut


def run_jobs(run_dir: Path, jobs: list[Job], unusable: dict[str, dict], attempt: int, timeout: float,
             console, interleave: str) -> list[SummaryRow]:
    run_id = run_dir.name
    peak = json.loads((run_dir / "env.json").read_text()).get("peak_gflops")  # measure_peak's, or none
    rows = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    most = most_at_once()
    groups = turn_groups(jobs, interleave, most)
    largest = max(map(len, groups), default=0)
    if largest > 1:  # they all hold their memory at once
        console.print(f"up to {largest} processes at once, taking turns one timed window each "
                      f"(--interleave {interleave}); each holds its framework's memory meanwhile (the memory "
                      f"available holds {most} processes of {WORKER_MEMORY / 2**30:.1f} GiB each)")
    with Progress(*columns, console=console) as progress:
        overall = progress.add_task("jobs", total=len(jobs))
        for planned in groups:
            for job in planned:
                if job.what.framework in unusable:
                    rows.append(JobRecorder(run_dir, run_id, job, attempt, peak).finish(unusable[job.what.framework]))
                    progress.advance(overall)
            group = [job for job in planned if job.what.framework not in unusable]
            if not group:
                continue
            recorders = [JobRecorder(run_dir, run_id, job, attempt, peak) for job in group]
            tasks = [progress.add_task(job.label, total=None) for job in group]
            finished = set()

            def on_message(index, message):
                recorders[index].on_message(message)
                if message["type"] == "started":
                    progress.update(tasks[index], total=message["total_steps"])
                elif message["type"] == "progress":
                    progress.update(tasks[index], completed=message["step"])

            def on_result(index, result):
                finished.add(index)
                progress.remove_task(tasks[index])
                row = recorders[index].finish(result)
                rows.append(row)
                progress.console.print(f"{group[index].label}: {describe(row)}")
                progress.advance(overall)

            try:
                run_workers(group, [run_dir / "logs" / f"{job.job_id}.log" for job in group], timeout,
                            on_message, on_result)
            except KeyboardInterrupt:
                for index in sorted(set(range(len(group))) - finished):
                    progress.remove_task(tasks[index])
                    rows.append(recorders[index].interrupted("stopped by Ctrl-C"))
                raise
    return rows


def look_at_machine(console, require_quiet: bool) -> dict | None:
    """One second's look at the machine before the first job: loud when other processes are
    using the cores (naming the busiest); None when --require-quiet refuses to start."""
    check = machine_check()
    if check["others_cpu"] is None:
        console.print("machine check: not measured on this platform (no per-core CPU times)")
        return check
    if check["others_cpu"] <= BUSY_THRESHOLD:
        console.print(f"machine check: quiet (other processes took {check['others_cpu']:.1%} of the cores)")
        return check
    busiest = ", ".join(f"{row['name']} (pid {row['pid']}, {row['cpu_percent']:.0f}% CPU)" for row in check["top"])
    console.print(f"[bold yellow]WARNING: the machine is busy: other processes took {check['others_cpu']:.0%} of "
                  f"the cores over one second ({escape(busiest)}). Timings measured now are not comparable; "
                  f"windows measured under contention are flagged.[/]")
    if require_quiet:
        console.print("[bold red]error: --require-quiet: not starting on a busy machine[/]")
        return None
    return check


# The sums of times a job records, each with the column holding its busy share.
SUMS = {"epoch time": "epoch_busy_share", "time to target": "train_busy_share_to_target",
        "wall time to target": "wall_busy_share_to_target"}


def warn_if_busy(rows: list[SummaryRow], console) -> None:
    busy = [row for row in rows if row.busy]
    if busy:
        names = ", ".join(f"{row.model} {row.framework}:{row.variant} {row.tuning} bs{row.batch_size}"
                          + (f" x{row.devices}" if row.devices > 1 else "") for row in busy)
        console.print(f"[bold yellow]WARNING: {len(busy)} job(s) measured on a busy machine, where other processes "
                      f"took more than {BUSY_THRESHOLD:.0%} of the worker's cores in at least half of the timed "
                      f"windows: {escape(names)}. The report marks them and does not rank them.[/]")


def warn_if_busy_sums(rows: list[SummaryRow], console) -> None:
    """Like warn_if_busy, for sums of times (an epoch time, a time to accuracy), which a median
    does not shield: flagged when more than SUM_BUSY_SHARE of the sum fell in busy windows."""
    flagged = []
    for row in rows:
        shares = {name: getattr(row, column) for name, column in SUMS.items()}
        busy = [f"{name} {share:.0%}" for name, share in shares.items() if share is not None and share > SUM_BUSY_SHARE]
        if busy:
            seed = f" s{row.seed}" if row.seed else ""
            flagged.append(f"{row.model} {row.framework}:{row.variant} bs{row.batch_size}{seed} r{row.repeat} "
                           f"({', '.join(busy)})")
    if flagged:
        console.print(f"[bold yellow]WARNING: {len(flagged)} job(s) have a time (an epoch, or to the target) of which "
                      f"more than {SUM_BUSY_SHARE:.0%} fell in windows where other processes took more than "
                      f"{BUSY_THRESHOLD:.0%} of the worker's cores: {escape('; '.join(flagged))}. A sum counts those "
                      f"windows in full: the report marks these times and does not rank them.[/]")


def measure_peak(run_dir: Path, plan: dict, console) -> None:
    """The machine's peak on the run's device and cores, once per run, into env.json (a resumed
    run keeps the first measurement). A peak measured while other processes took more than
    BUSY_THRESHOLD of the cores is measured once more; still busy, env.json flags it (`peak_busy`,
    `peak_others_cpu`) and the report says so wherever it shows `of_peak`."""
    env_path = run_dir / "env.json"
    env = json.loads(env_path.read_text()) if env_path.exists() else {}
    if "peak_gflops" in env:
        return
    selection = plan["selection"]
    job = Job(kind="peak", what=Workload("numpy", "matmul", "", 0),
              training=TrainConfig(precision=selection["precision"]),
              placement=Placement(device=selection["device"], threads=selection["threads"]))
    for tries in (1, 2):
        with console.status("measuring the machine's peak (a large matrix product)"):
            result = run_worker(job, run_dir / "logs" / "peak.log", 300.0, lambda message: None)
        if result.get("status") != "ok":
            console.print(f"[yellow]machine peak not measured: {escape(str(result.get('error')))}[/]")
            return
        if not result["busy"]:
            break
        if tries == 1:
            console.print(f"machine peak measured while other processes took {result['others_cpu']:.0%} of the "
                          f"cores: measuring it again", markup=False)
    console.print(f"machine peak: {result['peak_gflops']:,.0f} GFLOP/s ({result['peak_how']})", markup=False)
    if result["busy"]:
        console.print(f"[bold yellow]WARNING: the machine's peak was measured twice while other processes took "
                      f"{result['others_cpu']:.0%} of the cores: it is too low, so every of_peak is too high; the "
                      f"report says so.[/]")
    env.update(peak_gflops=result["peak_gflops"], peak_how=result["peak_how"], peak_busy=result["busy"],
               peak_others_cpu=result["others_cpu"])
    env_path.write_text(json.dumps(env, indent=2))


def probe_or_parity(run_dir: Path, plan: dict, console) -> dict[str, dict]:
    """Check parity (which also probes each framework on the device), or only probe; record each
    framework's build as its workers read it in env.json (`builds`); return the frameworks that
    cannot run, with the status and reason their rows will carry."""
    selection = cli.Selection(**{**plan["selection"], "pairs": tuple(map(tuple, plan["selection"]["pairs"])),
                                 "profiles": tuple(plan["selection"]["profiles"]),
                                 "threads": 1})  # its workers time nothing: one core each, side by side
    outcome: ParityOutcome = run_parity_jobs(selection, run_dir, console, probe_only=not plan["parity"])
    env_path = run_dir / "env.json"
    env = json.loads(env_path.read_text())
    env_path.write_text(json.dumps({**env, "builds": {**env.get("builds", {}), **outcome.builds}}, indent=2))
    tables, unusable = [outcome.table], outcome.unusable
    for devices in sorted({job["placement"]["devices"] for job in plan["jobs"]} - {1}) if plan["parity"] else []:
        parallel = run_data_parallel_parity(selection, devices, run_dir, console)  # N devices must equal one
        tables.append(parallel.table)
        unusable = {**parallel.unusable, **unusable}
    tables = [table for table in tables if table is not None]
    if tables:
        pd.concat(tables, ignore_index=True).to_csv(run_dir / "parity.csv", index=False)
    return unusable


def render_report(run_dir: Path, console, interrupted: bool) -> None:
    """report.md, rendered by `python -m report` in a process of its own: the harness never imports
    the report. A report that fails to render loses nothing: the tables are written already."""
    result = subprocess.run([sys.executable, "-m", "report", str(run_dir)], cwd=PROJECT_ROOT, capture_output=True,
                            text=True)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        console.print(f"[bold red]report not rendered ({escape(reason)}); the measurements are kept in "
                      f"{escape(str(run_dir))}[/]", soft_wrap=True)
        return
    console.print(f"report{' of the jobs that finished' if interrupted else ''}: {result.stdout.strip()}",
                  markup=False, soft_wrap=True)


def execute(run_dir: Path, console) -> int:
    plan, jobs = load_plan(run_dir)
    attempt = close_killed_attempts(run_dir, jobs)
    summary = latest_attempts(read_table(run_dir, "summary"))
    finished = set(summary.loc[summary["status"] == "ok", "job_id"])
    pending = [job for job in jobs if job.job_id not in finished]
    (run_dir / "logs").mkdir(exist_ok=True)
    console.print(f"run folder: {run_dir}  ({len(pending)} of {len(jobs)} jobs to run)", markup=False, soft_wrap=True)
    if attempt > 1:
        console.print(resume_note(summary, read_table(run_dir, "steps"), pending), markup=False, soft_wrap=True)
    status = 0
    try:
        measure_peak(run_dir, plan, console)
        unusable = probe_or_parity(run_dir, plan, console)  # prints each framework's reason once
        nothing_runs = bool(pending) and {job.what.framework for job in pending} <= set(unusable)
        if nothing_runs:
            console.print(f"[bold red]error: no framework can run on {plan['selection']['device']}; nothing was run[/]")
        rows = run_jobs(run_dir, pending, unusable, attempt, plan["job_timeout"], console,  # skipped rows too
                        plan.get("interleave", "repeats"))  # runs planned before --interleave took turns by repeats
        warn_if_busy(rows, console)
        warn_if_busy_sums(rows, console)
        if nothing_runs:
            status = 3
        elif any(row.status in FAILED for row in rows):
            status = 1
    except KeyboardInterrupt:
        # soft_wrap: the command must stay one line to copy, even when the output is a file or pipe
        console.print(f"[bold yellow]interrupted: finished jobs are kept in {escape(str(run_dir))}; "
                      f"finish with: python -m benchmarks.run --resume {escape(str(run_dir))}[/]", soft_wrap=True)
        status = 130
    render_report(run_dir, console, interrupted=status == 130)
    return status


def main(argv: list[str] | None = None) -> int:
    # Ctrl-C must stop the run cleanly even when a shell started it with SIGINT ignored (as
    # non-interactive shells do for background commands): Python then installs no handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = build_parser()
    args = parse_arguments(parser, argv)
    console = cli.console()
    if args.resume:
        if args.profile:
            parser.error("argument --profile: a resumed run follows its plan; profile a new run instead")
        if not (args.resume / "plan.json").is_file():
            parser.error(f"argument --resume: {args.resume} is not a run folder (no plan.json)")
        schema = json.loads((args.resume / "env.json").read_text()).get("schema", 1)
        if schema != SCHEMA:  # its tables' columns are not this version's
            parser.error(f"argument --resume: {args.resume} was written under results schema {schema}; this version "
                         f"writes schema {SCHEMA}: start a new run")
        try:
            load_plan(args.resume)
        except ValueError as error:
            parser.error(f"argument --resume: {error}")
        if look_at_machine(console, args.require_quiet) is None:
            return 4
        return execute(args.resume, console)
    selection = cli.selection_from_args(parser, args)
    unprofiled = sorted({framework for framework, _ in selection.pairs} - set(profiled()))
    if args.profile and unprofiled:
        parser.error(f"argument --profile: no profiler for {', '.join(unprofiled)} (profiles: {', '.join(profiled())})")
    if args.epochs == 0 and args.steps == 0:
        parser.error("argument --epochs: with --epochs 0, give --steps N (a run needs something to time)")
    if args.eval_every and (args.epochs == 0 or (args.epochs is None and args.steps)):
        parser.error("argument --eval-every: needs epochs to evaluate in (give --epochs N)")
    if isinstance(args.seeds, list) and args.seed:
        parser.error("argument --seeds: a list names every seed itself: drop --seed (the first of --seeds N)")
    if args.nesterov and args.momentum == 0:
        parser.error("argument --nesterov: needs a momentum above 0 (give --momentum)")
    if args.target_accuracy is not None and (args.epochs == 0 or (args.epochs is None and args.steps)):
        parser.error("argument --target-accuracy: needs epochs to evaluate after (give --epochs N)")
    if args.nodes > 1 and not args.coordinator:
        parser.error("argument --nodes: several nodes meet at node 0's address: give --coordinator HOST:PORT")
    if args.node_rank >= args.nodes:
        parser.error(f"argument --node-rank: {args.node_rank} is not below --nodes {args.nodes}")
    if args.input_workers is not None and "native" not in args.input:
        parser.error("argument --input-workers: sets the workers of native pipelines: give --input native")
    if args.input_workers is not None and not 0 <= args.input_workers <= len(os.sched_getaffinity(0)):
        parser.error(f"argument --input-workers: {args.input_workers} is not in 0..{len(os.sched_getaffinity(0))} "
                     f"(a worker per core this process may use at most)")
    if "native" in args.input and (args.nodes > 1 or max(args.devices) > 1):
        parser.error("argument --input: native pipelines feed one device here; drop --devices/--nodes or native")
    if "native" in args.input and args.augment not in datasets.NATIVE_AUGMENTATIONS:
        parser.error(f"argument --augment: {args.augment} feeds the suite's own pipeline only; the native pipelines "
                     f"(--input native) crop and flip: give --augment crop-flip, or drop native")
    if args.node_hosts and len(args.node_hosts) != args.nodes:
        parser.error(f"argument --node-hosts: names {len(args.node_hosts)} hosts for --nodes {args.nodes}")
    try:
        data, data_dir = resolve_data(args, console)
    except datasets.DataError as error:
        console.print(f"error: {error}", markup=False)
        return 2
    jobs = plan_jobs(args, selection, data, data_dir)
    try:
        run_dir = new_run_dir(args.out)
    except OSError as error:  # e.g. OUT is a file, or not writable
        parser.error(f"argument --out: cannot create a run folder in {str(args.out)!r}: {error.strerror or error}")
    check = look_at_machine(console, args.require_quiet)  # after every check of the input
    if check is None:
        run_dir.rmdir()  # still empty: a refused run leaves nothing behind
        return 4
    env = {"schema": SCHEMA, **collect(PROJECT_ROOT, dict(os.environ)), "data": data,
           "data_source": data_dir or "synthetic", "threads": selection.threads, "training": training_settings(args),
           "interleave": args.interleave, "tuning": tuning_plan(selection), "machine_check": check}
    (run_dir / "env.json").write_text(json.dumps(env, indent=2))
    plan = {"selection": dataclasses.asdict(selection), "parity": not args.no_parity,
            "job_timeout": selection.job_timeout, "interleave": args.interleave,
            "jobs": [job.to_dict() for job in jobs]}
    (run_dir / "plan.json").write_text(json.dumps(plan, indent=2))
    console.print(f"data: [bold]{'CIFAR-10 from ' + data_dir if data == 'cifar10' else 'SYNTHETIC'}[/]")
    return execute(run_dir, console)


if __name__ == "__main__":
    sys.exit(main())
