"""`python -m report RUN_DIR`: re-render RUN_DIR/report.md from its CSV files alone."""

import argparse
import sys
from pathlib import Path

from report.render import write_report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m report", description=__doc__)
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)
    if not (args.run_dir / "summary.csv").is_file():
        parser.error(f"{args.run_dir} holds no summary.csv: not a run folder")
    print(write_report(args.run_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
