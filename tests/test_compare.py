"""Two crafted run folders, compared and merged. `python -m report.compare`: only the job slowed
beyond the measured spread is flagged, jobs one run lacks are listed, a folder that is not a run is
refused. `python -m report RUN RUN --out DIR`: a CPU and a GPU run in one report, each ranked
against its own device only."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from benchmarks.harness.results import SCHEMA, STEPS_COLUMNS, SUMMARY_COLUMNS
from report.__main__ import main as report_main
from report.compare import compare, main
from tests.conftest import ROOT

JOBS = [("pytorch", "eager", 10.0), ("pytorch", "compile", 12.0), ("jax", "jit", 20.0), ("tensorflow", "function", 9.0)]


def write_run(folder, slowdown: dict[str, float], jobs=JOBS, seed: int = 0, device: str = "cpu",
              schema: int = SCHEMA):
    """summary.csv, steps.csv and env.json of a run whose jobs' windows scatter 2% around their step time,
    each job's step time multiplied by its `slowdown` entry (framework:variant)."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    summary, steps = [], []
    for framework, variant, ms in jobs:
        ms *= slowdown.get(f"{framework}:{variant}", 1.0)
        windows = ms * (1 + 0.02 * rng.standard_normal(30))
        identity = {"run_id": folder.name, "job_id": f"{framework}-{variant}-bs128-r1", "framework": framework,
                    "variant": variant, "model": "lenet", "device": device, "precision": "fp32", "batch_size": 128,
                    "devices": 1, "repeat": 1, "attempt": 1}
        p5, q1, median, q3, p95 = np.percentile(windows, [5, 25, 50, 75, 95])
        summary.append({**identity, "status": "ok", "windows": len(windows), "step_ms_median": median,
                        "step_ms_q1": q1, "step_ms_q3": q3, "step_ms_iqr": q3 - q1, "step_ms_p5": p5,
                        "step_ms_p95": p95, "images_per_s": 128 / median * 1000, "compile_s": 1.0, "recompiles": 0,
                        "baseline_rss_mb": 500.0, "peak_rss_mb": 2000.0 * (1 + 0.01 * rng.standard_normal()),
                        "peak_device_mb": None, "test_accuracy": None, "busy": False})
        steps += [{**identity, "window": i, "steps": 20, "step_ms": value} for i, value in enumerate(windows)]
    pd.DataFrame(summary, columns=SUMMARY_COLUMNS).to_csv(folder / "summary.csv", index=False)
    pd.DataFrame(steps, columns=STEPS_COLUMNS).to_csv(folder / "steps.csv", index=False)
    (folder / "env.json").write_text(json.dumps({"schema": schema, "cpu_features": None, "interleave": "jobs"}))
    return folder


def test_only_the_job_slowed_by_half_is_flagged(tmp_path, capsys):
    old = write_run(tmp_path / "old", {}, seed=1)
    new = write_run(tmp_path / "new", {"jax:jit": 1.5}, seed=2)
    table = compare(*(pd.read_csv(run / "summary.csv") for run in (old, new)),
                    *(pd.read_csv(run / "steps.csv") for run in (old, new))).set_index("variant")
    assert table.loc["jit", "step_ratio"] == pytest.approx(1.5, rel=0.03)
    assert table["changed"].to_dict() == {"eager": "", "compile": "", "jit": "slower", "function": ""}
    assert table["rss_ratio"].between(0.95, 1.05).all()  # no device memory on a CPU: peak RSS compared
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


def test_a_run_of_a_later_schema_is_refused_with_one_message(tmp_path):
    good, new = write_run(tmp_path / "good", {}), write_run(tmp_path / "new", {}, schema=SCHEMA + 1)
    completed = subprocess.run([sys.executable, "-m", "report.compare", str(good), str(new)], cwd=ROOT,
                               capture_output=True, text=True)
    assert completed.returncode == 2 and "Traceback" not in completed.stderr
    assert completed.stderr.strip().splitlines()[-1].endswith(
        f"{new} was written under results schema {SCHEMA + 1}; this report reads schemas 1 to {SCHEMA} (render it "
        f"with the version of the project that wrote it, or a later one)")


# --- Merging runs from different devices ---------------------------------------------------------


def test_a_cpu_and_a_gpu_run_merge_into_one_report_ranked_per_device(tmp_path):
    cpu = write_run(tmp_path / "cpu-run", {}, seed=3)
    gpu = write_run(tmp_path / "gpu-run", {"pytorch:eager": 0.1}, seed=4, device="cuda")
    out = tmp_path / "merged"
    assert report_main([str(cpu), str(gpu), "--out", str(out)]) == 0
    summary = pd.read_csv(out / "summary.csv")
    assert summary.groupby("device")["run_id"].unique().map(list).to_dict() == {"cpu": ["cpu-run"],
                                                                                 "cuda": ["gpu-run"]}
    assert len(summary) == 2 * len(JOBS) and summary["job_id"].is_unique
    report = (out / "report.md").read_text()
    assert report.startswith("# Framework comparison: runs cpu-run, gpu-run")
    ranking = report.split("## Speed, ranked by throughput", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(): line for line in ranking.splitlines() if line.startswith("| c")}
    assert set(rows) == {f"{device} {framework}:{variant}" for device in ("cpu", "cuda")
                         for framework, variant, _ in JOBS}
    # Each device has its own fastest: tensorflow:function on the CPU, the tenfold pytorch:eager on the GPU.
    assert "| cpu      | lenet   |          128 |" in rows["cpu tensorflow:function"]
    for fastest in ("cpu tensorflow:function", "cuda pytorch:eager"):
        assert rows[fastest].split("|")[6].strip() == "1", rows[fastest]
    assert "- lenet, batch 128 on cuda: **pytorch:eager** is fastest" in report
    assert "- lenet, batch 128 on cpu: **tensorflow:function** is fastest" in report
    assert report_main([str(out)]) == 0 and (out / "report.md").read_text() == report  # re-renders in place


def test_merging_refuses_two_runs_on_the_same_device(tmp_path, capsys):
    first, second = write_run(tmp_path / "first", {}), write_run(tmp_path / "second", {})
    with pytest.raises(SystemExit) as exit:
        report_main([str(first), str(second), "--out", str(tmp_path / "merged")])
    assert exit.value.code == 2
    assert "runs first and second both ran on cpu: merging is for runs on different devices" in capsys.readouterr().err


# --- The committed run compared with itself and with a slowed copy -------------------------------

TUNING_RUN = ROOT / "results" / "tuning-cpu"


def test_the_committed_tuning_run_against_itself_is_unchanged_in_every_job(capsys):
    assert main([str(TUNING_RUN), str(TUNING_RUN)]) == 0
    report = capsys.readouterr().out
    summary = pd.read_csv(TUNING_RUN / "summary.csv")
    jobs = summary[summary["status"].eq("ok")].drop_duplicates(["framework", "variant", "tuning"])
    assert f"Step time of {len(jobs)} jobs in both runs: unchanged {len(jobs)}." in report
    old, new = pd.read_csv(TUNING_RUN / "summary.csv"), pd.read_csv(TUNING_RUN / "steps.csv")
    table = compare(old, old, new, new)
    assert len(table) == len(jobs) and table["step"].eq("unchanged").all() and table["memory"].eq("unchanged").all()
    assert table["changed"].eq("").all()


def test_a_copy_whose_tuned_jobs_alone_were_slowed_flags_only_those_as_slower(tmp_path):
    slowed = tmp_path / "slowed"
    shutil.copytree(TUNING_RUN, slowed)
    factor = 2.0  # beyond the widest interval of this run's 3 processes of 5 windows (tensorflow:eager, +-50%)
    steps = pd.read_csv(slowed / "steps.csv")
    steps.loc[steps["tuning"].eq("tuned"), "step_ms"] *= factor
    steps.to_csv(slowed / "steps.csv", index=False)
    summary = pd.read_csv(slowed / "summary.csv")
    tuned = summary["tuning"].eq("tuned")
    for column in ("step_ms_median", "step_ms_q1", "step_ms_q3", "step_ms_iqr", "step_ms_p5", "step_ms_p95"):
        summary.loc[tuned, column] *= factor
    summary.loc[tuned, "images_per_s"] /= factor
    summary.to_csv(slowed / "summary.csv", index=False)
    old, new = (pd.read_csv(run / "summary.csv") for run in (TUNING_RUN, slowed))
    table = compare(old, new, *(pd.read_csv(run / "steps.csv") for run in (TUNING_RUN, slowed)))
    verdicts = table.groupby("tuning")["step"].agg(set).to_dict()
    assert verdicts == {"stock": {"unchanged"}, "tuned": {"slower"}}
    ratios = table.groupby("tuning")["step_ratio"]
    assert ratios.min().to_dict() == pytest.approx({"stock": 1.0, "tuned": factor})
    assert ratios.max().to_dict() == pytest.approx({"stock": 1.0, "tuned": factor})
    assert table.loc[table["tuning"].eq("tuned"), "changed"].eq("slower").all()
    assert table.loc[table["tuning"].eq("stock"), "changed"].eq("").all()
