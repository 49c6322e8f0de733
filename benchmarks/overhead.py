"""`python -m benchmarks.overhead`: what the harness adds to a framework's step. For each framework
variant, model and input path, in its own worker, each window the runner times is paired with a bare
loop of the same adapter steps on batches already placed (one sync at the end) run just before it;
the ratio is the median over the pairs. It covers the runner's bookkeeping and its input path.
Every ratio must stay within `BOUND`: the command exits 1 naming those that do not. A benchmark,
not a test: it prints the table and, with `--out DIR`, writes it as `DIR/<UTC timestamp>/overhead.csv`
beside an env.json describing the machine (docs/testing.md's table is generated from the committed one)."""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from benchmarks import cli
from benchmarks.harness.contention import machine_check
from benchmarks.harness.environment import cpu_features, cpu_model
from benchmarks.harness.jobs import SUITE_INPUTS, Data, Job, Placement, Timing, Workload
from benchmarks.harness.results import write_side_run
from benchmarks.harness.spawn import run_worker
from frameworks.base import TrainConfig

BOUND = 1.05  # runner over bare loop: the most the harness may add to any framework's step


@dataclass(frozen=True)
class Sizes:
    batch_size: int
    window: int  # steps of each bare loop and runner window
    pairs: int


# Per model, unless given on the command line: ResNet-9's step is some 30 times LeNet's on a CPU, so
# it runs fewer, shorter pairs at a smaller batch.
SIZES = {"lenet": Sizes(batch_size=128, window=20, pairs=30), "resnet9": Sizes(batch_size=32, window=5, pairs=10)}


def _inputs(text: str) -> list[str]:
    names = cli.unique_list(text)
    if names == ["all"]:
        return list(SUITE_INPUTS)
    unknown = [name for name in names if name not in SUITE_INPUTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown input path {', '.join(unknown)} (choose from: all, "
                                         f"{', '.join(SUITE_INPUTS)})")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.overhead", description=__doc__.split("\n\n")[0],
                                     formatter_class=cli.HelpFormatter)
    cli.add_selection_arguments(parser)
    defaults = "; ".join(f"{model}: {sizes.batch_size}, {sizes.window} steps, {sizes.pairs} pairs"
                         for model, sizes in SIZES.items())
    parser.add_argument("--batch-size", type=cli.positive_int, help=f"default per model ({defaults})")
    parser.add_argument("--pairs", type=cli.positive_int,
                        help="bare loops and runner windows, alternating (default per model, as --batch-size)")
    parser.add_argument("--window", type=cli.positive_int,
                        help="steps of each bare loop and runner window (default per model, as --batch-size)")
    parser.add_argument("--input", type=_inputs, default=["prefetch"], metavar="PATH[,PATH...]",
                        help=f"the runner's input paths, as in benchmarks.run: all, {', '.join(SUITE_INPUTS)}")
    parser.add_argument("--out", type=Path, help="write overhead.csv and env.json into a new run folder under OUT")
    args = parser.parse_args(argv)
    selection = cli.selection_from_args(parser, args)
    sizes = {model: Sizes(args.batch_size or SIZES[model].batch_size, args.window or SIZES[model].window,
                          args.pairs or SIZES[model].pairs) for model in selection.models}
    for model, size in sizes.items():
        if size.window * size.batch_size > 10_000:
            parser.error(f"{model}: window x batch size ({size.window} x {size.batch_size}) must fit the 10,000 "
                         f"synthetic training examples")
    console = cli.console()
    console.print(f"CPU: {cpu_model()} ({' '.join(cpu_features() or [])}), {selection.threads} threads",
                  markup=False)
    check = machine_check()
    if check["others_cpu"] is not None:
        console.print(f"machine check: other processes took {check['others_cpu']:.1%} of the cores")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for model, (framework, variant), profile, path in itertools.product(selection.models, selection.pairs,
                                                                           selection.profiles, args.input):
            size = sizes[model]
            job = Job(kind="overhead", what=Workload(framework, variant, model, size.batch_size, profile),
                      training=TrainConfig(precision=selection.precision),
                      timing=Timing(warmup_steps=5, window=size.window, pairs=size.pairs), data=Data(input=path),
                      placement=Placement(device=selection.device, threads=selection.threads))
            with console.status(f"measuring {model} {framework}:{variant} {profile}, {path} input"):
                result = run_worker(job, Path(folder) / f"{job.job_id}.log", selection.job_timeout,
                                    lambda message: None)
            rows.append({"model": model, "variant": f"{framework}:{variant}", "tuning": profile,
                         "batch_size": size.batch_size, "input": path, **result})
    table = pd.DataFrame(rows)
    ok = table["status"].eq("ok")
    console.print(cli.dataframe_to_text(table.drop(columns=["status"] if ok.all() else [])), markup=False)
    if args.out is not None:
        run_dir = write_side_run(args.out, "overhead.csv", table, "benchmarks.overhead",
                                 {"machine_check": check, "threads": selection.threads, "bound": BOUND})
        console.print(f"written: {run_dir}", markup=False)
    over = table[ok & (table.get("ratio", pd.Series(dtype=float)) > BOUND)]
    for row in over.itertuples():
        console.print(f"over the bound: {row.model} {row.variant} {row.tuning}, {row.input} input: the runner's step "
                      f"is {row.ratio:.3f}x the bare loop's (at most {BOUND})", markup=False)
    return 0 if ok.all() and over.empty else 1


if __name__ == "__main__":
    sys.exit(main())
