"""Cross-framework parity: every framework variant computes fixed checks from the same random
weights and batches, and each pair, and each variant against a float64 NumPy reference, is
compared tensor by tensor against tight tolerances.

Training is checked twice. The per-step check is the pass/fail criterion: before every step each
framework loads one common training state (weights, momentum buffers, step count) from the float64
reference's trajectory, takes one step on the same batch, and exports the loss, the weight update
and the new momentum buffers; errors cannot compound, so one flipped ReLU or max-pool decision
shows as one step's outlier, which is named and tolerated once per pair and setting. The
free-running check trains 20 steps from the initial state without resets and reports the worst
error and the first step at which two trajectories part; it is reported, not asserted, because
one flipped decision sends a trajectory elsewhere even on CPU in float32.

Data-parallel training is checked the same way: N devices (each framework's own engine, each
replica fed its shard of every batch) must take the training steps one device takes on the whole
batch, per step from the common states, against the same framework on one device, the other
frameworks on N devices and the float64 reference.

`python -m benchmarks.parity --device cuda` runs the checks on any device, one framework per
worker process (a group of them for DDP), and prints the largest error per check and pair;
`--devices 2` adds the data-parallel check."""


import argparse
import signal
import sys
import tempfile
from pathlib import Path

import pandas as pd

from benchmarks import cli
from benchmarks.checks.runner import ParityOutcome, run_data_parallel_parity, run_parity_jobs
from benchmarks.checks.verdicts import parity_summary


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C stops it even where a shell ignores SIGINT
    parser = argparse.ArgumentParser(prog="python -m benchmarks.parity", description=__doc__.split("\n\n")[0],
                                     formatter_class=cli.HelpFormatter)
    cli.add_selection_arguments(parser, threads=(1, "CPU cores each worker is pinned to and each framework's "
                                                 "intra-op threads; workers time nothing, so they run side by "
                                                 "side, as many at once as the cores allow (at most 4)"))
    parser.add_argument("--devices", type=cli.positive_int, default=1,
                        help="also check data-parallel training on this many devices against one device")
    parser.add_argument("--csv", type=Path, metavar="FILE",
                        help="also write every comparison (pair, check, tensor, error, tolerance, verdict) to FILE, "
                             "each model's as soon as it is compared, so that an interrupted run keeps them")
    args = parser.parse_args(argv)
    if args.csv and not args.csv.parent.is_dir():
        parser.error(f"argument --csv: {str(args.csv.parent)!r} is not a folder")
    selection = cli.selection_from_args(parser, args)
    compared: list[pd.DataFrame] = []

    def keep(table: pd.DataFrame) -> None:  # each model's comparisons as they are made: Ctrl-C keeps them
        compared.append(table)
        if args.csv:
            pd.concat(compared, ignore_index=True).to_csv(args.csv, index=False)
    try:
        with tempfile.TemporaryDirectory() as folder:
            outcome = run_parity_jobs(selection, Path(folder), cli.console(), precision=selection.precision,
                                      on_table=keep)
            if args.devices > 1:
                parallel = run_data_parallel_parity(selection, args.devices, Path(folder), cli.console())
                tables = [table for table in (outcome.table, parallel.table) if table is not None]
                outcome = ParityOutcome(pd.concat(tables, ignore_index=True) if tables else None,
                                        {**parallel.unusable, **outcome.unusable})
    except KeyboardInterrupt:
        kept = ", ".join(dict.fromkeys(model for table in compared for model in table["model"]))
        where = f"the comparisons of {kept} are in {args.csv}" if kept and args.csv else "nothing was kept"
        cli.console().print(f"interrupted: {where}", markup=False)
        return 130
    if outcome.table is None:
        cli.console().print("error: no framework could run the parity checks")
        return 3
    if args.csv:
        outcome.table.to_csv(args.csv, index=False)
    for (model, precision), table in outcome.table.groupby(["model", "precision"], sort=False):
        cli.console().print(f"\n{model}, {precision}:", markup=False)
        cli.console().print(parity_summary(table[table["check"] != "round trip"]).to_string(), markup=False)
    return 0 if outcome.passed else 1


if __name__ == "__main__":
    sys.exit(main())
