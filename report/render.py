"""Renders `report.md` (and its PNG charts) from a run folder's CSV files and env.json alone:
what ran where and with which settings, parity verdict, speed ranking, the gain from tuning,
batch-size sweep, learning curves, failures.
The tables are built in `report.tables`, the charts drawn in `report.charts`, the sections
written in `report.sections`; this module puts them in order."""

from __future__ import annotations

from pathlib import Path

from benchmarks.harness.results import read_table
from report.findings import findings_section, read_parity, tuning_gains
from report.sections import (epochs_section, gains_section, machine_section, method_section, parity_section,
                             problems_section, profile_section, scaling_section, settings_section, speed_section,
                             sweep_section, time_to_accuracy_section)
from report.source import final_summary, latest, read_env
from report.tables import ranking_table


def write_report(run_dir: Path) -> Path:
    """report.md of a run folder, or of runs merged into one (their env.json names them, and each
    keeps its env.json and parity.csv in a folder named after it). Raises `report.source.SchemaError`
    for a folder written under another schema."""
    env = read_env(run_dir)
    runs = {run: run_dir / run for run in env["merged"]} if "merged" in env else None
    envs = {run: read_env(folder) for run, folder in runs.items()} if runs else None  # each run's schema too
    summary = final_summary(run_dir)
    epochs = latest(read_table(run_dir, "epochs"), summary)
    ranking = ranking_table(summary)
    run_id = summary["run_id"].iloc[0] if len(summary) else run_dir.name
    runs = runs or {run_id: run_dir}
    steps = read_table(run_dir, "steps")
    findings = findings_section(summary, steps, epochs, {run: read_parity(folder) for run, folder in runs.items()})
    if envs:
        machines = [f"### Run {run}\n\n{machine_section(envs[run], summary[summary['run_id'] == run])}"
                    for run in runs]
        parities = [f"### Run {run}\n\n{parity_section(folder)}" for run, folder in runs.items()]
        sections = [f"# Framework comparison: runs {', '.join(runs)}\n", *machines, settings_section(summary), findings,
                    "## Parity\n", *parities]
    else:
        sections = [f"# Framework comparison: run {run_id}\n", machine_section(env, summary), settings_section(summary),
                    findings, "## Parity\n", parity_section(run_dir)]
    sections += [speed_section(ranking, summary, env, run_dir), gains_section(tuning_gains(summary, steps)),
                 time_to_accuracy_section(summary, epochs, run_dir),
                 scaling_section(ranking, summary, env) if not ranking.empty else "",
                 sweep_section(ranking, summary, run_dir) if not ranking.empty else "",
                 epochs_section(epochs, summary, run_dir),
                 profile_section(run_dir, summary), problems_section(summary),
                 method_section(env)]
    path = run_dir / "report.md"
    path.write_text("\n\n".join(section for section in sections if section) + "\n")
    return path
