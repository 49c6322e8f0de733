"""Renders `report.md` (and its PNG charts) from a run folder's CSV files and env.json alone:
what ran where and with which settings, parity verdict, speed ranking, the gain from tuning,
batch-size sweep, learning curves, failures.
The tables are built in `report.tables`, the charts drawn in `report.charts`, the sections
written in `report.sections`; this module puts them in order."""

from __future__ import annotations

from pathlib import Path

from report.findings import best_per_framework, comparisons, findings_section, read_parity, tuning_gains, turns
from report.front_end import CSV as FRONT_END_CSV, cost_sentences, front_end_costs, front_end_section
from report.predictions import all_predictions
from report.sections import (
    answer_section,
    compile_section,
    epochs_section,
    gains_section,
    input_section,
    machine_section,
    method_section,
    parity_section,
    problems_section,
    profile_section,
    scaling_section,
    settings_section,
    speed_section,
    sweep_section,
    time_to_accuracy_section,
)
from report.seeds import CSV as SEEDS_CSV, seeds_section
from report.source import final_summary, latest, read_env, read_table
from report.tables import ranking_table

# Written beside report.md when their section has something to show: charts and the CSV files of tables.
RENDERED = ["speed.png", "compile.png", "throughput.png", "memory.png", "curves.png", "accuracy_time.png",
            "frameworks.csv", "ranking.csv", "gains.csv", "input.csv", "scaling.csv", "curves.csv",
            "time_to_target.csv", *SEEDS_CSV, "profile_shares.csv", "profile_ops.csv", FRONT_END_CSV]


def write_report(run_dir: Path) -> Path:
    """report.md of a run folder, or of runs merged into one (their env.json names them, and each
    keeps its env.json and parity.csv in a folder named after it). Beside it, the CSV file of every
    table it shows that no run table holds (`frameworks.csv`, `ranking.csv`, ...), and parity.md.
    A folder of an earlier schema is read through its migrations; raises `report.source.SchemaError` for
    one of a later schema."""
    env = read_env(run_dir)
    for name in RENDERED:  # what an earlier rendering wrote, so none outlives the tables it came from
        (run_dir / name).unlink(missing_ok=True)
    runs = {run: run_dir / run for run in env["merged"]} if "merged" in env else None
    envs = {run: read_env(folder) for run, folder in runs.items()} if runs else None  # each run's schema too
    summary = final_summary(run_dir)
    epochs = latest(read_table(run_dir, "epochs"), summary)
    steps = read_table(run_dir, "steps")
    interleave = turns(env)
    compared = comparisons(summary, steps, interleave=interleave)
    best = best_per_framework(compared)
    ranking = ranking_table(summary, compared)
    best.drop(columns="label").to_csv(run_dir / "frameworks.csv", index=False)
    ranking.to_csv(run_dir / "ranking.csv", index=False)
    costs = front_end_costs(summary, steps, interleave=interleave)
    if not costs.empty:
        costs.to_csv(run_dir / FRONT_END_CSV, index=False)
    run_id = summary["run_id"].iloc[0] if len(summary) else run_dir.name
    runs = runs or {run_id: run_dir}
    predictions = {key: found for run, folder in runs.items()
                   for key, found in all_predictions(folder, summary[summary["run_id"] == run]).items()}
    findings = findings_section(summary, steps, epochs, {run: read_parity(folder) for run, folder in runs.items()},
                                interleave, predictions)
    answer = answer_section(best, compared, summary, env, also=cost_sentences(costs, summary))
    if envs:
        machines = [f"### Run {run}\n\n{machine_section(envs[run], summary[summary['run_id'] == run])}"
                    for run in runs]
        parities = [f"### Run {run}\n\n{parity_section(folder, run_dir)}" for run, folder in runs.items()]
        sections = [f"# Framework comparison: runs {', '.join(runs)}\n", answer, "## Runs\n", *machines, findings,
                    "## Parity\n", *parities]
    else:
        sections = [f"# Framework comparison: run {run_id}\n", answer, "## Run\n", machine_section(env, summary),
                    findings, "## Parity\n", parity_section(run_dir, run_dir)]
    sections += [speed_section(ranking, summary, env, run_dir), front_end_section(costs),
                 compile_section(ranking, summary, env, run_dir),
                 input_section(summary, run_dir),
                 gains_section(tuning_gains(summary, steps, interleave=interleave), run_dir),
                 time_to_accuracy_section(summary, epochs, run_dir),
                 seeds_section(summary, epochs, predictions, env, run_dir),
                 scaling_section(ranking, summary, env, run_dir) if not ranking.empty else "",
                 sweep_section(ranking, summary, env, run_dir) if not ranking.empty else "",
                 epochs_section(epochs, summary, env, run_dir),
                 settings_section(summary), profile_section(run_dir, summary), problems_section(summary),
                 method_section(env)]
    path = run_dir / "report.md"
    path.write_text("\n\n".join(section for section in sections if section) + "\n")
    return path
