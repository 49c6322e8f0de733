"""The real runner end to end on all installed frameworks: the four tables and the report are
written, the frameworks were fed the same bytes (augmented or not) and learned the same thing,
and the report renders again from the CSV files alone."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.harness import data as datasets, recording
from benchmarks.harness.environment import CPU_FEATURES
from benchmarks.harness.recording import JobRecorder
from benchmarks.harness.results import SCHEMA, append_rows, read_table
from frameworks.tuning import DEFAULT_PROFILE
from report.render import write_report
from tests.conftest import AUGMENTED_BATCH, AUGMENTED_TRAIN_SIZE, ROOT, installed, make_job

TEST_SIZE = 1000


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One short run of the real runner, as a user types it (synthetic data, 1 epoch, batch 32)."""
    if len(installed()) < 2:
        pytest.skip(f"needs two installed frameworks, found {installed()}")
    out = tmp_path_factory.mktemp("results")
    command = [sys.executable, "-m", "benchmarks.run", "--framework", ",".join(installed()), "--data", "synthetic",
               "--train-size", "1024", "--test-size", str(TEST_SIZE), "--batch-size", "32", "--epochs", "1",
               "--window", "5", "--out", str(out)]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    (run_dir,) = out.iterdir()
    return run_dir, completed.stdout


@pytest.mark.slow
def test_runner_writes_the_four_tables_env_and_report(run):
    run_dir, stdout = run
    for name in ("summary.csv", "steps.csv", "epochs.csv", "env.json", "report.md", "parity.csv"):
        assert (run_dir / name).is_file(), name
    assert f"report: {run_dir / 'report.md'}" in stdout.replace("\n", "")
    summary = pd.read_csv(run_dir / "summary.csv")
    assert summary["framework"].tolist() == installed()
    assert (summary["status"] == "ok").all()
    assert (summary["data"] == "synthetic").all()
    assert (summary["windows"] > 0).all() and (summary["images_per_s"] > 0).all()
    assert (summary["compile_s"] > 0).all() and (summary["recompiles"] == 0).all()
    steps = pd.read_csv(run_dir / "steps.csv")
    assert set(steps["job_id"]) == set(summary["job_id"])
    assert (steps["steps"] == 5).all()


@pytest.mark.slow
def test_every_framework_was_fed_the_same_bytes(run):
    summary = pd.read_csv(run[0] / "summary.csv")
    assert summary["data_digest"].notna().all()
    assert summary["data_digest"].nunique() == 1, summary[["framework", "data_digest"]]


@pytest.mark.slow
def test_per_epoch_losses_and_accuracies_agree_across_frameworks(run):
    epochs = pd.read_csv(run[0] / "epochs.csv").set_index("framework")
    reference = epochs.iloc[0]
    for framework, row in epochs.iloc[1:].iterrows():
        for column in ("train_loss", "test_loss"):
            error = abs(row[column] - reference[column]) / abs(reference[column])
            assert error <= 1e-3, f"{epochs.index[0]} vs {framework}: {column} differs by {error:.2e}"
        examples = abs(row["test_accuracy"] - reference["test_accuracy"]) * TEST_SIZE
        assert examples <= TEST_SIZE / 1000, f"{epochs.index[0]} vs {framework}: {examples:.0f} test examples differ"


@pytest.mark.slow
def test_synthetic_data_is_learned_beyond_chance(run):
    summary = pd.read_csv(run[0] / "summary.csv")
    assert (summary["test_accuracy"] > 0.15).all(), summary[["framework", "test_accuracy"]]


@pytest.mark.slow
def test_report_states_the_data_parity_and_ranks_every_framework(run):
    report = (run[0] / "report.md").read_text()
    assert "**SYNTHETIC**" in report
    assert "**Passed**" in report
    ranking = report.split("## Speed, ranked by throughput")[1].split("##")[0]
    for framework in installed():
        assert f"| {framework}:" in ranking


@pytest.mark.slow
def test_report_renders_from_the_csv_files_and_predictions_alone(run, tmp_path):
    run_dir, _ = run
    copy = tmp_path / run_dir.name
    copy.mkdir()
    for name in ("summary.csv", "steps.csv", "epochs.csv", "parity.csv", "env.json"):
        shutil.copy(run_dir / name, copy / name)
    shutil.copytree(run_dir / "predictions", copy / "predictions")  # the paired accuracy tests read them
    completed = subprocess.run([sys.executable, "-m", "report", str(copy)], cwd=ROOT, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    assert (copy / "report.md").read_text() == (run_dir / "report.md").read_text()
    assert (copy / "speed.png").stat().st_size > 0


@pytest.mark.slow
def test_the_machine_peak_is_measured_once_and_every_row_gets_its_share(run):
    run_dir, stdout = run
    env = json.loads((run_dir / "env.json").read_text())
    assert env["peak_gflops"] > 1.0 and "matmul" in env["peak_how"]
    assert "machine peak: " in stdout
    report = (run_dir / "report.md").read_text()
    assert "The machine's measured peak is" in report
    header = next(line for line in report.splitlines() if line.startswith("| job ") and "images_per_s" in line)
    assert "gflops" in header and "of_peak" in header, "the ranking shows each row's share of the peak"
    assert "](speed.png)" in report
    assert (run_dir / "speed.png").stat().st_size > 0


@pytest.mark.slow
def test_env_records_the_cpu_instruction_sets_the_kernels_depend_on(run):
    run_dir, _ = run
    env = json.loads((run_dir / "env.json").read_text())
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        assert env["cpu_features"] is None
        return
    flags = set(next(line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")).split())
    assert env["cpu_features"] == [feature for feature in CPU_FEATURES if feature in flags]
    machine = next(line for line in (run_dir / "report.md").read_text().splitlines() if line.startswith("- CPU:"))
    assert ("AVX2" in machine) == ("avx2" in flags) and ("AVX512F" in machine) == ("avx512f" in flags)


@pytest.mark.slow
def test_env_lists_every_installed_distribution(run):
    env = json.loads((run[0] / "env.json").read_text())
    listed = subprocess.run([sys.executable, "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
                            capture_output=True, text=True, check=True).stdout
    assert env["distributions"] == {package["name"]: package["version"] for package in json.loads(listed)}


def _cpu_build(framework: str) -> dict:
    """What a framework's build in a CPU run's env.json must say, as package metadata knows it: the
    CUDA-only readings absent, not an error."""
    return {"pytorch": {"version": importlib.metadata.version("torch"), "nccl": None, "cuda_available": False,
                        "gpus": []},
            "tensorflow": {"version": importlib.metadata.version("tensorflow"),
                           "keras": importlib.metadata.version("keras"), "gpus": []},
            "jax": {"version": importlib.metadata.version("jax"), "jaxlib": importlib.metadata.version("jaxlib"),
                    "flax": importlib.metadata.version("flax"), "platform": "cpu"}}[framework]


# Each build's other readings, whatever their values on this machine.
BUILT_WITH = {"pytorch": ("cuda", "cudnn", "libraries"), "tensorflow": ("build", "onednn", "xla"),
              "jax": ("plugins", "platform_version", "devices")}


@pytest.mark.slow
@pytest.mark.parametrize("framework", list(BUILT_WITH), ids=str)
def test_env_records_each_frameworks_build_as_its_workers_read_it(framework, run):
    if framework not in installed():
        pytest.skip(f"{framework} is not installed")
    run_dir, _ = run
    env = json.loads((run_dir / "env.json").read_text())
    build = env["builds"][framework]
    public = build["version"].partition("+")[0]  # torch's own version adds the build's local label: "+cu130"
    assert {**{key: build[key] for key in _cpu_build(framework)}, "version": public} == _cpu_build(framework)
    assert set(BUILT_WITH[framework]) <= set(build), sorted(build)
    assert set(build["flags"]) == {DEFAULT_PROFILE}, "flags by the profile the run ran"
    assert build["flags"][DEFAULT_PROFILE], "the flags that change numerics or speed"
    report = (run_dir / "report.md").read_text().splitlines()
    assert f"  - {framework} {build['version']}: {build['summary']}" in report


def test_report_command_rejects_a_folder_that_is_not_a_run(tmp_path):
    completed = subprocess.run([sys.executable, "-m", "report", str(tmp_path)], cwd=ROOT, capture_output=True,
                               text=True)
    assert completed.returncode == 2
    assert "holds no summary.csv: not a run folder" in completed.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_step_times_are_per_step_and_positive(run):
    steps = pd.read_csv(run[0] / "steps.csv")
    assert np.allclose(steps["step_ms"], 1000 * steps["seconds"] / steps["steps"])
    assert (steps["step_ms"] > 0).all()


# --- Augmentation -------------------------------------------------------------------------------

AUGMENTED_STEPS = 2 * AUGMENTED_TRAIN_SIZE // AUGMENTED_BATCH  # --epochs 2 of 8 batches each


@functools.cache
def fed_digest(augment: str) -> str:
    """The digest of the batches such a run trains on, computed here from the pipeline itself."""
    stream = itertools.chain.from_iterable(datasets.train_batches(small_synthetic(), AUGMENTED_BATCH, 0, epoch, augment)
                                           for epoch in itertools.count())
    digest = hashlib.sha256()
    for images, labels in itertools.islice(stream, AUGMENTED_STEPS):
        digest.update(images.tobytes())
        digest.update(labels.tobytes())
    return digest.hexdigest()[:16]


@functools.cache
def small_synthetic() -> datasets.Dataset:
    return datasets.synthetic().subset(AUGMENTED_TRAIN_SIZE, None)  # as the worker loads it


@pytest.mark.slow
def test_augmented_batches_are_identical_for_every_framework_and_all_hashed(augmented_run):
    _, summary = augmented_run
    summary = summary[summary["input"] == "prefetch"]  # the native rows are the libraries' own bytes
    assert summary["framework"].tolist() == installed() and (summary["status"] == "ok").all()
    assert summary["data_digest"].tolist() == [fed_digest("crop-flip")] * len(summary)
    assert fed_digest("crop-flip") != fed_digest("none")


@pytest.mark.slow
def test_augmentation_and_its_cost_are_recorded_and_reported(augmented_run):
    run_dir, summary = augmented_run
    summary = summary[summary["input"] == "prefetch"]  # the suite's own augmentation and its cost
    assert (summary["augment"] == "crop-flip").all()
    assert (summary["augment_s"] > 0).all()
    report = (run_dir / "report.md").read_text()
    assert "- Augmentation: **crop-flip** (4-pixel reflect padding" in report
    assert "s per job (median of " in report


@pytest.mark.slow
def test_the_recipe_trains_every_framework_and_the_report_states_its_settings(augmented_run):
    run_dir, summary = augmented_run
    assert (summary["model"] == "lenet").all() and (summary["batch_size"] == AUGMENTED_BATCH).all()
    report = (run_dir / "report.md").read_text()
    assert ("- Training: SGD lr 0.05 (one-cycle (linear up over the first 20.8% of the steps, then down)), Nesterov "
            "momentum 0.9, L2 weight decay 0.0005, label smoothing 0.2; recipe `resnet9-94`") in report


@pytest.mark.parametrize("schema", [SCHEMA + 1, "6b"], ids=["newer", "unknown"])
def test_a_run_folder_of_a_schema_this_report_cannot_read_is_refused_in_one_line(tmp_path, schema):
    """The committed time-to-accuracy run, its env.json claiming a later schema or one that is no version at
    all: refused with one line, exit status 2, nothing written. (Earlier schemas are migrated: test_migrate.)"""
    copy = tmp_path / "time-to-accuracy"
    shutil.copytree(ROOT / "results" / "time-to-accuracy", copy)
    (copy / "report.md").unlink()
    env = json.loads((copy / "env.json").read_text())
    (copy / "env.json").write_text(json.dumps({**env, "schema": schema}))
    completed = subprocess.run([sys.executable, "-m", "report", str(copy)], cwd=ROOT, capture_output=True, text=True)
    assert completed.returncode == 2 and completed.stdout == ""
    assert completed.stderr.splitlines() == [
        f"python -m report: error: {copy} was written under results schema {schema}; this report reads schemas 1 "
        f"to {SCHEMA} (render it with the version of the project that wrote it, or a later one)"]
    assert not (copy / "report.md").exists()


def test_the_committed_run_renders_as_committed_from_its_csv_files_and_env_alone(tmp_path):
    """The current schema needs nothing but the tables, env.json and the per-image predictions (no plan, no
    float64 model)."""
    source = ROOT / "results" / "seeds"
    copy = tmp_path / source.name
    copy.mkdir()
    for name in ("summary.csv", "steps.csv", "epochs.csv", "parity.csv.xz", "env.json"):
        shutil.copy(source / name, copy / name)
    shutil.copytree(source / "predictions", copy / "predictions")
    assert json.loads((copy / "env.json").read_text())["schema"] == SCHEMA
    report = write_report(copy).read_text()
    assert report == (source / "report.md").read_text()
    assert "- Augmentation: none" in report
    for chart in ("speed.png", "curves.png", "accuracy_time.png"):  # evaluated every 500 steps: enough points
        assert (copy / chart).stat().st_size > 0, chart


def test_a_report_that_fails_to_render_is_said_in_one_line_and_loses_nothing(tmp_path):
    """The runner renders the report in a child process; its failure names the reason and the
    folder whose tables are kept."""
    from rich.console import Console

    from benchmarks.run import render_report

    copy = tmp_path / "run"
    shutil.copytree(ROOT / "results" / "time-to-accuracy", copy)
    env = json.loads((copy / "env.json").read_text())
    (copy / "env.json").write_text(json.dumps({**env, "schema": SCHEMA + 1}))
    console = Console(record=True, width=400)
    render_report(copy, console, interrupted=False)
    lines = console.export_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("report not rendered (python -m report: error: ")
    assert lines[0].endswith(f"); the measurements are kept in {copy}")
    assert (copy / "summary.csv").read_bytes() == (ROOT / "results" / "time-to-accuracy" / "summary.csv").read_bytes()


def test_an_interrupted_job_counts_the_windows_steps_csv_holds_even_when_ctrl_c_follows_a_write(tmp_path,
                                                                                               monkeypatch):
    """Ctrl-C can land just after a window's row is written: the summary row must still count it,
    and count only this job's attempt."""
    def write_then_ctrl_c(run_dir, table, rows):
        append_rows(run_dir, table, rows)
        if table == "steps":
            raise KeyboardInterrupt

    job, other = make_job(repeat=1), make_job(repeat=2)
    window = {"type": "window", "row": {"window": 0, "epoch": 0, "first_step": 1, "steps": 4, "seconds": 0.2,
                                       "step_ms": 50.0, "others_cpu": None, "steal": None, "load": None}}
    JobRecorder(tmp_path, "run", other, 1).on_message(window)  # another job's window
    JobRecorder(tmp_path, "run", job, 1).on_message(window)  # an earlier attempt's window
    recorder = JobRecorder(tmp_path, "run", job, 2)
    recorder.on_message(window)
    monkeypatch.setattr(recording, "append_rows", write_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        recorder.on_message(window)
    monkeypatch.undo()
    recorder.interrupted("stopped by Ctrl-C")
    summary = read_table(tmp_path, "summary").iloc[-1]
    assert (summary["job_id"], summary["attempt"], summary["windows"]) == (job.job_id, 2, 2)
