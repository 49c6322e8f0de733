"""Contention: what other processes take of the worker's cores is measured per timed window, a job
whose median rests on busy windows is marked, the console warns, the report does not rank it,
and --require-quiet refuses to start on a busy machine. Run with the NumPy `faulty:slow` stand-in,
whose steps sleep, so that a CPU hog gets every core it asks for."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pandas as pd
import psutil
import pytest

from benchmarks import cli, run
from benchmarks.harness.contention import BUSY_THRESHOLD, SUM_BUSY_SHARE, Contention, CoreMonitor, Sample, machine_check
from benchmarks.harness.rows import Window
from benchmarks.harness.training import TimeToAccuracy, Trainer, median_epoch_busy_share
from tests.conftest import ROOT, faulty_env, run_folder
from tests.test_faults import flat, wait_for, window_rows

CORES = len(os.sched_getaffinity(0))
SHORT = ["--framework", "faulty", "--variant", "faulty:slow", "--data", "synthetic", "--train-size", "256",
         "--batch-size", "32", "--steps", "20", "--warmup", "0", "--window", "5", "--no-parity"]
HOG = "import time\nend = time.monotonic() + 120\nwhile time.monotonic() < end:\n    pass\n"

pytestmark = pytest.mark.usefixtures("faulty")



def start_hog() -> list[subprocess.Popen]:
    """One busy-looping process per core, each bounded to two minutes."""
    return [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(CORES)]


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.kill()
        process.wait()


@pytest.fixture
def hog():
    """A CPU hog (`start_hog`) for the whole test, stopped when it ends."""
    processes = start_hog()
    yield processes
    stop(processes)


def run_short(tmp_path, capsys, *extra: str) -> tuple[int, str, pd.DataFrame | None, str]:
    status = run.main([*SHORT, "--out", str(tmp_path), *extra])
    output = " ".join(capsys.readouterr().out.split())
    folders = list(tmp_path.iterdir())
    if not folders:
        return status, output, None, ""
    (folder,) = folders
    return status, output, pd.read_csv(folder / "summary.csv"), (folder / "report.md").read_text()


# --- Measurement ---------------------------------------------------------------------------------


def test_others_share_is_the_cores_busy_time_less_the_process_own_over_capacity():
    monitor = CoreMonitor()
    if monitor.cores is None:
        pytest.skip("no per-core CPU times on this platform")
    cores = len(monitor.cores)
    start, end = Sample(10.0, 100.0, 1.0, 5.0), Sample(12.0, 100.0 + 1.5 * cores, 1.0 + 0.2 * cores, 5.0 + 0.5)
    shares = monitor.between(start, end)
    assert shares["others_cpu"] == pytest.approx((1.5 * cores - 0.5) / (2.0 * cores))
    assert shares["steal"] == pytest.approx(0.1)
    assert monitor.between(None, end) == {"others_cpu": None, "steal": None, "load": None}


SPIN = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass\n"


def test_the_job_own_time_counts_its_child_processes_running_or_ended():
    """A native input pipeline's worker processes are the job's, not other processes: the
    monitor's own time takes in a child while it runs and after it ended."""
    monitor = CoreMonitor(children=True)  # as a worker watches its windows
    if monitor.cores is None:
        pytest.skip("no per-core CPU times on this platform")
    start = monitor.sample().own
    subprocess.run([sys.executable, "-c", SPIN.format(seconds=0.6)], check=True)  # ended and waited for
    ended = monitor.sample().own
    assert ended - start >= 0.6
    child = subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=30)])
    try:
        deadline = time.monotonic() + 20
        while psutil.Process(child.pid).cpu_times().user < 0.6 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert monitor.sample().own - ended >= 0.6  # still running
    finally:
        child.kill()
        child.wait()


def window(**shares) -> Window:
    """A timed window of 5 steps of 10 ms, with `shares` of the cores' time."""
    return Window(window=0, epoch=0, first_step=1, steps=5, seconds=0.05, step_ms=10.0, **shares)


@pytest.mark.parametrize("shares, busy", [([0.0, 0.01, 0.02, 0.5], False), ([0.0, 0.01, 0.5, 0.6], True),
                                          ([0.5, 0.6, 0.9, 1.0], True), ([None, None], None)])
def test_a_job_is_busy_when_half_its_windows_are(shares, busy):
    trainer = Trainer.__new__(Trainer)
    trainer.window_rows = [window(others_cpu=share, steal=0.0, load=0.0) for share in shares]
    summary = trainer.contention_summary()
    assert summary.busy is busy
    if busy is not None:
        assert summary.busy_windows == sum(share > BUSY_THRESHOLD for share in shares)


def test_machine_check_names_the_busiest_process(hog):
    check = machine_check()
    assert check["others_cpu"] > 0.5
    assert {row["pid"] for row in check["top"]} & {process.pid for process in hog}


# --- The runner under a hog and without --------------------------------------------------------


@pytest.mark.slow
def test_a_run_under_a_cpu_hog_is_flagged_warned_about_and_not_ranked(tmp_path, capsys, hog):
    status, output, summary, report = run_short(tmp_path, capsys)
    assert status == 0
    row = summary.iloc[0]
    assert bool(row["busy"]) and row["contention"] > 0.5 and row["busy_windows"] >= 2, row
    assert "WARNING: the machine is busy" in output
    assert "WARNING: 1 job(s) measured on a busy machine" in output
    assert "measured on a busy machine (other processes took" in output
    assert "| faulty:slow (busy) |" in report and "were measured on a busy machine" in report
    assert "- Machine check before the run: **busy**" in report
    steps = pd.read_csv(next(tmp_path.iterdir()) / "steps.csv")
    assert (steps["others_cpu"] > BUSY_THRESHOLD).sum() >= 2


@pytest.mark.slow
def test_require_quiet_refuses_to_start_on_a_busy_machine(tmp_path, capsys, hog):
    status, output, summary, _ = run_short(tmp_path, capsys, "--require-quiet")
    assert status == 4 and summary is None
    assert "error: --require-quiet: not starting on a busy machine" in output


@pytest.mark.slow
def test_the_same_run_on_an_idle_machine_is_not_flagged(tmp_path, capsys):
    before = machine_check()["others_cpu"]
    if before is not None and before > BUSY_THRESHOLD:
        pytest.skip(f"the machine is not idle (other processes use {before:.0%} of its cores)")
    status, output, summary, report = run_short(tmp_path, capsys, "--require-quiet")
    assert status == 0, output
    row = summary.iloc[0]
    assert not bool(row["busy"]) and row["contention"] < BUSY_THRESHOLD, row
    assert "busy" not in output.replace("--require-quiet", "")
    assert "(busy)" not in report and "- Machine check before the run: quiet" in report


# --- Sums of times -------------------------------------------------------------------------------


def test_a_sum_records_the_share_of_its_time_in_busy_windows():
    race = TimeToAccuracy(0.5)
    assert not race.record(1, 8, train_s=10.0, eval_s=1.0, accuracy=0.3, busy_train_s=0.0, busy_eval_s=0.0)
    assert race.record(2, 16, train_s=10.0, eval_s=1.0, accuracy=0.6, busy_train_s=2.0, busy_eval_s=0.2)
    summary = race.summary()
    assert summary.train_s_to_target == 20.0 and summary.train_busy_share_to_target == pytest.approx(0.1)
    assert summary.wall_busy_share_to_target == pytest.approx(2.2 / 22.0)
    assert summary.train_busy_share_to_target > SUM_BUSY_SHARE  # flagged: 10% of the sum was busy


@pytest.mark.parametrize("epochs, share", [
    ([(10.0, 0.0)], 0.0),
    ([(10.0, 0.0), (30.0, 20.0), (11.0, 0.0)], 0.0),  # the busy epoch is not the median one
    ([(10.0, 0.0), (30.0, 20.0), (11.0, 1.1)], 0.1),  # the median epoch (11 s) was 10% busy
    ([(10.0, 1.0), (12.0, 0.0), (30.0, 3.0), (9.0, 0.0)], 0.1),  # even count: the larger of the middle two's
])
def test_a_median_epoch_time_is_as_busy_as_the_epochs_at_its_middle(epochs, share):
    assert median_epoch_busy_share(epochs) == pytest.approx(share)


def test_a_busy_peak_is_measured_again_and_flagged_when_still_busy(tmp_path, capsys, monkeypatch):
    """Without a hog: the worker's answers stand in, first busy, then as `second` says."""
    plan = {"selection": {"device": "cpu", "threads": 1, "precision": "fp32"}}
    for second_busy in (False, True):
        answers = iter([{"status": "ok", "peak_gflops": 30.0, "peak_how": "matmul", "others_cpu": 0.6, "busy": True},
                        {"status": "ok", "peak_gflops": 160.0 if not second_busy else 31.0, "peak_how": "matmul",
                         "others_cpu": 0.5 if second_busy else 0.01, "busy": second_busy}])
        monkeypatch.setattr(run, "run_worker", lambda *args: next(answers))
        folder = tmp_path / str(second_busy)
        (folder / "logs").mkdir(parents=True)
        run.measure_peak(folder, plan, cli.console())
        env = json.loads((folder / "env.json").read_text())
        output = " ".join(capsys.readouterr().out.split())
        assert "other processes took 60% of the cores: measuring it again" in output
        assert env["peak_busy"] is second_busy and env["peak_gflops"] == (31.0 if second_busy else 160.0)
        assert ("WARNING: the machine's peak was measured twice" in output) is second_busy


@pytest.mark.slow
def test_a_peak_measured_under_a_cpu_hog_is_flagged(tmp_path, capsys, hog):
    (tmp_path / "logs").mkdir()
    run.measure_peak(tmp_path, {"selection": {"device": "cpu", "threads": CORES, "precision": "fp32"}}, cli.console())
    env = json.loads((tmp_path / "env.json").read_text())
    output = " ".join(capsys.readouterr().out.split())
    assert "measuring it again" in output
    assert env["peak_busy"] is True and env["peak_others_cpu"] > BUSY_THRESHOLD
    assert "WARNING: the machine's peak was measured twice" in output


@pytest.mark.slow
def test_a_hog_during_a_time_to_accuracy_run_flags_the_time_and_it_is_not_ranked(tmp_path):
    """The hog starts once the first window is measured (windows are appended as they are), so
    the time to target is part quiet, part busy."""
    out = tmp_path / "results"
    arguments = ["--framework", "faulty", "--variant", "faulty:slow", "--data", "synthetic", "--train-size", "1024",
                 "--test-size", "64", "--batch-size", "32", "--epochs", "1", "--warmup", "0", "--window", "4",
                 "--target-accuracy", "0.05", "--no-parity", "--out", str(out)]  # 32 steps of 50 ms, then the target
    processes = []
    with open(tmp_path / "console.txt", "w") as console:
        parent = subprocess.Popen([sys.executable, "-m", "benchmarks.run", *arguments], cwd=ROOT, env=faulty_env(),
                                  stdout=console, stderr=subprocess.STDOUT)
        try:
            folder = wait_for(lambda: out.exists() and any(out.iterdir()) and run_folder(out), what="the run folder")
            wait_for(lambda: window_rows(folder) >= 1, what="the first window")
            processes = start_hog()
            status = parent.wait(timeout=120)
        finally:
            parent.kill()
            stop(processes)
    output = flat((tmp_path / "console.txt").read_text())
    assert status == 0, output
    row = pd.read_csv(folder / "summary.csv").iloc[0]
    assert bool(row["target_reached"]) and row["train_busy_share_to_target"] > SUM_BUSY_SHARE, row
    epochs = pd.read_csv(folder / "epochs.csv")
    assert epochs["train_busy_share"].iloc[0] == pytest.approx(row["train_busy_share_to_target"])
    assert "WARNING: 1 job(s) have a time (an epoch, or to the target) of which more than 5% fell" in output
    report = (folder / "report.md").read_text()
    assert re.search(r"^\| faulty:slow bs32 r1 \(busy\) \| +True \|", report, re.MULTILINE), report
    assert "time(s) to target marked (busy) rest on contention" in report
    assert "**not ranked, measured on a busy machine**: faulty:slow" in report  # the finding


def test_without_per_core_times_contention_is_not_measured_rather_than_guessed(monkeypatch):
    """macOS has no CPU affinity: every value is None, the job is neither busy nor clean."""
    def no_affinity(self):
        raise AttributeError("cpu_affinity")

    monkeypatch.setattr(psutil.Process, "cpu_affinity", no_affinity)
    monitor = CoreMonitor()
    assert monitor.cores is None and monitor.sample() is None
    assert monitor.between(monitor.sample(), monitor.sample()) == {"others_cpu": None, "steal": None, "load": None}
    assert machine_check(seconds=0.01)["others_cpu"] is None
    trainer = Trainer.__new__(Trainer)
    trainer.window_rows = [window(**monitor.between(None, None))]
    assert trainer.contention_summary() == Contention(contention=None, busy_windows=None, busy=None)
