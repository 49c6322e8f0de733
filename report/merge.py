"""Several runs on different devices (e.g. one on a CPU, one on a GPU) as one run folder, without
rerunning anything: their tables concatenated, job ids prefixed with the run id so they stay
apart, and each run's env.json and parity.csv kept in a folder named after the run.
The report then ranks jobs only against jobs on the same device."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from benchmarks.harness.results import SCHEMA, TABLES
from report.migrate import PARITY_FILES, migrated_parity, parity_file
from report.source import read_env, read_table

KEPT = ("env.json", *PARITY_FILES)  # per run, in OUT/<run id>/


class MergeError(ValueError):
    pass


def run_id(run_dir: Path) -> str:
    summary = read_table(run_dir, "summary")
    return str(summary["run_id"].iloc[0]) if len(summary) else run_dir.name


def merge_runs(run_dirs: list[Path], out: Path) -> list[str]:
    """Write the merged tables into `out`; the run ids, in order. Refuses runs that share a run id
    or a device: their jobs could not be told apart (report.compare compares such runs). A run of an
    earlier schema is merged at the current one; raises `report.source.SchemaError` for one of a later schema."""
    for run_dir in run_dirs:
        read_env(run_dir)
    ids = [run_id(run_dir) for run_dir in run_dirs]
    if len(set(ids)) < len(ids):
        raise MergeError(f"the runs share a run id: {', '.join(ids)}")
    devices = {run: set(read_table(run_dir, "summary")["device"]) for run, run_dir in zip(ids, run_dirs)}
    for first, second in ((a, b) for i, a in enumerate(ids) for b in ids[i + 1:]):
        shared = devices[first] & devices[second]
        if shared:
            raise MergeError(f"runs {first} and {second} both ran on {', '.join(sorted(shared))}: merging is "
                             f"for runs on different devices; `python -m report.compare` compares them")
    out.mkdir(parents=True, exist_ok=True)
    for table in TABLES:
        frames = [read_table(run_dir, table).assign(run_id=run) for run, run_dir in zip(ids, run_dirs)]
        merged = pd.concat([frame for frame in frames if len(frame)] or frames[:1], ignore_index=True)
        merged["job_id"] = merged["run_id"].astype(str) + "/" + merged["job_id"].astype(str)
        merged.to_csv(out / f"{table}.csv", index=False)
    for run, run_dir in zip(ids, run_dirs):
        (out / run).mkdir(exist_ok=True)
        env = read_env(run_dir)
        if "migrated" in env:  # a run of an earlier schema: its env.json and parity.csv at today's, as its tables
            (out / run / "env.json").write_text(json.dumps(env, indent=2) + "\n")
            parity = migrated_parity(run_dir)
            if parity is not None:
                parity.to_csv(out / run / parity_file(run_dir).name, index=False)
            continue
        for name in KEPT:
            if (run_dir / name).exists():
                shutil.copy(run_dir / name, out / run / name)
    (out / "env.json").write_text(json.dumps({"schema": SCHEMA, "merged": ids}, indent=2))
    return ids
