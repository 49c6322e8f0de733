"""Contention: what other processes take of the worker's cores is measured per timed window, a job
whose median rests on busy windows is marked, the console warns, the report does not rank it,
and --require-quiet refuses to start on a busy machine. Run with the NumPy `faulty:slow` stand-in,
whose steps sleep, so that a CPU hog gets every core it asks for."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import psutil
import pytest

from benchmarks import run
from benchmarks.harness.contention import BUSY_THRESHOLD, CoreMonitor, Sample, machine_check
from benchmarks.harness.training import Trainer

CORES = len(os.sched_getaffinity(0))
SHORT = ["--framework", "faulty", "--variant", "faulty:slow", "--data", "synthetic", "--train-size", "256",
         "--batch-size", "32", "--steps", "20", "--warmup", "0", "--window", "5", "--no-parity"]
HOG = "import time\nend = time.monotonic() + 120\nwhile time.monotonic() < end:\n    pass\n"

pytestmark = pytest.mark.usefixtures("faulty")



@pytest.fixture
def hog():
    """One busy-looping process per core, bounded to two minutes, stopped when the test ends."""
    processes = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(CORES)]
    yield processes
    for process in processes:
        process.kill()
        process.wait()


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


@pytest.mark.parametrize("shares, busy", [([0.0, 0.01, 0.02, 0.5], False), ([0.0, 0.01, 0.5, 0.6], True),
                                          ([0.5, 0.6, 0.9, 1.0], True), ([None, None], None)])
def test_a_job_is_busy_when_half_its_windows_are(shares, busy):
    trainer = Trainer.__new__(Trainer)
    trainer.window_rows = [{"others_cpu": share} for share in shares]
    summary = trainer.contention_summary()
    assert summary["busy"] is busy
    if busy is not None:
        assert summary["busy_windows"] == sum(share > BUSY_THRESHOLD for share in shares)


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
    trainer.window_rows = [{"window": 0, **monitor.between(None, None)}]
    assert trainer.contention_summary() == {"contention": None, "busy_windows": None, "busy": None}
