"""The run folder: a fresh `results/<run-id>/` that never overwrites an earlier run, and the CSV
tables, appended one job at a time so an interrupted run keeps everything it measured."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd

from benchmarks.harness.jobs import EPOCHS_COLUMNS, PROFILE_COLUMNS, STEPS_COLUMNS, SUMMARY_COLUMNS

TABLES = {"summary": SUMMARY_COLUMNS, "steps": STEPS_COLUMNS, "epochs": EPOCHS_COLUMNS, "profile": PROFILE_COLUMNS}


def new_run_dir(out: Path) -> Path:
    """`out/<UTC timestamp>`, with a numeric suffix if that folder already exists."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for suffix in ["", *(f"-{i}" for i in range(2, 1000))]:
        run_dir = out / f"{stamp}{suffix}"
        try:
            run_dir.mkdir(parents=True)
            return run_dir
        except FileExistsError:
            continue
    raise FileExistsError(f"no free run folder name under {out}")


def append_rows(run_dir: Path, table: str, rows: list[dict]) -> None:
    """Append rows with the table's fixed columns in one write, flushed to disk, so the file
    stays well-formed CSV whenever the process is stopped."""
    if not rows:
        return
    path = run_dir / f"{table}.csv"
    text = pd.DataFrame(rows, columns=TABLES[table]).to_csv(index=False, header=not path.exists())
    with open(path, "a") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def read_table(run_dir: Path, table: str) -> pd.DataFrame:
    """The table as written: only an empty field is missing, so a variant or error text such as
    "nan", "None" or "NA" stays a string (pandas' default would turn it into NaN)."""
    path = run_dir / f"{table}.csv"
    if not path.exists():
        return pd.DataFrame(columns=TABLES[table])
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def measured(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows of jobs that timed steps (ok, or diverged after some windows)."""
    return summary[summary["status"].isin(["ok", "diverged"]) & summary["windows"].fillna(0).gt(0)]


def latest_attempts(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per job: the last one recorded (a resumed run appends a new attempt)."""
    return summary.drop_duplicates("job_id", keep="last")
