"""`python -m report.compare` on two crafted run folders: only the job slowed beyond the measured
spread is flagged, jobs one run lacks are listed, and a folder that is not a run is refused."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from report.compare import compare, main
from tests.conftest import ROOT

JOBS = [("pytorch", "eager", 10.0), ("pytorch", "compile", 12.0), ("jax", "jit", 20.0), ("tensorflow", "function", 9.0)]


def write_run(folder, slowdown: dict[str, float], jobs=JOBS, seed: int = 0):
    """summary.csv and steps.csv of a run whose jobs' windows scatter 2% around their step time,
    each job's step time multiplied by its `slowdown` entry (framework:variant)."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    summary, steps = [], []
    for framework, variant, ms in jobs:
        ms *= slowdown.get(f"{framework}:{variant}", 1.0)
        windows = ms * (1 + 0.02 * rng.standard_normal(30))
        identity = {"run_id": folder.name, "job_id": f"{framework}-{variant}-bs128-r1", "framework": framework,
                    "variant": variant, "model": "lenet", "device": "cpu", "precision": "fp32", "batch_size": 128,
                    "repeat": 1, "attempt": 1}
        q1, median, q3 = np.percentile(windows, [25, 50, 75])
        summary.append({**identity, "status": "ok", "windows": len(windows), "step_ms_median": median,
                        "step_ms_iqr": q3 - q1, "peak_rss_mb": 2000.0 * (1 + 0.01 * rng.standard_normal()),
                        "peak_device_mb": None, "test_accuracy": None, "busy": False})
        steps += [{**identity, "window": i, "steps": 20, "step_ms": value} for i, value in enumerate(windows)]
    pd.DataFrame(summary).to_csv(folder / "summary.csv", index=False)
    pd.DataFrame(steps).to_csv(folder / "steps.csv", index=False)
    return folder


def test_only_the_job_slowed_by_half_is_flagged(tmp_path, capsys):
    old = write_run(tmp_path / "old", {}, seed=1)
    new = write_run(tmp_path / "new", {"jax:jit": 1.5}, seed=2)
    table = compare(pd.read_csv(old / "summary.csv"), pd.read_csv(new / "summary.csv")).set_index("variant")
    assert table.loc["jit", "step_ratio"] == pytest.approx(1.5, rel=0.03)
    assert table["changed"].to_dict() == {"eager": "", "compile": "", "jit": "slower", "function": ""}
    assert main([str(old), str(new)]) == 0
    report = capsys.readouterr().out
    (flagged,) = [line for line in report.splitlines() if line.endswith("| slower    |")]
    assert flagged.startswith("| jax:jit ")


def test_jobs_in_one_run_only_are_listed(tmp_path):
    old = write_run(tmp_path / "old", {}, jobs=JOBS[:3])
    new = write_run(tmp_path / "new", {}, jobs=JOBS[1:])
    main([str(old), str(new), "--out", str(tmp_path / "comparison.md")])
    text = (tmp_path / "comparison.md").read_text()
    assert "Only in old: pytorch:eager lenet cpu fp32 batch 128" in text
    assert "Only in new: tensorflow:function lenet cpu fp32 batch 128" in text
    assert "| pytorch:compile " in text and "| pytorch:eager " not in text


@pytest.mark.parametrize("missing", ["no folder", "no summary.csv"], ids=str)
def test_a_folder_that_is_not_a_run_is_refused_with_one_message(tmp_path, missing):
    good = write_run(tmp_path / "good", {})
    bad = tmp_path / "bad"
    if missing == "no summary.csv":
        bad.mkdir()
    completed = subprocess.run([sys.executable, "-m", "report.compare", str(good), str(bad)], cwd=ROOT,
                               capture_output=True, text=True)
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert completed.stderr.strip().splitlines()[-1].endswith(f"{bad} holds no summary.csv: not a run folder")
