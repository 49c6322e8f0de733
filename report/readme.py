"""`python -m report.readme [README] [--check]`: README's reference tables, produced from the runs
committed under `results/` rather than typed. Each table sits between two markers naming what
it shows and the run folder it comes from:

    <!-- generated: throughput results/reference -->
    ...
    <!-- end generated -->

`noise` takes a folder of runs instead (`python -m report.noise` over each run in it, by name).

Without `--check` the tables are rewritten in place; with it, the command exits 1 naming each
table that no longer matches its run."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks.harness.results import read_table
from report.findings import findings as findings_sentences, read_parity, tuning_gains
from report.noise import noise_markdown
from report.source import final_summary, latest, read_env
from report.tables import curves_table, markdown, ranking_table, throughput_markdown, throughput_table

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(?P<open><!-- generated: (?P<kind>[\w-]+) (?P<run>\S+) -->\n)(?P<body>.*?)(?P<close><!-- end "
                   r"generated -->)", re.DOTALL)


def _summary(run_dir: Path):
    read_env(run_dir)  # refuses a run of another schema
    return final_summary(run_dir)


def throughput(run_dir: Path) -> str:
    """Images/s per job and batch size (median over windows, and over repeats where there are several)."""
    return throughput_markdown(throughput_table(ranking_table(_summary(run_dir))))


def curves(run_dir: Path) -> str:
    summary = _summary(run_dir)
    return markdown(curves_table(latest(read_table(run_dir, "epochs"), summary)).reset_index())


def findings(run_dir: Path) -> str:
    summary = _summary(run_dir)
    sentences = findings_sentences(summary, read_table(run_dir, "steps"),
                                   latest(read_table(run_dir, "epochs"), summary),
                                   {run_dir.name: read_parity(run_dir)})
    return "\n".join(f"- {sentence}" for sentence in sentences)


def gains(run_dir: Path) -> str:
    """Per variant measured under both profiles: tuned against stock, and the settings that made the difference."""
    table = tuning_gains(_summary(run_dir), read_table(run_dir, "steps"))
    return markdown(table.drop(columns=[column for column in ("device", "devices") if table[column].nunique() == 1]))


def runs_in(folder: Path) -> list[Path]:
    """The run folders inside `folder`, by name."""
    return sorted(path for path in folder.iterdir() if (path / "summary.csv").is_file()) if folder.is_dir() else []


def noise(folder: Path) -> str:
    """Per run in `folder` and job: its processes' medians, their spread, window noise and steal."""
    return noise_markdown(runs_in(folder))


TABLES: dict[str, Callable[[Path], str]] = {"throughput": throughput, "curves": curves, "findings": findings,
                                            "noise": noise, "gains": gains}
FOLDERS_OF_RUNS = {"noise"}


def render(text: str, root: Path = ROOT) -> tuple[str, list[str]]:
    """README text with every generated block produced again from its run; and the blocks that changed."""
    changed = []

    def block(match: re.Match) -> str:
        kind, run = match["kind"], match["run"]
        if kind not in TABLES:
            raise ValueError(f"unknown generated table {kind!r} (known: {', '.join(TABLES)})")
        if kind in FOLDERS_OF_RUNS and not runs_in(root / run):
            raise ValueError(f"generated {kind} table: {run} holds no run folders")
        if kind not in FOLDERS_OF_RUNS and not (root / run / "summary.csv").is_file():
            raise ValueError(f"generated {kind} table: {run} holds no summary.csv")
        body = TABLES[kind](root / run).rstrip("\n") + "\n"
        if body != match["body"]:
            changed.append(f"{kind} {run}")
        return match["open"] + body + match["close"]

    return BLOCK.sub(block, text), changed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m report.readme", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("readme", type=Path, nargs="?", default=ROOT / "README.md")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table is out of date")
    args = parser.parse_args(argv)
    if not args.readme.is_file():
        parser.error(f"{args.readme}: no such file")
    try:
        text, changed = render(args.readme.read_text(), args.readme.resolve().parent)
    except ValueError as error:
        parser.error(str(error))
    if args.check:
        for name in changed:
            print(f"out of date: {name} (python -m report.readme rewrites it)", file=sys.stderr)
        return 1 if changed else 0
    args.readme.write_text(text)
    print(f"{args.readme}: {len(changed)} table(s) rewritten" + (f": {', '.join(changed)}" if changed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
