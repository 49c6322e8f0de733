"""Faults during a run, provoked with the fault-injecting `faulty` framework: a worker that
raises, exits, is killed, runs out of memory, hangs past --job-timeout or diverges; a device that
is absent; Ctrl-C and SIGKILL of the runner. Each must leave a row with its status and reason,
keep every earlier row, list the problem in the report and say so in the exit status."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from benchmarks import run
from benchmarks.harness import results
from benchmarks.harness.results import TABLES, read_table
from tests.conftest import ROOT, faulty_env, run_folder
from tests.faulty_framework import DIVERGE_STEP, EXIT_STATUS, RAISE_MESSAGE

pytestmark = pytest.mark.slow  # every test here starts worker processes

SMALL = ["--framework", "faulty", "--data", "synthetic", "--train-size", "256", "--test-size", "64",
         "--batch-size", "32", "--no-parity"]
PROBLEMS = "## Failed, skipped and diverged jobs"


# --- Helpers ------------------------------------------------------------------------------------




def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.run", *args]


def flat(text: str) -> str:
    """Console output with the line wrapping undone."""
    return " ".join(text.split())



def wait_for(condition, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def summary_rows(folder: Path) -> int:
    path = folder / "summary.csv"
    return len(path.read_text().splitlines()) - 1 if path.exists() else 0


def live_workers(run_dir: Path) -> list[int]:
    """Processes whose stdout is a log file of this run: its workers that are still alive."""
    logs, pids = str(run_dir / "logs"), []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "fd" / "1").startswith(logs):
                pids.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            continue
    return pids


def problems_section(report: str) -> str:
    assert PROBLEMS in report
    return report.split(PROBLEMS, 1)[1].split("\n## ", 1)[0]


def problem_line(report: str, job: str) -> str:
    (line,) = [line for line in problems_section(report).splitlines() if line.startswith(f"| {job} ")]
    return line


# --- Worker faults and divergence ---------------------------------------------------------------

JOB_TIMEOUT = 10  # seconds; far longer than any other job here takes, so only `hang` reaches it
FAULT_ORDER = ["ok", "raise", "exit", "kill", "oom", "nan", "inf", "hang", "slow"]  # ok first, slow after all faults
FAULTS = [
    pytest.param("raise", "error", f"RuntimeError: {RAISE_MESSAGE}", id="adapter raises"),
    pytest.param("exit", "error", f"worker exited with status {EXIT_STATUS} without a result",
                 id="worker exits hard with os._exit"),
    pytest.param("kill", "error", "worker killed by SIGKILL (out of memory?)",
                 id="worker is killed as by the OOM killer"),
    pytest.param("oom", "error", "MemoryError: Unable to allocate 2.00 PiB", id="allocation raises MemoryError"),
    pytest.param("hang", "timeout", f"stopped after --job-timeout {JOB_TIMEOUT} s", id="worker exceeds job timeout"),
    pytest.param("nan", "diverged", f"loss became nan at step {DIVERGE_STEP}", id="loss becomes nan"),
    pytest.param("inf", "diverged", f"loss became inf at step {DIVERGE_STEP}", id="loss becomes infinite"),
]


@pytest.fixture(scope="module")
def faulted_run(tmp_path_factory):
    """One run of every fault in turn, between a good job before and a good job after them."""
    out = tmp_path_factory.mktemp("faults") / "results"
    variants = ",".join(f"faulty:{variant}" for variant in FAULT_ORDER)
    completed = subprocess.run(
        command(*SMALL, "--variant", variants, "--steps", "12", "--warmup", "1", "--window", "4",
                "--job-timeout", str(JOB_TIMEOUT), "--out", str(out)),
        cwd=ROOT, env=faulty_env(), capture_output=True, text=True, timeout=300)
    folder = run_folder(out)
    return completed, folder, read_table(folder, "summary").set_index("variant")


@pytest.mark.parametrize("variant, status, reason", FAULTS)
def test_fault_is_recorded_reported_and_printed(faulted_run, variant, status, reason):
    completed, folder, summary = faulted_run
    row = summary.loc[variant]
    assert row["status"] == status
    assert row["error"].startswith(reason)
    assert f"faulty:{variant} batch 32, repeat 1: {status}: {reason}" in flat(completed.stdout)
    line = problem_line((folder / "report.md").read_text(), f"faulty:{variant}")
    assert f"| {status} " in line and reason in line
    if status == "diverged":
        assert row["diverged_step"] == DIVERGE_STEP
        assert re.search(rf"\| +{DIVERGE_STEP} +\|", line)
    else:
        assert pd.isna(row["diverged_step"])


def test_run_continues_after_faults_keeps_earlier_rows_and_exits_1(faulted_run):
    completed, folder, summary = faulted_run
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "Traceback" not in completed.stdout + completed.stderr
    # One row per job, in the order the jobs ended: they took turns, so a fault ends its job early.
    assert sorted(summary.index) == sorted(FAULT_ORDER) and len(summary) == len(FAULT_ORDER)
    assert summary.loc[["ok", "slow"], "status"].tolist() == ["ok", "ok"]
    # 14 timed-only steps, streamed across 8-batch epochs: compile step 0, warm-up step 1, windows
    # 2-5, 6-9 and 10-13; the diverging jobs stop in window 6-9, which holds step 7.
    assert (summary.loc[["ok", "slow"], "windows"] == 3).all()
    steps = read_table(folder, "steps")
    assert steps.groupby("variant").size().to_dict() == {"ok": 3, "slow": 3, "nan": 1, "inf": 1}
    report = (folder / "report.md").read_text()
    ranked = report.split("## Speed, ranked by throughput", 1)[1].split("\n## ", 1)[0]
    assert "| faulty:ok " in ranked and "| faulty:slow " in ranked
    assert live_workers(folder) == []  # the hung worker was stopped, not left behind


# --- Device -------------------------------------------------------------------------------------


def test_cuda_without_gpu_skips_every_job_reports_them_and_exits_3(faulty, capsys, tmp_path):
    status = run.main([*SMALL, "--variant", "faulty:nan,faulty:ok", "--device", "cuda", "--steps", "4",
                       "--out", str(tmp_path)])
    output = flat(capsys.readouterr().out)
    assert status == 3
    assert output.count("faulty sees no CUDA device") == 1  # one message per framework
    assert "faulty:ok: skipped: faulty sees no CUDA device (it never does)" in output  # probed with its last variant
    assert "error: no framework can run on cuda; nothing was run" in output
    folder = run_folder(tmp_path)
    summary = read_table(folder, "summary")
    assert summary["status"].tolist() == ["skipped", "skipped"]
    assert set(summary["error"]) == {"faulty sees no CUDA device (it never does)"}
    report = (folder / "report.md").read_text()
    for job in ("faulty:nan", "faulty:ok"):
        assert "| skipped " in problem_line(report, job)


@pytest.mark.skipif(Path("/dev/nvidiactl").exists(), reason="this machine has an NVIDIA GPU")
def test_pytorch_on_cuda_without_gpu_says_so_once_and_exits_3(capsys, tmp_path):
    status = run.main(["--framework", "pytorch", "--device", "cuda", "--data", "synthetic", "--steps", "4",
                       "--no-parity", "--out", str(tmp_path)])
    output = flat(capsys.readouterr().out)
    assert status == 3
    assert len(re.findall(r"pytorch:eager: skipped: PyTorch \S+ sees no CUDA device", output)) == 1
    assert output.count("sees no CUDA device") == 1
    assert "error: no framework can run on cuda; nothing was run" in output
    summary = read_table(run_folder(tmp_path), "summary")
    assert summary[["framework", "status"]].values.tolist() == [["pytorch", "skipped"]]
    assert "| skipped " in problem_line((run_folder(tmp_path) / "report.md").read_text(), "pytorch:eager")


# --- Interruption and resuming ------------------------------------------------------------------

# Three jobs of 32 steps (8 per epoch), 1.6 s of training each, run one after the other (the
# repeats of one job would run together, taking turns).
SLOW_JOBS = [*SMALL, "--variant", "faulty:slow", "--batch-size", "32,31,30", "--epochs", "4", "--warmup", "0",
             "--window", "4"]
SLOW_JOB_IDS = [f"lenet-faulty-slow-tuned-bs{batch_size}-r1" for batch_size in (32, 31, 30)]


def interrupt(tmp_path: Path, args: list[str], ready) -> tuple[int, Path, str]:
    """Start the runner with `args`, press Ctrl-C once `ready(run folder)` has returned (SIGINT to
    the parent only: workers run in their own session), and return its exit status, run folder and
    console output."""
    out = tmp_path / "results"
    with open(tmp_path / "console.txt", "w") as console:
        parent = subprocess.Popen(command(*args, "--out", str(out)), cwd=ROOT, env=faulty_env(),
                                  stdout=console, stderr=subprocess.STDOUT)
        try:
            folder = wait_for(lambda: out.exists() and any(out.iterdir()) and run_folder(out), what="the run folder")
            ready(folder)
            parent.send_signal(signal.SIGINT)
            status = parent.wait(timeout=60)
        finally:
            parent.kill()
    return status, folder, flat((tmp_path / "console.txt").read_text())


def test_ctrl_c_stops_the_worker_keeps_rows_and_resume_runs_the_rest(tmp_path):
    def second_job_running(folder):
        wait_for(lambda: summary_rows(folder) == 1, what="the first job's row")
        wait_for(lambda: (folder / "logs" / f"{SLOW_JOB_IDS[1]}.log").exists() and live_workers(folder),
                 what="the second job's worker")

    status, folder, output = interrupt(tmp_path, SLOW_JOBS, second_job_running)
    assert status == 130, output
    assert "Traceback" not in output
    assert (f"interrupted: finished jobs are kept in {folder}; "
            f"finish with: python -m benchmarks.run --resume {folder}") in output
    assert f"report of the jobs that finished: {folder / 'report.md'}" in output
    assert live_workers(folder) == []  # the current worker was stopped with the parent
    summary = read_table(folder, "summary")
    assert summary[["job_id", "status", "attempt"]].values.tolist() == [
        [SLOW_JOB_IDS[0], "ok", 1], [SLOW_JOB_IDS[1], "interrupted", 1]]
    first_job_steps = read_table(folder, "steps").query("batch_size == 32")
    assert len(first_job_steps) == 7  # 4 epochs of 8 steps in windows of 4, less epoch 1's compile step and tail
    line = problem_line((folder / "report.md").read_text(), "faulty:slow")
    assert "| interrupted " in line and "stopped by Ctrl-C" in line

    resumed = subprocess.run(command("--resume", str(folder)), cwd=ROOT, env=faulty_env(),
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"run folder: {folder} (2 of 3 jobs to run)" in flat(resumed.stdout)
    summary = read_table(folder, "summary")
    assert summary[["job_id", "status", "attempt"]].values.tolist() == [
        [SLOW_JOB_IDS[0], "ok", 1], [SLOW_JOB_IDS[1], "interrupted", 1],
        [SLOW_JOB_IDS[1], "ok", 2], [SLOW_JOB_IDS[2], "ok", 2]]
    steps = read_table(folder, "steps")
    assert steps.query("batch_size == 32").equals(first_job_steps)  # the finished job was not run again
    assert PROBLEMS not in (folder / "report.md").read_text()


# Two repeats of one job (16 steps, 4 windows of 4 each, 0.8 s of training), which take turns
# window by window, so they end together: an interrupt catches both part-way.
TURNS = [*SMALL, "--variant", "faulty:slow", "--repeats", "2", "--epochs", "2", "--warmup", "0", "--window", "4"]


def window_rows(folder: Path) -> int:
    path = folder / "steps.csv"
    return len(path.read_text().splitlines()) - 1 if path.exists() else 0


def test_ctrl_c_in_a_comparison_keeps_its_windows_and_resume_reruns_the_interrupted_jobs(tmp_path):
    status, folder, output = interrupt(tmp_path, TURNS,
                                       lambda folder: wait_for(lambda: window_rows(folder) >= 2, what="two windows"))
    assert status == 130, output
    assert "Traceback" not in output
    steps = read_table(folder, "steps")
    assert len(steps) >= 2 and set(steps["attempt"]) == {1}
    summary = read_table(folder, "summary")
    assert summary["status"].tolist() == ["interrupted", "interrupted"]  # neither job had ended
    assert summary.set_index("repeat")["windows"].to_dict() == steps.groupby("repeat").size().reindex(
        [1, 2], fill_value=0).to_dict()  # each row counts the windows its job measured
    report = (folder / "report.md").read_text()
    assert "No job finished its timed steps." in report  # partial jobs are never ranked
    lines = [line for line in problems_section(report).splitlines() if line.startswith("| faulty:slow ")]
    assert len(lines) == 2 and all("| interrupted " in line and "stopped by Ctrl-C" in line for line in lines)
    kept = steps.copy()

    resumed = subprocess.run(command("--resume", str(folder)), cwd=ROOT, env=faulty_env(),
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (f"resuming: 0 jobs finished, 2 interrupted jobs rerun from the start (their earlier {len(kept)} "
            f"windows are kept as attempt 1)") in flat(resumed.stdout)
    summary = read_table(folder, "summary")
    assert sorted(summary[["repeat", "status", "attempt"]].values.tolist()[2:]) == [[1, "ok", 2], [2, "ok", 2]]
    steps = read_table(folder, "steps")
    assert steps[steps["attempt"] == 1].reset_index(drop=True).equals(kept)  # the earlier windows are kept
    assert steps[steps["attempt"] == 2].groupby("repeat").size().tolist() == [3, 3]  # 16 steps less compile and tail
    report = (folder / "report.md").read_text()
    assert PROBLEMS not in report and "| faulty:slow " in report.split("## Speed, ranked by throughput", 1)[1]


def test_resume_reruns_only_jobs_without_an_ok_row(faulty, capsys, tmp_path):
    status = run.main([*SMALL, "--variant", "faulty:ok,faulty:raise", "--steps", "6", "--warmup", "1",
                       "--window", "2", "--out", str(tmp_path)])
    assert status == 1
    folder = run_folder(tmp_path)
    before = (folder / "summary.csv").read_text()
    capsys.readouterr()

    status = run.main(["--resume", str(folder)])
    output = flat(capsys.readouterr().out)
    assert status == 1  # the rerun failed again
    assert f"run folder: {folder} (1 of 2 jobs to run)" in output
    assert f"faulty:raise batch 32, repeat 1: error: RuntimeError: {RAISE_MESSAGE}" in output
    assert "faulty:ok batch 32" not in output
    after = (folder / "summary.csv").read_text()
    assert after.startswith(before)  # earlier rows untouched, the new attempt appended
    summary = read_table(folder, "summary")
    assert summary.sort_values(["attempt", "variant"])[["variant", "status", "attempt"]].values.tolist() == [
        ["ok", "ok", 1], ["raise", "error", 1], ["raise", "error", 2]]


# --- Output safety ------------------------------------------------------------------------------


def test_killed_parent_leaves_well_formed_csv_files_and_resume_finishes(tmp_path):
    out = tmp_path / "results"
    parent = subprocess.Popen(command(*SLOW_JOBS, "--out", str(out)), cwd=ROOT, env=faulty_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        folder = wait_for(lambda: out.exists() and any(out.iterdir()) and run_folder(out), what="the run folder")
        wait_for(lambda: summary_rows(folder) >= 1, what="the first job's row")
        parent.send_signal(signal.SIGKILL)  # no handler runs: whatever is on disk is what is left
        assert parent.wait(timeout=30) == -signal.SIGKILL
    finally:
        parent.kill()
    for table, columns in TABLES.items():
        if table == "profile":  # written only with --profile
            continue
        frame = pd.read_csv(folder / f"{table}.csv")
        assert list(frame.columns) == columns
        assert frame["job_id"].isin(SLOW_JOB_IDS).all()
    summary = pd.read_csv(folder / "summary.csv")
    assert summary.loc[0, ["job_id", "status"]].tolist() == [SLOW_JOB_IDS[0], "ok"]
    assert set(summary["status"]) == {"ok"}  # rows are whole jobs: none half-written
    # An orphaned worker stops at its next message to the dead parent (broken pipe).
    wait_for(lambda: not live_workers(folder), timeout=30, what="the orphaned worker to stop")
    streamed = pd.read_csv(folder / "steps.csv")
    killed = set(streamed["job_id"]) - set(summary["job_id"])  # windows of the job the kill cut short

    resumed = subprocess.run(command("--resume", str(folder)), cwd=ROOT, env=faulty_env(),
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    summary = pd.read_csv(folder / "summary.csv")
    final = summary.drop_duplicates("job_id", keep="last")
    assert sorted(final["job_id"]) == sorted(SLOW_JOB_IDS)
    assert set(final["status"]) == {"ok"} and set(final["attempt"]) <= {1, 2}
    # The cut-short job's windows are kept under an "interrupted" row of their attempt, counted.
    cut = summary[summary["status"] == "interrupted"]
    assert set(cut["job_id"]) == killed and set(cut["attempt"]) <= {1}
    assert cut.set_index("job_id")["windows"].to_dict() == streamed[streamed["job_id"].isin(killed)].groupby(
        "job_id").size().to_dict()
    assert pd.read_csv(folder / "steps.csv").iloc[:len(streamed)].equals(streamed)


def test_a_second_run_in_the_same_second_never_touches_the_first(faulty, capsys, tmp_path, monkeypatch):
    frozen = time.gmtime(1_700_000_000)
    monkeypatch.setattr(results.time, "gmtime", lambda *args: frozen)  # both runs get the same run id
    arguments = [*SMALL, "--variant", "faulty:ok", "--steps", "4", "--warmup", "0", "--window", "2",
                 "--out", str(tmp_path)]
    assert run.main(arguments) == 0
    first = tmp_path / "20231114-221320"
    snapshot = {path: path.read_bytes() for path in first.rglob("*") if path.is_file()}
    assert first / "summary.csv" in snapshot

    assert run.main(arguments) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["20231114-221320", "20231114-221320-2"]
    assert {path: path.read_bytes() for path in first.rglob("*") if path.is_file()} == snapshot
    assert summary_rows(tmp_path / "20231114-221320-2") == 1
