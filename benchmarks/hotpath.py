"""`python -m benchmarks.hotpath`: where the suite's own code sits on a framework's training step
(a custom optimizer, loss or schedule, a per-step call the framework's examples do without), its
cost against the framework's built-in equivalent. Each framework variant runs in its own worker,
which alternates windows of the two sides in one process (`benchmarks.harness.training.run_hot_path`);
the ratio, suite over built-in, is the median over the pairs. A benchmark, not a test: it prints
the table and, with `--out DIR`, writes it as `DIR/<UTC timestamp>/hotpath.csv` beside an env.json
describing the machine (docs/tuning.md's table is generated from the committed one)."""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

import pandas as pd

from benchmarks import cli
from benchmarks.harness.contention import machine_check
from benchmarks.harness.environment import cpu_features, cpu_model
from benchmarks.harness.jobs import Data, Job, Placement, Timing, Workload
from benchmarks.harness.results import write_side_run
from benchmarks.harness.spawn import run_worker
from frameworks.base import TrainConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hotpath", description=__doc__.split("\n\n")[0],
                                     formatter_class=cli.HelpFormatter)
    cli.add_selection_arguments(parser)
    parser.add_argument("--batch-size", type=cli.positive_int, default=128)
    parser.add_argument("--pairs", type=cli.positive_int, default=30,
                        help="windows of the suite's code and of the built-in, alternating")
    parser.add_argument("--window", type=cli.positive_int, default=20, help="steps per window")
    parser.add_argument("--out", type=Path, help="write hotpath.csv and env.json into a new run folder under OUT")
    args = parser.parse_args(argv)
    selection = cli.selection_from_args(parser, args)
    if args.window * args.batch_size > 10_000:
        parser.error("argument --window: window x batch size must fit the 10,000 synthetic training examples")
    console = cli.console()
    console.print(f"CPU: {cpu_model()} ({' '.join(cpu_features() or [])}), {selection.threads} threads",
                  markup=False)
    check = machine_check()
    if check["others_cpu"] is not None:
        console.print(f"machine check: other processes took {check['others_cpu']:.1%} of the cores")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for model, (framework, variant), profile in itertools.product(selection.models, selection.pairs,
                                                                      selection.profiles):
            job = Job(kind="hot path", what=Workload(framework, variant, model, args.batch_size, profile),
                      training=TrainConfig(precision=selection.precision),
                      timing=Timing(warmup_steps=5, window=args.window, pairs=args.pairs), data=Data(),
                      placement=Placement(device=selection.device, threads=selection.threads))
            with console.status(f"measuring {model} {framework}:{variant}"):
                result = run_worker(job, Path(folder) / f"{job.job_id}.log", selection.job_timeout,
                                    lambda message: None)
            head = {"model": model, "variant": f"{framework}:{variant}", "tuning": profile,
                    "batch_size": args.batch_size}
            if result["status"] != "ok":
                rows.append({**head, "status": result["status"], "error": result.get("error", "")})
            rows.extend({**head, **part, "status": "ok"} for part in result.get("parts", []))
    table = pd.DataFrame(rows)
    ok = table["status"].eq("ok").all()
    console.print(cli.dataframe_to_text(table.drop(columns=["status"] if ok else [])), markup=False)
    if args.out is not None:
        run_dir = write_side_run(args.out, "hotpath.csv", table, "benchmarks.hotpath",
                                 {"machine_check": check, "threads": selection.threads})
        console.print(f"written: {run_dir}", markup=False)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
