"""The report's charts: each is titled with what it shows (model, device, precision, data set), and
the images/s whiskers show the spread a rerun would show: the range over repeated processes where
a job has several, else one process's p5-p95 windows."""

from __future__ import annotations

import pandas as pd
import pytest

from benchmarks.harness.results import SUMMARY_COLUMNS
from report.charts import chart_title, speed_chart, speed_whiskers
from report.tables import ranking_table


def summary_rows(rows: list[tuple[str, int, float, float, float]], batch: int = 128) -> pd.DataFrame:
    """(framework:variant, repeat, median, p5, p95 step ms) per process, as summary.csv's rows."""
    return pd.DataFrame([{"framework": job.split(":")[0], "variant": job.split(":")[1], "model": "lenet",
                          "device": "cpu", "precision": "fp32", "data": "synthetic", "batch_size": batch,
                          "devices": 1, "busy": False, "repeat": repeat, "status": "ok", "windows": 5, "step_ms_median": ms, "step_ms_iqr": 0.1,
                          "step_ms_p5": p5, "step_ms_p95": p95, "images_per_s": batch / ms * 1000,
                          "compile_s": 1.0, "recompiles": 0, "peak_rss_mb": 100.0, "baseline_rss_mb": 50.0,
                          "peak_device_mb": None, "test_accuracy": None}
                         for job, repeat, ms, p5, p95 in rows], columns=SUMMARY_COLUMNS)


def test_whiskers_span_the_repeats_processes_or_one_process_windows():
    summary = summary_rows([("pytorch:eager", 1, 10.0, 9.9, 10.1), ("pytorch:eager", 2, 12.5, 12.4, 12.6),
                            ("pytorch:eager", 3, 11.0, 10.9, 11.1), ("jax:jit", 1, 40.0, 36.0, 50.0)])
    ranking = ranking_table(summary).set_index("job", drop=False)
    low, high, words = speed_whiskers(ranking, summary)
    assert low["pytorch:eager"] == pytest.approx(128 / 12.5 * 1000)  # the slowest process, not its windows
    assert high["pytorch:eager"] == pytest.approx(128 / 10.0 * 1000)
    assert low["jax:jit"] == pytest.approx(128 / 50.0 * 1000)  # one process: its p95 and p5 windows
    assert high["jax:jit"] == pytest.approx(128 / 36.0 * 1000)
    assert words == "range over repeats, or p5-p95 of windows with one process"


def test_busy_rows_keep_their_whiskers():
    summary = summary_rows([("tensorflow:function", 1, 10.0, 9.0, 11.0), ("tensorflow:function", 2, 20.0, 19, 21)])
    summary["busy"] = True
    summary["contention"] = 0.5
    ranking = ranking_table(summary)
    assert ranking["job"].tolist() == ["tensorflow:function (busy)"]
    low, high, words = speed_whiskers(ranking, summary)
    assert (low.iloc[0], high.iloc[0], words) == (pytest.approx(6400), pytest.approx(12800), "range over the repeats")


def test_charts_are_titled_with_model_device_precision_and_data(tmp_path):
    summary = summary_rows([("pytorch:eager", 1, 10.0, 9.0, 11.0), ("jax:jit", 1, 40.0, 36.0, 50.0)])
    assert chart_title(summary) == "lenet · cpu · fp32 · synthetic data"
    assert chart_title(summary.assign(data="cifar10", model=["lenet", "resnet9"])) == \
        "lenet+resnet9 · cpu · fp32 · CIFAR-10"
    assert speed_chart(ranking_table(summary), summary, tmp_path) == \
        "![speed, memory and compile time per job](speed.png)"
    assert (tmp_path / "speed.png").stat().st_size > 10_000
