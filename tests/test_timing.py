"""How the worker times steps, checked with the NumPy `faulty:ok` adapter (no framework import):
the compile step and warm-up stay out of the windows, every window is whole, and a timing-only
run fills its windows across epoch boundaries, however few batches an epoch holds."""

import numpy as np
import pytest

from benchmarks import run
from benchmarks.harness.jobs import Data, Timing
from benchmarks.harness import training
from benchmarks.harness.results import read_table
from tests.conftest import make_job, run_folder

pytestmark = pytest.mark.usefixtures("faulty")




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


class RecordingAdapter:
    """Logs what the trainer asks of it, and when relative to the window's clock."""

    def __init__(self):
        self.calls = []

    def place(self, images, labels):
        self.calls.append(("place", int(images[0])))
        return ("placed", images), labels

    def wait(self, placed):
        self.calls.append(("wait", int(placed[0][1][0])))

    def train_step(self, images, labels):
        placed = isinstance(images, tuple)
        self.calls.append(("step", int((images[1] if placed else images)[0]), placed))
        return 0.0

    def synchronize(self):
        self.calls.append(("sync",))

    def losses_to_numpy(self, losses):
        return np.asarray(losses)

    def compile_count(self):
        return 0


class SilentChannel:
    def send(self, *args, **fields):
        pass

    def hand_on_turn(self):
        pass


@pytest.mark.parametrize("path, expected", [
    ("step", [("clock",), ("step", 1, False), ("step", 2, False), ("step", 3, False), ("sync",), ("clock",)]),
    ("prefetch", [("place", 1), ("wait", 1), ("clock",), ("step", 1, True), ("place", 2), ("step", 2, True),
                  ("place", 3), ("step", 3, True), ("sync",), ("clock",)]),
    ("resident", [("place", 1), ("place", 2), ("place", 3), ("wait", 3), ("clock",), ("step", 1, True),
                  ("step", 2, True), ("step", 3, True), ("sync",), ("clock",)]),
])
def test_input_paths_place_batches_where_they_promise(monkeypatch, path, expected):
    """`prefetch` places each next batch after the current step is dispatched (the window's first
    before its clock starts), `resident` every batch before the clock, `step` none."""
    job = make_job("faulty", "ok", 1, timing=Timing(steps=4, warmup_steps=0, window=3), data=Data(input=path))
    adapter = RecordingAdapter()
    ticks = iter(range(1000))
    monkeypatch.setattr(training.time, "perf_counter", lambda: adapter.calls.append(("clock",)) or next(ticks))
    trainer = training.Trainer(adapter, job, SilentChannel())
    trainer.run([(np.array([index]), np.array([index])) for index in range(4)], epoch=0)
    compile_step = adapter.calls.index(("sync",)) + 2  # the first step's sync and its clock reading
    assert adapter.calls[compile_step:] == expected
    assert len(trainer.window_rows) == 1
