"""A run folder as the report reads it: its env.json, refused when the folder was written under
another schema than the one this report reads (`benchmarks.harness.results.SCHEMA`), and the rows
of each job's final attempt."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from benchmarks.harness.results import JOB, SCHEMA, latest_attempts, read_table


class SchemaError(ValueError):
    """A run folder written under another schema: one line that says which, and what to do."""


def read_env(run_dir: Path) -> dict:
    """env.json of a run folder of the current schema (a merged folder's, or one run's in it)."""
    path = run_dir / "env.json"
    if not path.is_file():
        raise SchemaError(f"{run_dir} holds no env.json: not a run folder this report can read")
    env = json.loads(path.read_text())
    schema = env.get("schema", 1)  # folders written before the schema was recorded are version 1
    if schema != SCHEMA:
        raise SchemaError(f"{run_dir} was written under results schema {schema}; this report reads schema "
                          f"{SCHEMA} only (render it with the version of the project that wrote it)")
    return env


def final_summary(run_dir: Path) -> pd.DataFrame:
    """summary.csv, one row per job: the last attempt's."""
    return latest_attempts(read_table(run_dir, "summary"))


def latest(table: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Rows of the attempt that produced each job's final summary row, with the columns of the job's
    identity (`results.JOB`) that `table` does not carry taken from that row, so its jobs group apart."""
    missing = [column for column in JOB if column not in table and column in summary]
    return table.merge(summary[["job_id", "attempt", *missing]], on=["job_id", "attempt"])
