"""`python -m report.readme [FILE ...] [--check]`: the reference tables of README.md and of every page
in docs/, produced from the runs committed under `results/` rather than typed. Each table sits
between two markers naming what it shows and the run folder it comes from (relative to the project
root, the nearest folder at or above the file that holds `results/`):

    <!-- generated: throughput results/reference -->
    ...
    <!-- end generated -->

`profile-shares` and `profile-ops` take a third word, a regular expression that keeps the jobs whose
label it matches (`<!-- generated: profile-ops results/profile-cpu/lenet pytorch:.*stock -->`).
`noise` and `pairing` take a folder of runs instead (each run in it, by name), or one run folder.

Without a FILE the command reads README.md and docs/*.md. Without `--check` the tables are rewritten
in place; with it, the command exits 1 naming each table that no longer matches its run."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from report.findings import (
    NAMED_WHEN_VARYING,
    best_per_framework,
    comparisons,
    findings as findings_sentences,
    read_parity,
    tuning_gains,
    turns,
)
from report.front_end import cost_sentences, front_end_costs, front_end_table
from report.migrate import PARITY_FILES
from report.noise import noise_markdown, pairing_markdown
from report.predictions import all_predictions
from report.sections import answer_section
from report.seeds import analyse, ranking_sentences, time_to_target_markdown, verdict_sentences
from report.source import final_summary, latest, read_env, read_table
from report.tables import curves_table, input_table, markdown, ranking_table, throughput_markdown, throughput_table

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(?P<open><!-- generated: (?P<kind>[\w-]+) (?P<run>\S+)(?: (?P<only>[^\s>]+))? -->\n)"
                   r"(?P<body>.*?)(?P<close><!-- end generated -->)", re.DOTALL)


def _summary(run_dir: Path):
    read_env(run_dir)  # refuses a run of another schema
    return final_summary(run_dir)


def answer(run_dir: Path) -> str:
    """The report's first screen: per model and batch size, each framework's fastest variant and its
    ratio to the fastest framework, with its interval or "tied", and one sentence each; without the
    report's paragraph on what `ratio` means, which a page states once for all its answers."""
    summary = _summary(run_dir)
    compared = comparisons(summary, read_table(run_dir, "steps"), interleave=turns(read_env(run_dir)))
    return answer_section(best_per_framework(compared), compared, summary, read_env(run_dir),
                          convention=False).strip()


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
                                   {run_dir.name: read_parity(run_dir)}, turns(read_env(run_dir)))
    return "\n".join(f"- {sentence}" for sentence in sentences)


def gains(run_dir: Path) -> str:
    """Per variant measured under both profiles: tuned against stock, and the settings that made the difference."""
    table = tuning_gains(_summary(run_dir), read_table(run_dir, "steps"), interleave=turns(read_env(run_dir)))
    return markdown(table.drop(columns=[column for column in NAMED_WHEN_VARYING if table[column].nunique() == 1]))


def parity(run_dir: Path) -> str:
    """Per precision, each check's largest relative error against the float64 reference, as the
    range over variants (a tolerated outlier left out), the free-running trajectories' worst error,
    and each tolerated outlier named by its setting, step and tensor with the variants it affects."""
    table = read_parity(run_dir)
    table = table[table["pair"].str.endswith(" vs float64")]
    checks = {"forward": "logits", "loss": "loss", "gradients": "gradients", "per-step": "one training step",
              "free-running": "free-running"}
    rows = []
    for precision, rows_of in table.groupby("precision", sort=False):
        worst = rows_of[~rows_of["outlier"]].groupby(["check", "pair"])["error"].max()
        row = {"precision": f"`{precision}`"}
        for check, name in checks.items():
            if check not in worst.index.get_level_values("check"):
                row[name] = "-"
                continue
            low, high = worst[check].min(), worst[check].max()
            row[name] = f"{low:.1e}" if f"{low:.1e}" == f"{high:.1e}" else f"{low:.1e} to {high:.1e}"
        outliers = rows_of[rows_of["outlier"]]
        row["tolerated outliers"] = "; ".join(
            f"{of['pair'].nunique()} variants, {setting} step {step:g}: up to {of['error'].max():.1e} "
            f"({of.loc[of['error'].idxmax(), 'tensor']})"
            for (setting, step), of in outliers.groupby(["setting", "step"])) or "none"
        rows.append(row)
    return markdown(pd.DataFrame(rows))


def time_to_target(run_dir: Path) -> str:
    """The report's time-to-accuracy table (time_to_target.csv): per job, whether it reached the
    target, the epochs it trained, its compile and training seconds, its time to the target, and
    the best test accuracy it reached."""
    return markdown(pd.read_csv(run_dir / "time_to_target.csv"))


def seeds(run_dir: Path) -> str:
    """Time to the target across seeds (the report's table: per framework:variant the median, its interval and
    how many seeds reached it), the ranking and one convergence verdict per framework (`report.seeds`)."""
    summary = _summary(run_dir)
    found = analyse(summary, latest(read_table(run_dir, "epochs"), summary), all_predictions(run_dir, summary))
    if found is None:
        raise ValueError(f"generated seeds table: {run_dir} trained to no target accuracy")
    sentences = [*ranking_sentences(found.table), *verdict_sentences(found.verdicts, found.pairs)]
    return time_to_target_markdown(found.table) + "\n\n" + "\n".join(f"- {sentence}" for sentence in sentences)


def input_paths(run_dir: Path) -> str:
    """Each native-fed job beside the same job fed by the suite (the report's input section)."""
    table = input_table(_summary(run_dir))
    return markdown(table.drop(columns=[column for column in ("repeats",) if table[column].nunique() == 1]))


def _side_run(run_dir: Path, name: str, constant: tuple[str, ...]) -> str:
    """The one table of a measurement written by `results.write_side_run`, its rows that succeeded,
    without the `constant` columns that hold one value, and the machine it was measured on."""
    env = json.loads((run_dir / "env.json").read_text())
    table = pd.read_csv(run_dir / name)
    table = table[table["status"].eq("ok")].drop(columns=["status", "error"], errors="ignore")
    check = env.get("machine_check") or {}
    busy = check.get("others_cpu")
    machine = (f"Measured with `{env['command']}` on {env['cpu']} ({' '.join(env.get('cpu_features') or [])}), "
               f"{env['threads']} threads, {env['usable_cores']} usable cores"
               + (f"; other processes took {busy:.0%} of the cores just before" if busy is not None else "") + ".")
    return markdown(table.drop(columns=[column for column in constant
                                        if column in table and table[column].nunique() == 1])) + "\n\n" + machine


def hot_path(run_dir: Path) -> str:
    """`python -m benchmarks.hotpath --out`'s table: the suite's own code on each training step
    against the framework's built-in, and the machine it was measured on."""
    return _side_run(run_dir, "hotpath.csv", ("model", "tuning", "batch_size"))


def overhead(run_dir: Path) -> str:
    """`python -m benchmarks.overhead --out`'s table: each runner window against a bare loop of the
    same steps, per model, variant and input path, and the machine it was measured on."""
    return _side_run(run_dir, "overhead.csv", ("framework_version", "pairs", "tuning"))


def copy_times(run_dir: Path) -> str:
    """From `benchmarks.overhead --out`'s table: `copy_ms`, what placing one batch and waiting for it
    costs each framework, per model and batch size (the median over its variants and input paths)."""
    table = pd.read_csv(run_dir / "overhead.csv")
    table = table[table["status"].eq("ok")]
    table = table.assign(framework=table["variant"].str.split(":").str[0],
                         batch=table["model"] + ", batch " + table["batch_size"].astype(str))
    index = ["framework", "tuning"] if "tuning" in table and table["tuning"].nunique() > 1 else ["framework"]
    copy = table.pivot_table(index=index, columns="batch", values="copy_ms", aggfunc="median", sort=False)
    return markdown(copy.rename_axis(columns=None).reset_index())


def _profiled_jobs(table: pd.DataFrame, only: str | None) -> pd.DataFrame:
    try:
        kept = table[table["job"].str.contains(only, regex=True)] if only else table
    except re.error as error:
        raise ValueError(f"{only!r} is no regular expression: {error}") from None
    if kept.empty:
        raise ValueError(f"no profiled job's label matches {only!r} (jobs: {', '.join(table['job'].unique())})")
    return kept


def profile_shares(run_dir: Path, only: str | None = None) -> str:
    """A profiled run's self time per step and its shares per category, per job (the report's
    *Where the time goes*, profile_shares.csv)."""
    return markdown(_profiled_jobs(pd.read_csv(run_dir / "profile_shares.csv"), only))


def profile_ops(run_dir: Path, only: str | None = None, top: int = 3) -> str:
    """The `top` largest operations of each profiled job by self time (profile_ops.csv), the detail
    cut to what names the operation (for XLA, the instruction and its shape)."""
    table = _profiled_jobs(pd.read_csv(run_dir / "profile_ops.csv"), only)
    table = table.groupby("job", sort=False).head(top)
    detail = table["detail"].fillna("").str.split(" jit\\(|/", regex=True).str[0].str.slice(0, 48)
    return markdown(table.assign(detail=detail))


def runs_in(folder: Path) -> list[Path]:
    """The run folders inside `folder`, by name; or `folder` itself where it is a run folder."""
    if (folder / "summary.csv").is_file():
        return [folder]
    return sorted(path for path in folder.iterdir() if (path / "summary.csv").is_file()) if folder.is_dir() else []


def noise(folder: Path) -> str:
    """Per run in `folder` and job: its processes' medians, their spread, window noise and steal."""
    return noise_markdown(runs_in(folder))


def front_end_cost(run_dir: Path) -> str:
    """What a front end (Keras) costs against each native step of the run (`report.front_end`): one sentence
    per pair, as the report's answer gives them, then the table of front_end_cost.csv."""
    summary = _summary(run_dir)
    costs = front_end_costs(summary, read_table(run_dir, "steps"), interleave=turns(read_env(run_dir)))
    if costs.empty:
        raise ValueError(f"generated front-end-cost table: {run_dir} holds no front-end step beside its counterpart")
    sentences = "\n".join(f"- {sentence}" for sentence in cost_sentences(costs, summary))
    return f"{sentences}\n\n{front_end_table(costs)}"


def pairing(folder: Path) -> str:
    """Per run in `folder` whose jobs took turns: what pairing their windows by round does to the width
    of the ranking's intervals (`report.noise.pairing_table`)."""
    return pairing_markdown(runs_in(folder))


TABLES: dict[str, Callable[[Path], str]] = {"answer": answer, "throughput": throughput, "curves": curves,
                                            "findings": findings, "noise": noise, "pairing": pairing, "gains": gains,
                                            "parity": parity, "time-to-target": time_to_target, "seeds": seeds,
                                            "input": input_paths,
                                            "hotpath": hot_path, "overhead": overhead, "copy": copy_times,
                                            "profile-shares": profile_shares, "profile-ops": profile_ops,
                                            "front-end-cost": front_end_cost}
FOLDERS_OF_RUNS = {"noise", "pairing"}
FILTERED = {"profile-shares", "profile-ops"}  # the kinds that take a third word: a pattern of job labels
# the files of which a kind's run folder must hold one, summary.csv by default (`benchmarks.parity --csv`
# and the device check's parity steps write parity.csv alone)
TABLE_FILE = {"hotpath": ("hotpath.csv",), "overhead": ("overhead.csv",), "copy": ("overhead.csv",),
              "profile-shares": ("profile_shares.csv",), "profile-ops": ("profile_ops.csv",), "parity": PARITY_FILES,
              "time-to-target": ("time_to_target.csv",)}


def render(text: str, root: Path = ROOT) -> tuple[str, list[str]]:
    """A document's text with every generated block produced again from its run; and the blocks that changed."""
    changed = []

    def block(match: re.Match) -> str:
        kind, run, only = match["kind"], match["run"], match["only"]
        if kind not in TABLES:
            raise ValueError(f"unknown generated table {kind!r} (known: {', '.join(TABLES)})")
        if only and kind not in FILTERED:
            raise ValueError(f"generated {kind} table: takes no third word ({only!r}); only {', '.join(FILTERED)} do")
        if kind in FOLDERS_OF_RUNS and not runs_in(root / run):
            raise ValueError(f"generated {kind} table: {run} holds no run folders")
        needed = TABLE_FILE.get(kind, ("summary.csv",))
        if kind not in FOLDERS_OF_RUNS and not any((root / run / name).is_file() for name in needed):
            raise ValueError(f"generated {kind} table: {run} holds no {' or '.join(needed)}")
        body = TABLES[kind](root / run, *([only] if only else [])).rstrip("\n") + "\n"
        if body != match["body"]:
            changed.append(" ".join(filter(None, [kind, run, only])))
        return match["open"] + body + match["close"]

    return BLOCK.sub(block, text), changed


def documents(root: Path = ROOT) -> list[Path]:
    """README.md and every page of docs/: the files whose generated tables the project keeps."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def project_root(file: Path) -> Path:
    """Where a file's run folders are named from: the nearest folder at or above it holding results/."""
    folder = file.resolve().parent
    return next((parent for parent in (folder, *folder.parents) if (parent / "results").is_dir()), folder)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m report.readme", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", type=Path, nargs="*", metavar="FILE",
                        help="Markdown files to process (default: README.md and docs/*.md)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table is out of date")
    args = parser.parse_args(argv)
    files = args.files or documents()
    for file in files:
        if not file.is_file():
            parser.error(f"{file}: no such file")
    rendered = {}
    for file in files:
        try:
            rendered[file] = render(file.read_text(), project_root(file))
        except ValueError as error:
            parser.error(f"{file}: {error}" if len(files) > 1 else str(error))
    if args.check:
        stale = [(file, name) for file, (_, changed) in rendered.items() for name in changed]
        for file, name in stale:
            where = f"{file}: " if len(files) > 1 else ""
            print(f"{where}out of date: {name} (python -m report.readme rewrites it)", file=sys.stderr)
        return 1 if stale else 0
    for file, (text, changed) in rendered.items():
        if changed:
            file.write_text(text)
        print(f"{file}: {len(changed)} table(s) rewritten" + (f": {', '.join(changed)}" if changed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
