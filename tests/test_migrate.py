"""Run folders of every results schema (tests/fixtures/schemas, cut from committed runs) stay readable:
each reads with today's columns and meanings, renders with today's report, compares with every other
and with a current run, and `python -m report.migrate` rewrites it to a folder the report reads as
current and renders the same, keeping the files as written."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.harness.results import JOB, SCHEMA, TABLES, read_written
from report.compare import comparison_markdown
from report.findings import read_parity
from report.render import write_report
from report.source import final_summary, read_env, read_table
from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "schemas"
SCHEMAS = sorted(int(folder.name) for folder in FIXTURES.iterdir() if folder.is_dir())
EARLIER = [schema for schema in SCHEMAS if schema < SCHEMA]
MEASURED = ["step_ms_median", "step_ms_iqr", "images_per_s", "compile_s", "peak_rss_mb", "test_accuracy"]


def copy_of(schema: int, parent: Path) -> Path:
    folder = parent / str(schema)
    shutil.copytree(FIXTURES / str(schema), folder)
    return folder


def written_schema(schema: int) -> int:
    return json.loads((FIXTURES / str(schema) / "env.json").read_text()).get("schema", 1)


def test_there_is_a_fixture_of_every_schema_and_each_says_which():
    assert SCHEMAS == list(range(1, SCHEMA + 1))
    assert [written_schema(schema) for schema in SCHEMAS] == SCHEMAS


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda schema: f"schema-{schema}")
def test_a_folder_of_every_schema_reads_with_todays_columns_and_its_measurements_as_written(schema):
    folder = FIXTURES / str(schema)
    env = read_env(folder)
    assert env["schema"] == SCHEMA
    for table, columns in TABLES.items():
        assert list(read_table(folder, table).columns) == columns, table
    summary, written = read_table(folder, "summary"), read_written(folder, "summary")
    pd.testing.assert_frame_equal(summary[MEASURED], written[MEASURED])
    epochs, written_epochs = read_table(folder, "epochs"), read_written(folder, "epochs")
    train_s = "epoch_s" if schema < 6 else "train_s"  # renamed in schema 6: the same measurement
    assert epochs["train_s"].tolist() == written_epochs[train_s].tolist()
    assert summary[JOB].notna().all().all(), "every identity column known, implied or written"
    if schema < SCHEMA:  # what the report lists as not recorded is empty wherever it is read
        assert env["migrated"]["from"] == schema
        for table in TABLES:
            frame = read_table(folder, table)
            assert frame[[column for column in env["migrated"]["empty"] if column in frame]].isna().all().all()
    else:
        assert "migrated" not in env


def test_the_first_schema_reads_with_the_values_its_columns_implied_and_says_what_it_did_not_measure():
    folder = FIXTURES / "1"
    summary, steps = read_table(folder, "summary"), read_table(folder, "steps")
    assert summary[["devices", "nodes", "input", "augment", "tuning"]].drop_duplicates().values.tolist() == [
        [1, 1, "prefetch", "none", "custom"]]
    assert (summary["global_batch"] == summary["batch_size"]).all()
    assert summary["settings"].isna().all()  # its env.json's flags are empty: no worker had a setting
    assert summary[["gflop_per_step", "gflops", "of_peak", "contention"]].isna().all().all()  # not stored then
    assert steps["others_cpu"].isna().all() and (steps["tuning"] == "custom").all()
    env = read_env(folder)
    assert env["interleave"] == "repeats" and env["tuning"]["profiles"] == ["custom"]
    assert {"gflop_per_step", "contention", "others_cpu", "eval_s"} <= set(env["migrated"]["empty"])
    parity = read_parity(folder)
    assert (parity["model"] == "lenet").all() and (parity["precision"] == "fp32").all()
    assert parity["asserted"].all() and not parity["outlier"].any() and parity["step"].isna().all()


@pytest.mark.parametrize("plan", [None, 3], ids=["without plan.json", "with plan.json"])
def test_rows_before_the_seed_was_in_the_identity_get_the_seed_their_plan_ran(tmp_path, plan):
    """Before schema 7 a run had one seed (--seed), in every job of its plan.json; 0 where the folder has none.
    The test set's size and the images scored were not recorded: empty, and listed as such."""
    folder = copy_of(6, tmp_path)
    if plan is not None:
        (folder / "plan.json").write_text(json.dumps({"jobs": [{"kind": "benchmark", "seed": plan}] * 3}))
    for table in ("summary", "steps", "epochs"):
        assert read_table(folder, table)["seed"].tolist() == [plan or 0] * len(read_written(folder, table)), table
    epochs = read_table(folder, "epochs")
    assert epochs[["test_size", "evaluated"]].isna().all().all()
    assert {"test_size", "evaluated"} <= set(read_env(folder)["migrated"]["empty"])
    assert "seed" not in read_env(folder)["migrated"]["empty"]
    completed = subprocess.run([sys.executable, "-m", "report.migrate", str(folder)], cwd=ROOT, capture_output=True,
                               text=True)
    assert completed.returncode == 0, completed.stderr
    assert read_written(folder, "summary")["seed"].tolist() == [plan or 0] * 3
    assert not (folder / "plan.csv").exists(), "the plan is read, never written as a table"


def test_a_run_from_before_the_tuning_profiles_has_the_settings_its_env_json_recorded():
    summary = read_table(FIXTURES / "3", "summary")
    assert (summary["tuning"] == "custom").all()
    assert (summary["settings"] == "GLIBC_TUNABLES=glibc.malloc.hugetlb=1; TF_ENABLE_ONEDNN_OPTS=1").all()
    assert read_table(FIXTURES / "4", "summary")["settings"].tolist() == summary["settings"].tolist()


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda schema: f"schema-{schema}")
def test_a_folder_of_every_schema_renders_with_todays_report(tmp_path, schema):
    folder = copy_of(schema, tmp_path)
    written = {path.name: path.read_bytes() for path in folder.iterdir()}
    report = write_report(folder).read_text()
    assert "## Speed, ranked by throughput" in report and "pytorch:eager" in report
    assert ("Written under results schema" in report) == (schema < SCHEMA)
    if schema < SCHEMA:
        assert f"- Written under results schema {schema}, read through its migrations" in report
    assert all((folder / name).read_bytes() == data for name, data in written.items()), "reading writes nothing"


@pytest.mark.parametrize("old, new", list(itertools.combinations(SCHEMAS, 2)) + [(1, "current")],
                         ids=lambda value: f"schema-{value}")
def test_folders_of_any_two_schemas_compare(old, new):
    new_dir = ROOT / "results" / "time-to-accuracy" if new == "current" else FIXTURES / str(new)
    text = comparison_markdown(FIXTURES / str(old), new_dir)
    for folder in (FIXTURES / str(old), new_dir):
        for job in final_summary(folder).itertuples():
            assert f"{job.framework}:{job.variant}" in text


def test_the_same_run_under_three_schemas_reads_and_compares_as_one():
    """Folders 2 to 4 hold one run as schemas 2, 3 and 4 stored it: migrated, their jobs and measurements agree."""
    summaries = [final_summary(FIXTURES / str(schema)) for schema in (2, 3, 4)]
    for summary in summaries[1:]:
        pd.testing.assert_frame_equal(summary[JOB + MEASURED], summaries[0][JOB + MEASURED])
    text = comparison_markdown(FIXTURES / "2", FIXTURES / "4")
    assert "Only in" not in text


def test_compare_reads_an_earlier_schema_from_the_command_line(tmp_path):
    completed = subprocess.run([sys.executable, "-m", "report.compare", str(FIXTURES / "1"),
                                str(ROOT / "results" / "time-to-accuracy")], cwd=ROOT, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("# Run time-to-accuracy against 1")


@pytest.mark.parametrize("schema", EARLIER, ids=lambda schema: f"schema-{schema}")
def test_migrate_rewrites_a_folder_the_report_reads_as_current_and_renders_the_same(tmp_path, schema):
    read, rewritten = copy_of(schema, tmp_path / "read"), copy_of(schema, tmp_path / "rewritten")
    completed = subprocess.run([sys.executable, "-m", "report.migrate", str(rewritten)], cwd=ROOT,
                               capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    backup = rewritten / f"schema-{schema}"
    assert completed.stdout == (f"{rewritten}: results schema {schema} -> {SCHEMA}; the files as written are in "
                                f"{backup}\n")
    for path in (FIXTURES / str(schema)).iterdir():  # the files as written, kept
        assert (backup / path.name).read_bytes() == path.read_bytes(), path.name
    env = json.loads((rewritten / "env.json").read_text())
    assert env["schema"] == SCHEMA and env["migrated"] == read_env(read)["migrated"]
    for table, columns in TABLES.items():
        if (rewritten / f"{table}.csv").exists():
            pd.testing.assert_frame_equal(read_written(rewritten, table), read_table(read, table), check_dtype=False)
    assert write_report(rewritten).read_text() == write_report(read).read_text()
    assert (rewritten / "parity.md").read_text() == (read / "parity.md").read_text()


def test_migrate_leaves_a_current_folder_and_refuses_what_it_cannot_migrate_in_one_line(tmp_path):
    current, migrated = copy_of(SCHEMA, tmp_path), copy_of(2, tmp_path)
    (migrated / "schema-2").mkdir()  # a backup of an earlier migration, say: never overwritten
    before = {path.name: path.read_bytes() for path in migrated.iterdir() if path.is_file()}
    completed = subprocess.run([sys.executable, "-m", "report.migrate", str(current), str(migrated),
                                str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert completed.returncode == 2 and "Traceback" not in completed.stderr
    assert completed.stdout == f"{current}: already at results schema {SCHEMA}, left as it is\n"
    assert completed.stderr.splitlines() == [
        f"python -m report.migrate: error: {migrated / 'schema-2'} already exists: move it away to migrate "
        f"{migrated} again",
        f"python -m report.migrate: error: {tmp_path} holds no summary.csv: not a run folder"]
    assert {path.name: path.read_bytes() for path in migrated.iterdir() if path.is_file()} == before


def test_a_column_added_after_a_folder_was_written_reads_empty_or_as_it_was_implied(tmp_path):
    """No schema step needed: a current folder whose summary.csv lacks a column reads with it filled."""
    folder = copy_of(SCHEMA, tmp_path)
    summary = read_written(folder, "summary")
    summary.drop(columns=["nodes", "input_cpu_how"]).to_csv(folder / "summary.csv", index=False)
    read = read_table(folder, "summary")
    assert list(read.columns) == TABLES["summary"]
    assert (read["nodes"] == 1).all() and read["input_cpu_how"].isna().all()


def test_a_run_of_an_earlier_schema_merges_with_a_current_one(tmp_path):
    """The current run relabelled as a GPU run, so the two may merge: the merged folder is of the current schema
    throughout, and the old run's section still says what it did not record."""
    old, current = copy_of(1, tmp_path), copy_of(SCHEMA, tmp_path)
    for table in ("summary", "steps", "epochs"):
        read_written(current, table).assign(device="cuda").to_csv(current / f"{table}.csv", index=False)
    completed = subprocess.run([sys.executable, "-m", "report", str(old), str(current), "--out",
                                str(tmp_path / "merged")], cwd=ROOT, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    merged = tmp_path / "merged"
    old_id = read_written(old, "summary")["run_id"].iloc[0]
    assert json.loads((merged / old_id / "env.json").read_text())["migrated"]["from"] == 1
    for table, columns in TABLES.items():
        assert list(read_written(merged, table).columns) == columns, table
    report = (merged / "report.md").read_text()
    assert report.count("- Written under results schema") == 1
    assert f"### Run {old_id}\n\n" in report and (merged / old_id / "parity.md").exists()
