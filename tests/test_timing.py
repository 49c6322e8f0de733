"""How the worker times steps, checked with the NumPy `faulty:ok` adapter (no framework import):
the compile step and warm-up stay out of the windows, every window is whole, and a timing-only
run fills its windows across epoch boundaries, however few batches an epoch holds."""

import numpy as np
import pytest

from benchmarks import run
from benchmarks.harness import training
from benchmarks.harness.jobs import Data, Timing
from benchmarks.harness.results import read_table
from tests.conftest import make_job, run_folder
from tests.faulty_framework import FaultyAdapter

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

    def reset_peak_device_memory(self):
        pass  # no device: the trainer's call at the end of the warm-up is not what this adapter records


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


SEARCH_BYTES, STEP_BYTES, EVAL_BYTES = 1000, 100, 500


class MeteredAdapter(FaultyAdapter):
    """faulty:ok with a GPU allocator's peak counter, logging each step and each reset and read
    of the peak: the compile step's algorithm search takes SEARCH_BYTES of scratch, every later
    step STEP_BYTES, and an evaluation (a search for its own shapes) EVAL_BYTES."""

    made: list = []  # every one built, the latest last

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.peak, self.log = 0, []
        MeteredAdapter.made.append(self)

    def train_step(self, images, labels):
        self.peak = max(self.peak, SEARCH_BYTES if self.steps == 0 else STEP_BYTES)
        self.log.append("step")
        return super().train_step(images, labels)

    def synchronize(self):
        self.log.append("sync")

    def evaluate(self, images, labels):
        self.peak = max(self.peak, EVAL_BYTES)
        self.log.append("evaluate")
        return super().evaluate(images, labels)

    def reset_peak_device_memory(self):
        self.peak = 0  # nothing stays allocated between steps here
        self.log.append("reset")

    def peak_device_memory(self):
        self.log.append("read")
        return self.peak


class WaitlessChannel(SilentChannel):
    waited_s = 0.0


@pytest.mark.parametrize("warmup", [0, 2], ids=["no warm-up", "2 warm-up steps"])
def test_the_device_peak_starts_after_the_warm_up_and_leaves_out_evaluations(monkeypatch, warmup):
    """The peak is reset once the last warm-up step has synchronised, before any timed step, so
    the compile step's algorithm search is not in it; it is read before each evaluation and reset
    after it, and read once more after the last timed window: the summary's figure is training's."""
    monkeypatch.setattr(training, "load_adapter", lambda name: MeteredAdapter)
    job = make_job(timing=Timing(epochs=2, warmup_steps=warmup, window=2),
                   data=Data(train_size=256, test_size=64, input="step"))
    result = training.run_benchmark(job, WaitlessChannel())
    log = MeteredAdapter.made[-1].log
    assert result["peak_device_mb"] * 2**20 == STEP_BYTES, "neither the search nor an evaluation"
    first_reset = log.index("reset")
    assert log[:first_reset].count("step") == 1 + warmup, "after the compile step and the warm-up"
    assert log[first_reset - 2:first_reset + 2] == ["step", "sync", "reset", "step"], "synchronised, before timing"
    evaluations = [index for index, call in enumerate(log) if call == "evaluate"]
    assert len(evaluations) == 2, "one an epoch"
    for index in evaluations:
        assert log[index - 1] == "read" and log[index + 1] == "reset"
    assert log[-1] == "read" and log[-2] == "reset", "read once training, the last evaluation included, is over"
