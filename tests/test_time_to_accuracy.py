"""Time to accuracy (`--target-accuracy`): a job stops at the first evaluation that reaches the
target and records when; a job that never reaches it runs all its epochs and records its best.
Run with the fault-injecting stand-in framework, whose test accuracy is a fixed fraction."""

from __future__ import annotations

import subprocess

import pandas as pd
import pytest

from tests.conftest import ROOT, faulty_env, run_folder
from tests.test_faults import command, flat

pytestmark = pytest.mark.slow  # starts worker processes

SMALL = ["--framework", "faulty", "--variant", "faulty:ok", "--data", "synthetic", "--train-size", "256",
         "--test-size", "64", "--batch-size", "32", "--epochs", "3", "--no-parity"]


def reached_cell(report: str, job: str) -> str:
    """The `reached` cell of a job's row in the report's time-to-accuracy table."""
    (line,) = [line for line in report.splitlines() if line.startswith(f"| {job} ")]
    return line.split("|")[2].strip()


def run(tmp_path, target: str, *extra: str) -> tuple[pd.DataFrame, pd.DataFrame, str, str]:
    completed = subprocess.run(command(*SMALL, *extra, "--target-accuracy", target, "--out", str(tmp_path)), cwd=ROOT,
                               env=faulty_env(), capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    folder = run_folder(tmp_path)
    return (pd.read_csv(folder / "summary.csv"), pd.read_csv(folder / "epochs.csv"), flat(completed.stdout),
            (folder / "report.md").read_text())


def test_a_reached_target_stops_the_job_and_records_when(tmp_path):
    summary, epochs, stdout, report = run(tmp_path, "0.05")  # the stand-in scores 7 of 64 (10.9%)
    row = summary.iloc[0]
    assert bool(row["target_reached"]) and row["epochs_to_target"] == 1 and row["steps_to_target"] == 8
    assert len(epochs) == 1, "the job must stop at the first evaluation that reaches the target"
    assert row["train_s_to_target"] == pytest.approx(epochs["train_s"].iloc[0])
    assert row["wall_s_to_target"] == pytest.approx(epochs["train_s"].iloc[0] + epochs["eval_s"].iloc[0])
    assert "reached 5.0% in epoch 1" in stdout
    assert "## Time to 5.0% test accuracy" in report and reached_cell(report, "faulty:ok bs32 r1") == "True"
    assert (run_folder(tmp_path) / "accuracy_time.png").stat().st_size > 0


def test_a_missed_target_runs_every_epoch_and_records_the_best(tmp_path):
    summary, epochs, stdout, report = run(tmp_path, "0.5")
    row = summary.iloc[0]
    assert not bool(row["target_reached"]) and pd.isna(row["train_s_to_target"])
    assert len(epochs) == 3 and row["best_accuracy"] == pytest.approx(7 / 64)
    assert "did not reach 50.0% (best 10.9%)" in stdout
    assert reached_cell(report, "faulty:ok bs32 r1") == "False"


def test_eval_every_evaluates_between_epochs_and_stops_at_the_first_hit(tmp_path):
    summary, epochs, _, report = run(tmp_path, "0.05", "--eval-every", "3")
    row = summary.iloc[0]
    assert bool(row["target_reached"]) and row["steps_to_target"] == 3 and row["epochs_to_target"] == 0.375
    assert epochs[["epoch", "step"]].values.tolist() == [[0.375, 3]]
    assert "Evaluated every 3 training steps" in report


def test_eval_every_missing_the_target_evaluates_every_n_steps_and_after_the_last(tmp_path):
    summary, epochs, _, _ = run(tmp_path, "0.5", "--eval-every", "5")
    assert epochs["step"].tolist() == [5, 10, 15, 20, 24]  # 8 steps an epoch, 3 epochs
    assert epochs["epoch"].tolist() == pytest.approx([0.625, 1.25, 1.875, 2.5, 3])
    row = summary.iloc[0]
    assert not bool(row["target_reached"]) and row["epochs"] == 3
    assert row["epoch_s"] > 0  # the median over the whole epochs
    assert row["train_loss"] == pytest.approx(epochs["train_loss"].iloc[-1])


@pytest.mark.parametrize("step, batches, every, last, expected", [
    (0, 8, 0, False, [(0, 8, True)]),
    (0, 8, 3, False, [(0, 3, True), (3, 6, True), (6, 8, False)]),
    (8, 8, 3, True, [(0, 1, True), (1, 4, True), (4, 7, True), (7, 8, True)]),
    (0, 8, 4, True, [(0, 4, True), (4, 8, True)]),
    (0, 8, 20, False, [(0, 8, False)]),
])
def test_evaluation_segments_cut_an_epoch_where_the_test_set_is_evaluated(step, batches, every, last, expected):
    from benchmarks.harness.training import evaluation_segments

    segments = evaluation_segments(step, batches, every, last)
    assert [(piece.start, piece.stop, evaluated) for piece, evaluated in segments] == expected
