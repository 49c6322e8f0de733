"""How the worker times steps, checked with the NumPy `faulty:ok` adapter (no framework import):
the compile step and warm-up stay out of the windows, every window is whole, and a timing-only
run fills its windows across epoch boundaries, however few batches an epoch holds."""

import pytest

from benchmarks import run
from benchmarks.results import read_table
from frameworks import EXTRA_ENV
from tests.faulty_framework import EXTRA_FRAMEWORKS


@pytest.fixture(autouse=True)
def faulty(monkeypatch):
    monkeypatch.setenv(EXTRA_ENV, EXTRA_FRAMEWORKS)


def run_folder(out):
    (folder,) = out.iterdir()
    return folder


@pytest.mark.parametrize("train_size", [256, 64], ids=["8 batches an epoch", "2 batches an epoch"])
def test_timing_only_run_times_whole_windows_after_warmup(tmp_path, train_size):
    status = run.main(["--framework", "faulty", "--variant", "faulty:ok", "--data", "synthetic",
                       "--train-size", str(train_size), "--test-size", "64", "--batch-size", "32", "--steps", "40",
                       "--warmup", "3", "--window", "10", "--no-parity", "--out", str(tmp_path)])
    assert status == 0
    steps = read_table(run_folder(tmp_path), "steps")
    assert steps["steps"].tolist() == [10, 10, 10, 10]
    assert steps["first_step"].tolist() == [4, 14, 24, 34]  # step 0 compiles, steps 1-3 warm up
    summary = read_table(run_folder(tmp_path), "summary")
    assert summary.loc[0, "windows"] == 4 and summary.loc[0, "epochs"] == 0
    assert len(summary.loc[0, "data_digest"]) == 16  # timing-only runs prove their data order too
    assert summary.loc[0, "step_ms_median"] == pytest.approx(steps["step_ms"].median())


def test_epoch_run_times_each_epoch_in_whole_windows(tmp_path):
    status = run.main(["--framework", "faulty", "--variant", "faulty:ok", "--data", "synthetic",
                       "--train-size", "512", "--test-size", "64", "--batch-size", "32", "--epochs", "2",
                       "--warmup", "2", "--window", "4", "--no-parity", "--out", str(tmp_path)])
    assert status == 0
    steps = read_table(run_folder(tmp_path), "steps")
    # 16 steps an epoch: epoch 1 loses step 0 (compile) and 1-2 (warm-up), then 3 windows and a
    # 1-step tail; epoch 2 holds 4 whole windows.
    assert steps.groupby("epoch")["steps"].apply(list).to_dict() == {0: [4, 4, 4], 1: [4, 4, 4, 4]}
    assert len(read_table(run_folder(tmp_path), "epochs")) == 2
