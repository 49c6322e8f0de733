"""Efficiency against the machine: a step's FLOPs follow the stated convention from the model's
multiply-adds, the peak is measured, and the ranking turns step times into GFLOP/s and a share of
the peak."""

from __future__ import annotations

import pandas as pd
import pytest

from benchmarks.harness.efficiency import matmul_peak, step_flops
from benchmarks.harness.efficiency import multiply_adds
from report.render import efficiency_note, ranking_table


@pytest.mark.parametrize("model", ["lenet", "resnet9"])
def test_a_training_step_is_three_forward_passes_at_two_flops_per_multiply_add(model):
    assert step_flops(model, 64) == 3 * 2 * multiply_adds(model) * 64
    assert step_flops(model, 128) == 2 * step_flops(model, 64)


def test_the_cpu_peak_is_measured_with_a_matrix_product():
    peak = matmul_peak("cpu", "fp32", seconds=0.3)
    assert peak["peak_gflops"] > 1.0  # any CPU of this decade: tens to thousands
    assert "float32 matmul, 2048x2048" in peak["peak_how"]


def summary_rows(rows: list[tuple[str, str, int, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"framework": framework, "variant": variant, "model": "lenet", "batch_size": batch,
                          "repeat": 1, "status": "ok", "windows": 5, "step_ms_median": ms, "step_ms_iqr": 0.1,
                          "step_ms_p5": ms, "step_ms_p95": ms, "images_per_s": batch / ms * 1000, "compile_s": 1.0,
                          "recompiles": 0, "peak_rss_mb": 100.0, "baseline_rss_mb": 50.0, "peak_device_mb": None,
                          "test_accuracy": None}
                         for framework, variant, batch, ms in rows])


def test_the_ranking_gives_each_row_its_gflops_and_share_of_the_peak():
    summary = summary_rows([("pytorch", "eager", 128, 10.0), ("jax", "jit", 128, 40.0)])
    table = ranking_table(summary, peak_gflops=100.0).set_index("job")
    expected = step_flops("lenet", 128) / 0.010 / 1e9
    assert table.loc["pytorch:eager", "gflops"] == pytest.approx(expected)
    assert table.loc["jax:jit", "gflops"] == pytest.approx(expected / 4)
    assert table.loc["pytorch:eager", "of_peak"] == pytest.approx(expected / 100.0)
    note = efficiency_note(table.reset_index(), {"peak_gflops": 100.0, "peak_how": "a test"})
    assert f"The most efficient row, pytorch:eager (lenet, batch 128), reaches {expected:,.1f} GFLOP/s" in note
    assert "of_peak" not in ranking_table(summary).columns, "no peak, no share"
