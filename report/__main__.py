"""`python -m report RUN_DIR`: re-render RUN_DIR/report.md from its CSV files alone.
`python -m report RUN [RUN...] --out DIR`: one report in DIR of runs on different devices (e.g. a
CPU run and a GPU run), from their CSV files, ranking each job only against the same device's."""

import argparse
import sys
from pathlib import Path

from report.merge import MergeError, merge_runs
from report.render import write_report
from report.source import SchemaError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m report", description=__doc__)
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    parser.add_argument("--out", type=Path, help="merge the runs into this folder and write its report there")
    args = parser.parse_args(argv)
    for run_dir in args.run_dirs:
        if not (run_dir / "summary.csv").is_file():
            parser.error(f"{run_dir} holds no summary.csv: not a run folder")
    if args.out is None and len(args.run_dirs) > 1:
        parser.error("several runs are merged into one report: name its folder with --out DIR")
    try:
        if args.out is not None:
            merge_runs(args.run_dirs, args.out)
        print(write_report(args.run_dirs[0] if args.out is None else args.out))
    except SchemaError as error:  # one line: the folder, its schema, and what to do
        print(f"python -m report: error: {error}", file=sys.stderr)
        return 2
    except MergeError as error:
        parser.error(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
