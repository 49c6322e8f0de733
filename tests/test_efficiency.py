"""Efficiency against the machine: a step's FLOPs follow the stated convention from the model's
multiply-adds, the peak is measured, each summary row stores its GFLOP/s and share of the peak when
it is written, and the ranking shows them."""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd
import pytest

from benchmarks.harness.efficiency import ROUNDS, best_rate, efficiency, matmul_peak, multiply_adds, step_flops
from benchmarks.harness.jobs import Placement
from benchmarks.harness.recording import JobRecorder
from benchmarks.harness.results import SUMMARY_COLUMNS, read_table
from report.sections import efficiency_note
from report.tables import ranking_table
from tests.conftest import make_job


@pytest.mark.parametrize("model", ["lenet", "resnet9"])
def test_a_training_step_is_three_forward_passes_at_two_flops_per_multiply_add(model):
    assert step_flops(model, 64) == 3 * 2 * multiply_adds(model) * 64
    assert step_flops(model, 128) == 2 * step_flops(model, 64)


def test_the_cpu_peak_is_measured_with_a_matrix_product():
    peak = matmul_peak("cpu", "fp32", seconds=0.3)
    assert peak["peak_gflops"] > 1.0  # any CPU of this decade: tens to thousands
    assert "float32 matmul, 2048x2048" in peak["peak_how"]


class QueuedDevice:
    """A device as the host sees it: a product is queued in no time, the host blocks only when
    `depth` products are queued (a CUDA stream's launch queue) or when it waits, and the device
    runs the queue in order at `product_s` seconds a product. `clock` is the host's time."""

    def __init__(self, product_s: float, depth: int = 1000):
        self.product_s, self.depth = product_s, depth
        self.now = 0.0  # the host's clock
        self.busy_until = 0.0  # when the device finishes what is queued
        self.queued = 0  # products queued since the last wait
        self.rounds: list[float] = []  # seconds of device work queued before each wait

    def clock(self) -> float:
        return self.now

    def multiply(self) -> None:
        self.queued += 1
        self.busy_until = max(self.busy_until, self.now) + self.product_s
        self.now = max(self.now, self.busy_until - self.depth * self.product_s)  # a full queue blocks

    def wait(self, result) -> None:
        self.rounds.append(self.queued * self.product_s)
        self.queued = 0
        self.now = max(self.now, self.busy_until)


@pytest.mark.parametrize("product_s", [1e-4, 0.018, 0.2, 2.0], ids=lambda s: f"{s}s-product")
def test_each_round_of_the_peak_queues_no_more_than_its_share_of_the_time(product_s):
    """A round sized by the clock alone queues products until the queue blocks, so a slow product
    (8192^3 in float32 on a GPU) makes each round wait for a thousand of them; sized by a timed
    product, a round stays within its share of the budget, or one product where one takes longer."""
    device, seconds = QueuedDevice(product_s), 1.0
    rate = best_rate(device.multiply, device.wait, flop=10**12, seconds=seconds, clock=device.clock)
    assert rate == pytest.approx(10**12 / product_s), "the device's own rate, measured"
    timed = device.rounds[2:]  # after the warm-up and the single timed product
    assert len(timed) == ROUNDS
    assert all(round_s <= max(seconds / ROUNDS, product_s) + 1e-9 for round_s in timed)
    assert device.now <= 2 * product_s + ROUNDS * max(seconds / ROUNDS, product_s) + 1e-9


def recorded_row(run_dir, result: dict, peak_gflops: float | None, device: str = "cpu", replicas: int = 1) -> dict:
    """The summary row JobRecorder writes for a job of batch 128 (per device) that returned `result`."""
    job = make_job("pytorch", "eager", 128, placement=Placement(device=device, devices=replicas))
    JobRecorder(run_dir, "run", job, 1, peak_gflops).finish(result)
    return read_table(run_dir, "summary").iloc[-1].to_dict()


def test_a_row_stores_its_flops_gflops_and_share_of_the_peak_when_it_is_written(tmp_path):
    row = recorded_row(tmp_path, {"status": "ok", "step_ms_median": 10.0}, peak_gflops=100.0)
    assert row["gflop_per_step"] == pytest.approx(step_flops("lenet", 128) / 1e9)
    assert row["gflops"] == pytest.approx(step_flops("lenet", 128) / 0.010 / 1e9)
    assert row["of_peak"] == pytest.approx(row["gflops"] / 100.0)
    unmeasured = recorded_row(tmp_path, {"status": "ok", "step_ms_median": 10.0}, peak_gflops=None)
    assert unmeasured["gflops"] == pytest.approx(row["gflops"]) and pd.isna(unmeasured["of_peak"]), "no peak, no share"
    failed = recorded_row(tmp_path, {"status": "error", "error": "boom"}, peak_gflops=100.0)
    assert pd.isna(failed["gflops"]) and pd.isna(failed["of_peak"]), "no step time, no rate"


def test_gpus_add_their_peaks_and_host_devices_share_the_cores():
    one = efficiency("lenet", 256, 10.0, "cuda", 1, 100.0)
    two = efficiency("lenet", 256, 10.0, "cuda", 2, 100.0)
    host = efficiency("lenet", 256, 10.0, "cpu", 2, 100.0)
    assert two.gflops == one.gflops == host.gflops
    assert two.of_peak == pytest.approx(one.of_peak / 2) and host.of_peak == pytest.approx(one.of_peak)


def summary_rows(rows: list[tuple[str, str, int, float]], peak_gflops: float | None) -> pd.DataFrame:
    """summary.csv's rows of lenet jobs on one CPU, with the efficiency columns the runner stores."""
    return pd.DataFrame([{"framework": framework, "variant": variant, "model": "lenet", "device": "cpu", "devices": 1,
                          "batch_size": batch, "repeat": 1, "status": "ok", "windows": 5, "busy": False,
                          "step_ms_median": ms, "step_ms_iqr": 0.1, "step_ms_p5": ms, "step_ms_p95": ms,
                          "images_per_s": batch / ms * 1000, "compile_s": 1.0, "recompiles": 0,
                          "peak_rss_mb": 100.0, "baseline_rss_mb": 50.0, "peak_device_mb": None,
                          "test_accuracy": None, **asdict(efficiency("lenet", batch, ms, "cpu", 1, peak_gflops))}
                         for framework, variant, batch, ms in rows], columns=SUMMARY_COLUMNS)


def test_the_ranking_shows_each_row_its_gflops_and_share_of_the_peak():
    rows = [("pytorch", "eager", 128, 10.0), ("jax", "jit", 128, 40.0)]
    table = ranking_table(summary_rows(rows, peak_gflops=100.0)).set_index("job")
    expected = step_flops("lenet", 128) / 0.010 / 1e9
    assert table.loc["pytorch:eager", "gflops"] == pytest.approx(expected)
    assert table.loc["jax:jit", "gflops"] == pytest.approx(expected / 4)
    assert table.loc["pytorch:eager", "of_peak"] == pytest.approx(expected / 100.0)
    note = efficiency_note(table.reset_index(), {"peak_gflops": 100.0, "peak_how": "a test"})
    assert f"The most efficient row, pytorch:eager (lenet, batch 128), reaches {expected:,.1f} GFLOP/s" in note
    assert "of_peak" not in ranking_table(summary_rows(rows, peak_gflops=None)).columns, "no peak, no share"
