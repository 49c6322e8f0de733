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
worker process (a group of them for DDP), and prints the largest error per check and pair, and
the largest error against each bound with where the bound was set and the error measured;
`--devices 2` adds the data-parallel check. With `--csv FILE` the comparisons, a Markdown page of
the same tables and every worker's log are kept beside FILE."""


import argparse
import dataclasses
import signal
import sys
import tempfile
from pathlib import Path

import pandas as pd

from benchmarks import cli
from benchmarks.checks.runner import (
    MOST_AT_ONCE,
    ParityOutcome,
    run_data_parallel_parity,
    run_parity_jobs,
    share_of_cores,
)
from benchmarks.checks.verdicts import CALIBRATION_TITLE, calibration, failures, grouped_outliers, parity_summary


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C stops it even where a shell ignores SIGINT
    parser = argparse.ArgumentParser(prog="python -m benchmarks.parity", description=__doc__.split("\n\n")[0],
                                     formatter_class=cli.HelpFormatter)
    cli.add_selection_arguments(parser, threads=(None, "CPU cores each worker is pinned to and each framework's "
                                                    "intra-op threads; workers time nothing, so they run side by "
                                                    "side, as many at once as the cores allow (at most "
                                                    f"{MOST_AT_ONCE}) (default: every core this process may use, "
                                                    "shared among the workers that run at once: a compiler sizes "
                                                    "its thread pool from a worker's cores)"))
    parser.add_argument("--devices", type=cli.positive_int, default=1,
                        help="also check data-parallel training on this many devices against one device")
    parser.add_argument("--csv", type=Path, metavar="FILE",
                        help="also write every comparison (pair, check, tensor, error, tolerance, where each was set "
                             "and measured, verdict) to FILE, each model's as soon as it is compared, so that an "
                             "interrupted run keeps them; the same tables as Markdown beside it (FILE with .md), and "
                             "each worker's log in the folder logs/ beside it")
    args = parser.parse_args(argv)
    if args.csv and not args.csv.parent.is_dir():
        parser.error(f"argument --csv: {str(args.csv.parent)!r} is not a folder")
    if args.csv and args.csv.suffix == ".md":
        parser.error(f"argument --csv: {str(args.csv)!r} ends in .md, the name of the Markdown page written beside it")
    # the default share of the cores needs the selection's workers; one core always passes its checks
    selection = cli.selection_from_args(parser, argparse.Namespace(**{**vars(args), "threads": args.threads or 1}))
    if args.threads is None:
        workers = len(selection.models) * len(selection.pairs) * len(selection.profiles)
        selection = dataclasses.replace(selection, threads=share_of_cores(workers))
    compared: list[pd.DataFrame] = []

    def keep(table: pd.DataFrame) -> None:  # each model's comparisons as they are made: Ctrl-C keeps them
        compared.append(table)
        if args.csv:
            pd.concat(compared, ignore_index=True).to_csv(args.csv, index=False)
    try:
        with tempfile.TemporaryDirectory() as scratch:  # the workers' outputs: large, deleted once compared
            folder = args.csv.parent if args.csv else Path(scratch)  # its logs/: a failed worker's traceback
            outcome = run_parity_jobs(selection, folder, cli.console(), precision=selection.precision,
                                      on_table=keep, scratch=Path(scratch))
            if args.devices > 1:
                parallel = run_data_parallel_parity(selection, args.devices, folder, cli.console(), Path(scratch))
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
    summaries = {f"{model}, {precision}": parity_summary(table[table["check"] != "round trip"])
                 for (model, precision), table in outcome.table.groupby(["model", "precision"], sort=False)}
    bounds = calibration(outcome.table)
    for title, summary in summaries.items():
        cli.console().print(f"\n{title}:", markup=False)
        cli.console().print(summary.to_string(), markup=False)
    cli.console().print(f"\n{CALIBRATION_TITLE}:\n{bounds.to_string(index=False)}", markup=False)
    if args.csv:
        outcome.table.to_csv(args.csv, index=False)
        args.csv.with_suffix(".md").write_text(markdown_page(outcome.table, summaries, bounds))
    return 0 if outcome.passed else 1


LISTED = 20  # failures listed on the Markdown page; the CSV file holds them all


def markdown_page(table: pd.DataFrame, summaries: dict[str, pd.DataFrame], bounds: pd.DataFrame) -> str:
    """The verdict, the failures and tolerated outliers, each model's and precision's summary, and
    the largest errors against their bounds, as the command prints them."""
    failed = failures(table)
    notes = [f"- failed: {line}" for line in failed[:LISTED]]
    if len(failed) > LISTED:
        notes.append(f"- ... and {len(failed) - LISTED} more failed comparisons (the CSV file)")
    notes += [f"- tolerated outlier: {line}" for line in grouped_outliers(table)]
    lines = ["# Parity", "Passed." if not failed else f"FAILED in {len(failed)} asserted comparisons.",
             "\n".join(notes)]
    for title, summary in summaries.items():
        lines += [f"**{title}.** Largest relative error per pair and check.",
                  summary.reset_index().to_markdown(index=False, disable_numparse=True)]
    lines += [f"**{CALIBRATION_TITLE}.**",
              bounds.to_markdown(index=False, disable_numparse=True)]
    return "\n\n".join(line for line in lines if line) + "\n"


if __name__ == "__main__":
    sys.exit(main())
