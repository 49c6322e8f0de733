"""A run folder as the report reads it: its env.json and tables at the current results schema
(`benchmarks.harness.results.SCHEMA`), a folder of an earlier schema migrated as it is read
(`report.migrate`, nothing written), and the rows of each job's final attempt."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmarks.harness.results import JOB, fill, latest_attempts, read_written
from report.migrate import SchemaError, migrated_env, migrated_table

__all__ = ["SchemaError", "final_summary", "latest", "read_env", "read_table"]


def read_env(run_dir: Path) -> dict:
    """env.json of a run folder (a merged folder's, or one run's in it) at the current schema. Raises
    SchemaError for a folder without one, or one written under a later schema than this report's."""
    return migrated_env(run_dir)


def read_table(run_dir: Path, table: str) -> pd.DataFrame:
    """One of the run's tables (`benchmarks.harness.results.TABLES`) with today's columns and meanings: migrated
    from the schema it was written under, then every column it lacks filled (`results.fill`)."""
    return fill(migrated_table(run_dir, table, read_written(run_dir, table)), table)


def final_summary(run_dir: Path) -> pd.DataFrame:
    """summary.csv, one row per job: the last attempt's."""
    return latest_attempts(read_table(run_dir, "summary"))


def latest(table: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Rows of the attempt that produced each job's final summary row, with the columns of the job's
    identity (`results.JOB`) that `table` does not carry taken from that row, so its jobs group apart."""
    missing = [column for column in JOB if column not in table and column in summary]
    return table.merge(summary[["job_id", "attempt", *missing]], on=["job_id", "attempt"])
