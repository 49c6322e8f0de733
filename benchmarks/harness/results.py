"""The result tables' columns and the run folder: a fresh `results/<run-id>/` that never
overwrites an earlier run, and the CSV tables, appended as rows arrive so an interrupted run keeps
everything it measured."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd

from benchmarks.harness.rows import ROWS, EvaluationRow, Identity, ProfileRow, SummaryRow, WindowRow, columns, merged

# The version of what a run folder holds (these tables' columns, env.json's keys), written into
# env.json as "schema". Folders written before it was recorded are version 1. An added column needs no
# new version: reading fills it (IMPLIED, else empty) in folders written before it. Raise it with any
# change of meaning a reader of an earlier folder would get wrong, and add that step's migration to
# report/migrate.py, which the report applies as it reads an older folder.
SCHEMA = 7  # 2: summary rows store gflop_per_step, gflops and of_peak (the report computed them before);
# 3: busy shares of sums; 4: the tuning profile in every table's identity, the settings a worker saw;
# 5: native input pipelines (input_workers, epoch_images_per_s, input_stall_s, input_stall_share, input_cpu_s,
# input_cpu_how); 6: epochs.csv's training time since the previous evaluation is `train_s` (was `epoch_s`, which
# summary.csv uses for the median whole epoch), its busy share `train_busy_share`; 7: the seed in every table's
# identity (--seeds), epochs.csv's test_size and evaluated (and predictions/ beside the tables)

# Each table's columns are the fields of its row (benchmarks.harness.rows), which says what each means.
IDENTITY = columns(Identity)
SUMMARY_COLUMNS = columns(SummaryRow)
STEPS_COLUMNS = columns(WindowRow)
EPOCHS_COLUMNS = columns(EvaluationRow)
PROFILE_COLUMNS = columns(ProfileRow)

# A job's identity: every column that makes two rows different jobs. Every grouping of jobs, in report/ and
# benchmarks/, uses it: never a hand-written subset, so two jobs that differ in one of these are never pooled.
# input: the input path (jobs.INPUTS); nodes: machines of a multi-node run. The steps, epochs and profile tables
# carry the columns of IDENTITY only and reach the rest through job_id and attempt. The seed is in IDENTITY, not
# here: a comparison of speed pools a job's seeds as it pools its repeats, and what compares seeds groups by it.
JOB = ["framework", "variant", "model", "device", "devices", "nodes", "precision", "tuning", "batch_size", "input"]
# The setting within which variants are compared (a ranking, a finding): the identity less what is compared.
SETTING = [column for column in JOB if column not in ("framework", "variant")]

TABLES = {table: columns(row) for table, row in ROWS.items()}

# The value a column implicitly had in folders written before it existed: one device on one node, the
# prefetching input path and no augmentation (their defaults when they were added), and `custom` tuning (runs
# before the profiles had the settings their env.json's `flags` record). Every other column added since is empty
# in such a folder: it was not measured.
IMPLIED = {"devices": lambda table: 1, "nodes": lambda table: 1,
           "global_batch": lambda table: table["batch_size"] * table["devices"],
           "input": lambda table: "prefetch", "augment": lambda table: "none", "tuning": lambda table: "custom"}


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


def write_side_run(out: Path, name: str, table: pd.DataFrame, module: str, env: dict) -> Path:
    """A measurement that is not a benchmark run (`benchmarks.overhead`, `benchmarks.hotpath`): its one
    table as `name` in a new run folder under `out`, beside an env.json describing the machine and
    the command (`environment.collect`) with `env` added. Returns the folder."""
    from benchmarks.harness.environment import collect

    run_dir = new_run_dir(out)
    table.to_csv(run_dir / name, index=False)
    root = Path(__file__).resolve().parent.parent.parent
    (run_dir / "env.json").write_text(json.dumps({**collect(root, dict(os.environ), module), **env}, indent=2) + "\n")
    return run_dir


def append_rows(run_dir: Path, table: str, rows: list) -> None:
    """Append rows (the table's typed rows, or mappings of its columns) in one write, flushed to
    disk, so the file stays well-formed CSV whenever the process is stopped. A field the table has
    no column for is an error (rows.UnknownColumn), never dropped."""
    if not rows:
        return
    path = run_dir / f"{table}.csv"
    records = [merged(table, row) for row in rows]
    text = pd.DataFrame(records, columns=TABLES[table]).to_csv(index=False, header=not path.exists())
    with open(path, "a") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def read_written(run_dir: Path, table: str) -> pd.DataFrame:
    """The table's file as written, with the columns it has: only an empty field is missing, so a variant or
    error text such as "nan", "None" or "NA" stays a string (pandas' default would turn it into NaN)."""
    path = run_dir / f"{table}.csv"
    if not path.exists():
        return pd.DataFrame(columns=TABLES[table])
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def fill(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """`frame` with every column of the table, in its order: one the frame lacks holds its IMPLIED value, else
    is empty. A column the table does not know is kept, after them, so reading never drops what was written."""
    implied = [column for column in TABLES[table] if column not in frame and column in IMPLIED]
    frame = frame.reindex(columns=[*TABLES[table], *(column for column in frame if column not in TABLES[table])])
    for column in implied:  # in the table's order: devices before global_batch, which it implies
        frame[column] = IMPLIED[column](frame) if len(frame) else frame[column]
    return frame


def read_table(run_dir: Path, table: str) -> pd.DataFrame:
    """The table with every column it has today (`fill`). A folder of an earlier schema is read through its
    migrations by `report.source.read_table`."""
    return fill(read_written(run_dir, table), table)


def measured(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows of jobs that timed steps (ok, or diverged after some windows)."""
    return summary[summary["status"].isin(["ok", "diverged"]) & summary["windows"].fillna(0).gt(0)]


def latest_attempts(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per job: the last one recorded (a resumed run appends a new attempt)."""
    return summary.drop_duplicates("job_id", keep="last")
