"""`python -m benchmarks.overhead`: proves the harness costs nothing measurable. For each
framework variant, in its own worker, each window the runner times is paired with a bare loop of
the same adapter steps on batches already on the device (one sync at the end) run just before it;
the ratio is the median over the pairs. It covers the runner's bookkeeping and its input path.
A benchmark, not a test: it prints the ratios."""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

import pandas as pd

from benchmarks import cli
from benchmarks.harness.jobs import SUITE_INPUTS, Data, Job, Placement, Timing, Workload
from benchmarks.harness.spawn import run_worker
from frameworks.base import TrainConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.overhead", description=__doc__.split("\n\n")[0],
                                     formatter_class=cli.HelpFormatter)
    cli.add_selection_arguments(parser)
    parser.add_argument("--batch-size", type=cli.positive_int, default=128)
    parser.add_argument("--pairs", type=cli.positive_int, default=30,
                        help="bare loops and runner windows, alternating")
    parser.add_argument("--window", type=cli.positive_int, default=20,
                        help="steps of each bare loop and runner window")
    parser.add_argument("--input", choices=SUITE_INPUTS, default="prefetch",
                        help="the runner's input path, as in benchmarks.run")
    args = parser.parse_args(argv)
    selection = cli.selection_from_args(parser, args)
    if args.window * args.batch_size > 10_000:
        parser.error("argument --window: window x batch size must fit the 10,000 synthetic training examples")
    console = cli.console()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for model, (framework, variant) in itertools.product(selection.models, selection.pairs):
            job = Job(kind="overhead", what=Workload(framework, variant, model, args.batch_size),
                      training=TrainConfig(precision=selection.precision),
                      timing=Timing(warmup_steps=5, window=args.window, pairs=args.pairs), data=Data(input=args.input),
                      placement=Placement(device=selection.device, threads=selection.threads))
            with console.status(f"measuring {model} {framework}:{variant}"):
                result = run_worker(job, Path(folder) / f"{job.job_id}.log", selection.job_timeout,
                                    lambda message: None)
            rows.append({"model": model, "variant": f"{framework}:{variant}", "batch_size": args.batch_size,
                         "input": args.input, **result})
    table = pd.DataFrame(rows)
    console.print(cli.dataframe_to_text(table.drop(columns=["status"] if table["status"].eq("ok").all() else [])),
                  markup=False)
    return 0 if table["status"].eq("ok").all() else 1


if __name__ == "__main__":
    sys.exit(main())
