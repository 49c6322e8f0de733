"""Run folders of every earlier results schema brought to the current one (`benchmarks.harness.results.SCHEMA`),
one function per schema step. The report applies them as it reads a folder, writing nothing;
`python -m report.migrate RUN [RUN...]` rewrites folders in place, keeping the files as written in
RUN/schema-<N>/. A migration renames and re-derives only: what an old schema did not measure stays empty,
and the folder's env.json says which columns those are (`migrated`)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import pandas as pd

from benchmarks.harness.results import IMPLIED, SCHEMA, TABLES, fill, read_written

PARITY = "parity"  # parity.csv: not one of the run tables, but migrated with them
PLAN = "plan"  # the seeds of plan.json's jobs, for the step that reads them (`planned`): never written back
PARITY_FILES = ("parity.csv", "parity.csv.xz")
REWRITTEN = ("env.json", *(f"{table}.csv" for table in TABLES), *PARITY_FILES)  # what a rewrite backs up


class SchemaError(ValueError):
    """A folder the report cannot read: no env.json, or one of a later schema. One line that says which."""


def written_env(run_dir: Path) -> dict:
    """env.json as written, with its schema checked: one this version can read or migrate."""
    path = run_dir / "env.json"
    if not path.is_file():
        raise SchemaError(f"{run_dir} holds no env.json: not a run folder this report can read")
    try:
        env = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SchemaError(f"{path} is not valid JSON ({error})") from None
    schema = env.get("schema", 1)  # folders written before the schema was recorded are version 1
    if not isinstance(schema, int) or not 1 <= schema <= SCHEMA:
        raise SchemaError(f"{run_dir} was written under results schema {schema}; this report reads schemas 1 to "
                          f"{SCHEMA} (render it with the version of the project that wrote it, or a later one)")
    return env


# --- One function per schema step: (env.json, the tables at hand by name) -> the same at the next schema ---------


def schema_1_to_2(env: dict, tables: dict[str, pd.DataFrame]) -> tuple[dict, dict[str, pd.DataFrame]]:
    """Schema 2 stores gflop_per_step, gflops and of_peak in summary.csv, which the report used to compute from
    the model: they stay empty (the report reads data only). Runs before --interleave took turns between a job's
    repeats. The first parity.csv (pair, check, tensor, error, tolerance, passed) checked the run's one model and
    precision and asserted every comparison; per-step checks, settings and tolerated outliers came later."""
    env = {"interleave": "repeats", "cpu_features": None, "transparent_hugepages": None, **env}
    parity = tables.get(PARITY)
    if parity is not None and "asserted" not in parity:
        summary = tables["summary"]
        model, precision = (summary[column].iloc[0] if summary[column].nunique() == 1 else None
                            for column in ("model", "precision"))
        parity = parity.assign(model=model, precision=precision, setting=None, step=None, asserted=True,
                               outlier=False)
        tables = {**tables, PARITY: parity[["model", "precision", "pair", "check", "setting", "step", "tensor",
                                            "error", "tolerance", "asserted", "passed", "outlier"]]}
    return env, tables


def schema_2_to_3(env: dict, tables: dict[str, pd.DataFrame]) -> tuple[dict, dict[str, pd.DataFrame]]:
    """Schema 3 records the share of each sum of times that fell in busy windows (summary.csv's
    epoch_busy_share, train_busy_share_to_target, wall_busy_share_to_target; epochs.csv's epoch_busy_share):
    not measured before, so empty."""
    return env, tables


def schema_3_to_4(env: dict, tables: dict[str, pd.DataFrame]) -> tuple[dict, dict[str, pd.DataFrame]]:
    """Schema 4 puts the tuning profile in every table's identity and each worker's settings in summary.csv. A
    run before the profiles is `custom` (results.IMPLIED): every worker had the environment env.json's `flags`
    records, which become its rows' settings. (One branch's schema 3 already held tuning and settings.)"""
    summary, flags = tables.get("summary"), env.get("flags")
    if summary is not None and "settings" not in summary and flags:  # no flags: settings stay empty
        settings = "; ".join(f"{name}={value}" for name, value in sorted(flags.items()))
        tables = {**tables, "summary": summary.assign(settings=settings)}
    if "tuning" not in env:
        env = {**env, "tuning": {"profiles": ["custom"], "note": "run before the tuning profiles existed; every "
                                 "worker had the environment in `flags`, recorded per row in summary.csv's "
                                 "`settings`"}}
    return env, tables


def schema_4_to_5(env: dict, tables: dict[str, pd.DataFrame]) -> tuple[dict, dict[str, pd.DataFrame]]:
    """Schema 5 measures native input pipelines (input_workers, epoch_images_per_s, input_stall_s,
    input_stall_share, input_cpu_s, input_cpu_how): every earlier run used the suite's own input path and
    measured none of them, so they stay empty."""
    return env, tables


def schema_5_to_6(env: dict, tables: dict[str, pd.DataFrame]) -> tuple[dict, dict[str, pd.DataFrame]]:
    """Schema 6 calls epochs.csv's training time since the previous evaluation `train_s` (it was `epoch_s`, the
    name summary.csv gives the median whole epoch) and its busy share `train_busy_share`."""
    epochs = tables.get("epochs")
    if epochs is not None:
        tables = {**tables, "epochs": epochs.rename(columns={"epoch_s": "train_s",
                                                             "epoch_busy_share": "train_busy_share"})}
    return env, tables


def schema_6_to_7(env: dict, tables: dict[str, pd.DataFrame]) -> tuple[dict, dict[str, pd.DataFrame]]:
    """Schema 7 puts the seed in every table's identity (--seeds) and records epochs.csv's test_size and evaluated.
    Before it a run had one seed, --seed, which every job of its plan.json holds: the rows get it (0, the default,
    where the folder has no plan.json). The test set's size and the images scored were not recorded: they stay
    empty."""
    plan = tables.get(PLAN)
    seed = int(plan["seed"].iloc[0]) if plan is not None and len(plan) else 0
    return env, {name: frame.assign(seed=seed) if name in TABLES else frame for name, frame in tables.items()}


MIGRATIONS = {1: schema_1_to_2, 2: schema_2_to_3, 3: schema_3_to_4, 4: schema_4_to_5, 5: schema_5_to_6,
              6: schema_6_to_7}


def migrate(env: dict, tables: dict[str, pd.DataFrame]) -> tuple[dict, dict[str, pd.DataFrame]]:
    """env.json and tables as written under env's schema, at the current one (the tables still to be `fill`ed)."""
    for schema in range(env.get("schema", 1), SCHEMA):
        env, tables = MIGRATIONS[schema](env, tables)
    return {**env, "schema": SCHEMA}, tables


# --- A run folder, read or rewritten ------------------------------------------------------------------------------


def migrated_env(run_dir: Path) -> dict:
    """env.json at the current schema. One of an earlier schema says under `migrated` which schema it was written
    under and which of today's columns its tables lack, so the report can say they are empty."""
    env = written_env(run_dir)
    if env.get("schema", 1) == SCHEMA:
        return env
    migrated, tables = migrate(env, {table: read_written(run_dir, table).iloc[:0] for table in TABLES})
    empty = [column for table, frame in tables.items() for column in TABLES[table]
             if column not in frame and column not in IMPLIED]
    return {**migrated, "migrated": {"from": env.get("schema", 1), "empty": list(dict.fromkeys(empty))}}


def planned(run_dir: Path) -> dict[str, pd.DataFrame]:
    """plan.json's jobs' seeds as the PLAN table, where the folder has a plan.json whose jobs record them."""
    path = run_dir / "plan.json"
    jobs = json.loads(path.read_text()).get("jobs", []) if path.is_file() else []
    seeds = [job["seed"] for job in jobs if "seed" in job]
    return {PLAN: pd.DataFrame({"seed": seeds})} if seeds else {}


def migrated_table(run_dir: Path, name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """`frame`, the table `name` of `run_dir` as written, at the current schema."""
    env = written_env(run_dir)
    if env.get("schema", 1) == SCHEMA:
        return frame
    tables = {name: frame, **({"summary": read_written(run_dir, "summary")} if name == PARITY else {}),
              **planned(run_dir)}
    return migrate(env, tables)[1][name]


def parity_file(run_dir: Path) -> Path | None:
    """parity.csv, or its compressed form; None where the run did not check parity."""
    return next((run_dir / name for name in PARITY_FILES if (run_dir / name).exists()), None)


def migrated_parity(run_dir: Path) -> pd.DataFrame | None:
    """parity.csv at the current schema, as a migrated folder writes it; None where the run did not check parity."""
    path = parity_file(run_dir)
    if path is None:
        return None
    return migrated_table(run_dir, PARITY, pd.read_csv(path, keep_default_na=False, na_values=[""]))


def rewrite(run_dir: Path) -> str:
    """Rewrite `run_dir` at the current schema, its files as written moved into run_dir/schema-<N>/ first; what
    was done, in one line. Refuses (SchemaError) a folder that is not a run, or whose backup folder exists."""
    if not (run_dir / "summary.csv").is_file():
        raise SchemaError(f"{run_dir} holds no summary.csv: not a run folder")
    env = written_env(run_dir)
    schema = env.get("schema", 1)
    if schema == SCHEMA:
        return f"{run_dir}: already at results schema {SCHEMA}, left as it is"
    if "merged" in env:
        raise SchemaError(f"{run_dir} merges runs of schema {schema}: migrate each run and merge them again")
    backup = run_dir / f"schema-{schema}"
    if backup.exists():
        raise SchemaError(f"{backup} already exists: move it away to migrate {run_dir} again")
    written = {table: read_written(run_dir, table) for table in TABLES if (run_dir / f"{table}.csv").exists()}
    tables, migrated = migrate(env, {**written, **planned(run_dir)})[1], migrated_env(run_dir)
    parity, parity_path = migrated_parity(run_dir), parity_file(run_dir)
    backup.mkdir()
    for name in REWRITTEN:
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, backup / name)
    for name in written:
        fill(tables[name], name).to_csv(run_dir / f"{name}.csv", index=False)
    if parity is not None:
        parity.to_csv(parity_path, index=False)
    (run_dir / "env.json").write_text(json.dumps(migrated, indent=2) + "\n")
    return f"{run_dir}: results schema {schema} -> {SCHEMA}; the files as written are in {backup}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m report.migrate", description=__doc__)
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN")
    args = parser.parse_args(argv)
    status = 0
    for run_dir in args.run_dirs:
        try:
            print(rewrite(run_dir))
        except SchemaError as error:
            print(f"python -m report.migrate: error: {error}", file=sys.stderr)
            status = 2
    return status


if __name__ == "__main__":
    sys.exit(main())
