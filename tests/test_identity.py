"""One job identity (`results.JOB`): for each of its columns, two jobs that differ in that column
alone stay two jobs in the ranking, the findings' ratio table, noise, compare and a merged run, each
with its own step time, never one row of the two pooled."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from benchmarks.harness.results import JOB, SCHEMA, SETTING, STEPS_COLUMNS, SUMMARY_COLUMNS
from report.compare import compare
from report.findings import comparisons, speed_findings
from report.merge import merge_runs
from report.noise import noise_table
from report.source import final_summary
from report.tables import ranking_table

BASE = {"framework": "pytorch", "variant": "eager", "model": "lenet", "device": "cpu", "devices": 1, "nodes": 1,
        "precision": "fp32", "tuning": "stock", "batch_size": 128, "input": "prefetch"}
OTHER = {"framework": "jax", "variant": "compile", "model": "resnet9", "device": "cuda", "devices": 2, "nodes": 2,
         "precision": "bf16", "tuning": "tuned", "batch_size": 256, "input": "step"}
STEP_MS = (10.0, 20.0)  # the two jobs' step times: a pooled row would show neither
WINDOWS = 20


def pair_tables(column: str, run_id: str = "run") -> tuple[pd.DataFrame, pd.DataFrame]:
    """summary and steps of two jobs, alike but for `column`, in two processes each."""
    summary, steps = [], []
    rng = np.random.default_rng(0)
    for index, (value, step_ms) in enumerate(zip((BASE[column], OTHER[column]), STEP_MS)):
        job = {**BASE, column: value}
        for repeat in (1, 2):
            identity = {**job, "run_id": run_id, "job_id": f"job{index}-r{repeat}", "seed": 0, "repeat": repeat,
                        "attempt": 1}
            windows = step_ms * (1 + 0.01 * rng.standard_normal(WINDOWS))
            summary.append({**identity, "status": "ok", "windows": WINDOWS, "step_ms_median": float(np.median(windows)),
                            "step_ms_iqr": 0.1, "images_per_s": 1000.0, "compile_s": 1.0, "peak_rss_mb": 1000.0,
                            "baseline_rss_mb": 500.0, "busy": False})
            steps += [{**identity, "window": window, "steps": 10, "step_ms": ms} for window, ms in enumerate(windows)]
    return (pd.DataFrame(summary, columns=SUMMARY_COLUMNS).astype({"busy": bool}),
            pd.DataFrame(steps, columns=STEPS_COLUMNS))


def write_run(folder, summary: pd.DataFrame, steps: pd.DataFrame):
    folder.mkdir()
    summary.to_csv(folder / "summary.csv", index=False)
    steps.to_csv(folder / "steps.csv", index=False)
    (folder / "env.json").write_text(json.dumps({"schema": SCHEMA, "interleave": "jobs"}))
    return folder


def apart(step_ms: pd.Series) -> bool:
    """Two rows, one per job, each with its own step time (within the windows' 1% noise)."""
    return len(step_ms) == 2 and sorted(step_ms.round(-1)) == list(STEP_MS)


differing = pytest.mark.parametrize("column", JOB, ids=lambda column: f"two jobs differing only in {column}")


@differing
def test_the_ranking_and_its_ratios_keep_them_apart(column):
    summary, steps = pair_tables(column)
    compared = comparisons(summary, steps)
    assert apart(compared["step_ms_median"]), compared
    assert apart(ranking_table(summary, compared)["step_ms_median"])


@differing
def test_the_speed_findings_keep_them_apart(column):
    summary, steps = pair_tables(column)
    sentences = speed_findings(summary, steps)
    if column in SETTING:  # two settings: each job the only one of its own
        assert len(sentences) == 2 and all(sentence.endswith("the only variant measured.") for sentence in sentences)
    else:  # one setting: the slower job's ratio to the faster, not a ratio of a job to itself
        (sentence,) = sentences
        ratio = float(re.search(r" ([\d.]+)x \(", sentence)[1])
        assert ratio == pytest.approx(STEP_MS[1] / STEP_MS[0], rel=0.03), sentence


@differing
def test_noise_keeps_them_apart(column):
    summary, steps = pair_tables(column)
    table = noise_table(steps, summary)
    assert len(table) == 2
    assert sorted(table["process_ms"].str.split(", ").map(lambda ms: round(float(ms[0]), -1))) == list(STEP_MS)


@differing
def test_compare_keeps_them_apart(column):
    summary, steps = pair_tables(column)
    table = compare(summary, summary, steps, steps)
    assert apart(table["step_ms_median_old"]) and table["step"].eq("unchanged").all()


def test_a_jobs_seeds_are_one_job_in_the_ranking_as_its_repeats_are():
    """The seed is in every row (results.IDENTITY) but not in results.JOB: speed pools a job's seeds as it
    pools its repeats; what compares seeds groups by the column itself."""
    def one_job_two_seeds(frame: pd.DataFrame) -> pd.DataFrame:  # the second job made the first's seed 7
        return frame.assign(framework=BASE["framework"], seed=frame["job_id"].str.startswith("job1") * 7)

    summary, steps = map(one_job_two_seeds, pair_tables("framework"))
    assert "seed" not in JOB and summary["seed"].nunique() == 2
    assert len(comparisons(summary, steps)) == 1


@differing
def test_a_merged_run_keeps_them_apart(column, tmp_path):
    pair = write_run(tmp_path / "pair", *pair_tables(column, "pair"))
    other_summary, other_steps = pair_tables("framework", "other")
    other = write_run(tmp_path / "other", other_summary.assign(device="tpu"), other_steps.assign(device="tpu"))
    merge_runs([pair, other], tmp_path / "merged")
    summary = final_summary(tmp_path / "merged")
    ranking = ranking_table(summary[summary["run_id"].eq("pair")])
    assert apart(ranking["step_ms_median"])
