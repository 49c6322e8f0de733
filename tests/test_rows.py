"""Typed rows: each table's columns are its row's fields, a summary row is assembled from its
producers' parts, a field a table lacks is an error naming both, `profile_error` reaches
summary.csv, each evaluation's predictions reach the run folder as they arrive, and the worker's
pipe (`channel`) stands apart from the modules that use it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.harness import data as datasets, results, training
from benchmarks.harness.contention import Contention
from benchmarks.harness.efficiency import Efficiency
from benchmarks.harness.jobs import Data, Timing
from benchmarks.harness.recording import JobRecorder
from benchmarks.harness.rows import (
    ROWS,
    Evaluation,
    Identity,
    ProfileOp,
    Summary,
    SummaryRow,
    UnknownColumn,
    Window,
    assemble,
    columns,
)
from benchmarks.harness.stats import StepTimes
from frameworks import profiled
from tests.conftest import ROOT, QuietChannel, make_job

PARTS = [StepTimes, Contention, Efficiency, training.Throughput, training.TargetRace, training.InputCost]


@pytest.mark.parametrize("table, measured", [("summary", Summary), ("steps", Window), ("epochs", Evaluation),
                                             ("profile", ProfileOp)], ids=str)
def test_a_tables_columns_are_the_identity_then_its_rows_own_fields(table, measured):
    """A field that repeated an identity column would silently take its place among the columns."""
    assert results.TABLES[table] == results.IDENTITY + columns(measured)
    assert len(set(results.TABLES[table])) == len(results.TABLES[table])
    assert results.TABLES[table] == columns(ROWS[table])
    assert results.IDENTITY == columns(Identity)
    exported = {"summary": results.SUMMARY_COLUMNS, "steps": results.STEPS_COLUMNS, "epochs": results.EPOCHS_COLUMNS,
                "profile": results.PROFILE_COLUMNS}
    assert exported[table] == results.TABLES[table]


@pytest.mark.parametrize("part", PARTS, ids=lambda part: part.__name__)
def test_every_part_of_a_summary_row_is_summary_columns(part):
    assert set(columns(part)) <= set(columns(Summary))


def test_a_misspelled_key_fails_and_writes_nothing(tmp_path):
    with pytest.raises(UnknownColumn, match=r"summary\.csv has no column 'stauts'"):
        results.append_rows(tmp_path, "summary", [{"job_id": "a", "stauts": "ok"}])
    with pytest.raises(UnknownColumn, match=r"steps\.csv has no column 'step_mss'"):
        results.append_rows(tmp_path, "steps", [{"job_id": "a", "step_mss": 1.0}])
    assert not list(tmp_path.iterdir())


def test_a_worker_result_with_a_misspelled_key_is_refused_at_the_parent(tmp_path):
    recorder = JobRecorder(tmp_path, "run", make_job(), 1)
    with pytest.raises(UnknownColumn, match=r"summary\.csv has no column 'step_ms_medain'"):
        recorder.finish({"status": "ok", "step_ms_medain": 10.0})
    window = {"window": 0, "epoch": 0, "first_step": 1, "steps": 4, "seconds": 0.2, "step_ms": 50.0,
              "others_cpu": None, "steal": None, "load": None}
    with pytest.raises(UnknownColumn, match=r"steps\.csv has no column 'wall_s'"):
        recorder.on_message({"type": "window", "row": {**window, "wall_s": 0.2}})
    with pytest.raises(ValueError, match=r"a steps\.csv row lacks 'seconds'"):
        recorder.on_message({"type": "window",
                             "row": {name: value for name, value in window.items() if name != "seconds"}})
    assert not list(tmp_path.iterdir())


def test_a_summary_row_is_its_identity_then_its_parts_the_later_replacing_the_earlier():
    identity = Identity("run", "job", "faulty", "ok", "tuned", "lenet", "cpu", "fp32", 32, 1, 0, 1, 1)
    row = assemble(SummaryRow, identity, {"threads": 4, "status": "error"}, StepTimes(windows=3, step_ms_median=2.0),
                   {"threads": 2, "status": "ok"})
    assert (row.job_id, row.threads, row.status, row.windows, row.step_ms_median, row.test_accuracy) == (
        "job", 2, "ok", 3, 2.0, None)


def test_the_benchmark_result_a_worker_sends_is_summary_columns(faulty, tmp_path):
    """The faulty framework's whole benchmark, in process: the worker checks its result before it
    sends it, and the parent makes a typed row of it."""
    job = make_job(timing=Timing(epochs=1, warmup_steps=1, window=2, target_accuracy=0.99),
                   data=Data(train_size=128, test_size=32))
    result = training.run_benchmark(job, QuietChannel())
    assert result["status"] == "ok" and result["windows"] > 0
    assert result["target_reached"] is False and result["steps_to_target"] is None
    row = assemble(SummaryRow, JobRecorder(tmp_path, "run", job, 1).identity, result)
    assert row.images_per_s == pytest.approx(32 / (row.step_ms_median / 1000))


class Relay:
    """A worker's channel that hands each message, through JSON as the pipe carries it, straight to the
    job's recorder; it stops the job (as Ctrl-C would) at message number `stop_at` of the kind `stop_on`."""

    waited_s = 0.0

    def __init__(self, recorder: JobRecorder, stop_on: str = "", stop_at: int = 0):
        self.recorder, self.stop_on, self.stop_at, self.seen = recorder, stop_on, stop_at, 0

    def send(self, kind, **fields):
        self.seen += kind == self.stop_on
        if self.seen and self.seen == self.stop_at:
            raise KeyboardInterrupt
        self.recorder.on_message(json.loads(json.dumps({"type": kind, **fields}, default=float)))

    def hand_on_turn(self):
        pass


def test_every_evaluations_predictions_are_in_the_run_folder_as_each_ends(faulty, tmp_path):
    """The faulty framework predicts class 0 for every image: its predictions file holds that for each of the
    three evaluations, beside the test labels, and epochs.csv's accuracy is their share of 0s over the images
    scored. A job stopped after its second evaluation keeps a whole file of two."""
    job = make_job(timing=Timing(epochs=3, warmup_steps=1, window=2), data=Data(train_size=128, test_size=48))
    labels = datasets.synthetic().subset(128, 48).test_labels
    recorder = JobRecorder(tmp_path, "run", job, 1)
    assert training.run_benchmark(job, Relay(recorder))["status"] == "ok"
    with np.load(tmp_path / "predictions" / f"{job.job_id}-a1.npz") as saved:
        epochs = results.read_table(tmp_path, "epochs")
        np.testing.assert_array_equal(saved["steps"], epochs["step"])
        assert saved["steps"].dtype == np.int64 and saved["predictions"].dtype == saved["labels"].dtype == np.uint8
        np.testing.assert_array_equal(saved["predictions"], np.zeros((3, 48)))
        np.testing.assert_array_equal(saved["labels"], labels)
    assert epochs["test_accuracy"].tolist() == [np.mean(labels == 0)] * 3
    assert epochs[["test_size", "evaluated"]].values.tolist() == [[48, 48]] * 3
    stopped = JobRecorder(tmp_path, "run", job, 2)
    with pytest.raises(KeyboardInterrupt):
        training.run_benchmark(job, Relay(stopped, stop_on="epoch", stop_at=3))
    with np.load(tmp_path / "predictions" / f"{job.job_id}-a2.npz") as saved:
        assert saved["predictions"].shape == (2, 48) and len(saved["steps"]) == 2
    assert sorted(path.name for path in (tmp_path / "predictions").iterdir()) == [
        f"{job.job_id}-a1.npz", f"{job.job_id}-a2.npz"], "no partial file left behind"


def test_a_failed_profile_reaches_summary_csv(tmp_path):
    """The profile message a worker sends when its profiler fails (`training.profile`) ends in the
    job's summary row, beside its timings."""
    class Unprofiled:
        framework = "faulty"

        def place(self, images, labels):
            return images, labels

        def wait(self, placed):
            pass

    class Messages(list):
        def send(self, kind, **fields):
            self.append({"type": kind, **fields})

    job = make_job(timing=Timing(steps=2, warmup_steps=0, window=1, profile=True),
                   data=Data(train_size=64, test_size=16))
    channel = Messages()
    training.profile(Unprofiled(), datasets.synthetic(64, 16), job, channel)
    recorder = JobRecorder(tmp_path, "run", job, 1)
    for message in channel:
        recorder.on_message(message)
    recorder.finish({"status": "ok", "windows": 2, "step_ms_median": 5.0, "images_per_s": 6400.0})
    row = results.read_table(tmp_path, "summary").iloc[0]
    assert row["profile_error"] == f"ValueError: no profiler for faulty (profiles: {', '.join(profiled())})"
    assert row["step_ms_median"] == 5.0
    assert (tmp_path / "profiles" / job.job_id).is_dir() and not (tmp_path / "profile.csv").exists()


def test_a_profiled_jobs_op_rows_are_typed_profile_rows(tmp_path):
    traces = [tmp_path / "trace-1", tmp_path / "trace-2"]
    for folder in traces:
        folder.mkdir()
    job = make_job()
    recorder = JobRecorder(tmp_path, "run", job, 1)
    op = {"op": "conv", "category": "convolution forward", "calls": 5, "self_ms": 1.5, "share": 1.0, "detail": ""}
    recorder.on_message({"type": "profile", "folder": str(traces[0]), "rows": [op]})
    recorder.finish({"status": "ok"})
    profile = results.read_table(tmp_path, "profile")
    assert profile[["job_id", "op", "self_ms"]].values.tolist() == [[job.job_id, "conv", 1.5]]
    assert np.isnan(results.read_table(tmp_path, "summary").iloc[0]["profile_error"])
    recorder = JobRecorder(tmp_path, "run", job, 2)
    recorder.on_message({"type": "profile", "folder": str(traces[1]), "rows": [{**op, "self_us": 1500.0}]})
    with pytest.raises(UnknownColumn, match=r"profile\.csv has no column 'self_us'"):
        recorder.finish({"status": "ok"})
    assert len(results.read_table(tmp_path, "profile")) == 1


# --- The worker's pipe stands apart ---------------------------------------------------------------


def worker_imports(path) -> set[str]:
    """The names `path` imports from the worker module."""
    return {alias.name for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and node.module == "benchmarks.harness.worker" for alias in node.names}


def test_nothing_imports_the_worker_for_its_channel():
    """The worker is a process's entry point (spawn runs it by name): a module that imported it
    for its channel would close an import circle with training and the parity checks again."""
    sources = [path for folder in ("benchmarks", "frameworks", "report", "tests")
               for path in (ROOT / folder).rglob("*.py")]
    assert [str(path.relative_to(ROOT)) for path in sources if "Channel" in worker_imports(path)] == []


@pytest.mark.parametrize("first", ["benchmarks.harness.channel", "benchmarks.harness.training",
                                   "benchmarks.checks.outputs", "benchmarks.harness.worker"], ids=str)
def test_the_worker_modules_import_in_any_order_without_the_worker_or_pandas(first):
    code = (f"import sys, {first}, benchmarks.harness.training, benchmarks.checks.outputs\n"
            "print(sorted(name for name in ('benchmarks.harness.worker', 'pandas') if name in sys.modules))")
    completed = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    expected = ["benchmarks.harness.worker"] if first == "benchmarks.harness.worker" else []
    assert completed.stdout.split("\n")[0] == str(expected)
