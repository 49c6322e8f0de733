"""The report's charts: each is titled with model, device, machine, precision and data set; a
framework keeps one colour and a variant one marker in every chart; ratios are dots with their 95%
interval (none where there is no interval); compile pay-off is cumulative time against steps;
learning curves need enough epochs and carry the test set's binomial band; accuracy is drawn against
wall-clock seconds and steps, a band over seeds per framework:variant."""

from __future__ import annotations

import matplotlib.colors
import numpy as np
import pandas as pd
import pytest

import report.charts as charts
from benchmarks.harness.results import SUMMARY_COLUMNS
from frameworks import REGISTRY, front_end
from report.charts import (
    FRAMEWORK_COLOURS,
    MIN_EPOCHS,
    accuracy_time_chart,
    chart_title,
    colour,
    compile_chart,
    curves_chart,
    marker,
    memory_chart,
    speed_chart,
    throughput_chart,
)
from report.tables import curves_table, ranking_table

ENV = {"cpu": "AMD EPYC", "usable_cores": 2, "gpus": []}


def summary_rows(rows: list[tuple[str, int, float, float]], batch: int = 128) -> pd.DataFrame:
    """(framework:variant, batch size, median step ms, compile s) per job, as summary.csv's rows."""
    return pd.DataFrame([{"framework": job.split(":")[0], "variant": job.split(":")[1], "model": "lenet",
                          "device": "cpu", "precision": "fp32", "data": "synthetic", "batch_size": batch,
                          "devices": 1, "busy": False, "repeat": 1, "status": "ok", "windows": 5,
                          "step_ms_median": ms, "step_ms_iqr": 0.1, "step_ms_p5": ms, "step_ms_p95": ms,
                          "images_per_s": batch / ms * 1000, "compile_s": compile_s, "recompiles": 0,
                          "peak_rss_mb": 100.0 * batch ** 0.5, "baseline_rss_mb": 50.0, "peak_device_mb": None,
                          "test_accuracy": None}
                         for job, batch, ms, compile_s in rows], columns=SUMMARY_COLUMNS)


RATIOS = pd.DataFrame([  # findings.comparisons' columns for the three jobs of SUMMARY
    ("pytorch", "eager", 1.0, None, None, "fastest"), ("pytorch", "compile", 1.2, 1.1, 1.3, "slower"),
    ("jax", "jit", 2.0, None, None, "undecided")], columns=["framework", "variant", "ratio", "ratio_low", "ratio_high",
                                                            "verdict"]).assign(device="cpu", model="lenet", devices=1,
                                                                               batch_size=128, tuning="", nodes=1,
                                                                               precision="fp32", input="")
SUMMARY = summary_rows([("pytorch:eager", 128, 10.0, 0.1), ("pytorch:compile", 128, 12.0, 3.0),
                        ("jax:jit", 128, 20.0, 1.5)])


@pytest.fixture
def drawn(monkeypatch) -> list:
    """The figures the charts draw, kept open for inspection instead of written."""
    figures = []
    monkeypatch.setattr(charts, "save", lambda fig, path, alt: figures.append(fig) or f"![{alt}]({path.name})")
    return figures


def test_charts_are_titled_with_model_device_machine_precision_and_data():
    assert chart_title(SUMMARY, ENV) == "lenet · cpu · AMD EPYC, 2 cores · fp32 · synthetic data"
    gpu = SUMMARY.assign(device="cuda", data="cifar10")
    assert chart_title(gpu, {**ENV, "gpus": ["NVIDIA H200, 570.1, 143771 MiB"]}) == \
        "lenet · cuda · NVIDIA H200 · fp32 · CIFAR-10"


def test_a_framework_keeps_its_registry_colour_and_a_variant_one_marker():
    assert {name: colour(name) for name in REGISTRY} == {name: entry.colour for name, entry in REGISTRY.items()}
    assert len(set(FRAMEWORK_COLOURS.values())) == len(REGISTRY)
    assert colour("standin") == colour("standin") and colour("standin") not in FRAMEWORK_COLOURS.values()
    for name, entry in REGISTRY.items():  # its own markers, though another framework names a variant alike
        assert {variant: marker(name, variant) for variant in entry.variants} == dict(entry.markers), name
        assert len({marker(name, variant) for variant in entry.variants}) == len(entry.variants), name


def test_ratios_are_dots_with_an_interval_bar_only_where_there_is_one(drawn, tmp_path):
    ranking = ranking_table(SUMMARY, RATIOS)
    assert speed_chart(ranking, SUMMARY, tmp_path, ENV).endswith("(speed.png)")
    (fig,) = drawn
    (ax,) = fig.axes
    (bar,) = ax.containers  # pytorch:compile alone has an interval
    (segment,) = bar.lines[2][0].get_segments()  # the interval's line: (low, y) to (high, y)
    assert list(segment[:, 0]) == [pytest.approx(1.1), pytest.approx(1.3)]
    assert not ax.patches, "no bars"
    dots = {line.get_marker(): line for line in ax.lines if line.get_marker() not in ("None", "|")}
    assert matplotlib.colors.to_hex(dots[marker("jax", "jit")].get_color()) == FRAMEWORK_COLOURS["jax"]
    assert dots[marker("jax", "jit")].get_markerfacecolor() == "none", "undecided: hollow, no bar"
    assert "AMD EPYC, 2 cores" in fig.texts[0].get_text()


def test_a_busy_row_is_placed_by_its_step_time_as_a_hollow_dot_without_a_bar(drawn, tmp_path):
    summary = pd.concat([SUMMARY, summary_rows([("tensorflow:function", 128, 15.0, 1.0)]).assign(busy=True)])
    speed_chart(ranking_table(summary, RATIOS), summary, tmp_path, ENV)
    (fig,) = drawn
    (ax,) = fig.axes
    assert len(ax.containers) == 1, "a busy row gets no interval"
    (busy,) = [line for line in ax.lines if line.get_marker() == marker("tensorflow", "function")]
    assert busy.get_xdata()[0] == pytest.approx(1.5) and busy.get_markerfacecolor() == "none"


def test_compile_pay_off_is_cumulative_time_against_steps(drawn, tmp_path):
    compile_chart(ranking_table(SUMMARY, RATIOS), SUMMARY, tmp_path, ENV)
    (fig,) = drawn
    lines = {line.get_label(): line for line in fig.axes[0].lines}
    for job, compile_s, step_ms in (("pytorch:eager", 0.1, 10.0), ("pytorch:compile", 3.0, 12.0)):
        steps, seconds = lines[job].get_data()
        assert np.allclose(seconds, compile_s + steps * step_ms / 1000)
    assert lines["pytorch:eager"].get_linestyle() == "-" and lines["pytorch:compile"].get_linestyle() == "--"
    assert compile_chart(ranking_table(SUMMARY[SUMMARY["variant"] != "eager"]), SUMMARY, tmp_path, ENV) == "", \
        "no eager variant: nothing to pay off against"


def test_memory_is_drawn_against_batch_size(drawn, tmp_path):
    summary = summary_rows([(job, batch, 10.0, 1.0) for job in ("pytorch:eager", "jax:jit") for batch in (32, 128)])
    memory_chart(ranking_table(summary), summary, tmp_path, ENV)
    (fig,) = drawn
    lines = {line.get_label(): line for line in fig.axes[0].lines}
    assert list(lines["jax:jit"].get_xdata()) == [32, 128]
    assert np.allclose(lines["jax:jit"].get_ydata(), [100.0 * 32 ** 0.5, 100.0 * 128 ** 0.5])
    assert matplotlib.colors.to_hex(lines["jax:jit"].get_color()) == FRAMEWORK_COLOURS["jax"]


@pytest.mark.parametrize("draw", [memory_chart, throughput_chart], ids=lambda draw: draw.__name__)
def test_a_front_ends_steps_are_drawn_as_a_family_apart_from_the_native_ones(drawn, tmp_path, draw):
    through = [f"{name}:{variant}" for name, entry in REGISTRY.items() for variant in entry.variants
               if front_end(name, variant)]
    native = [f"{name}:{variant}" for name, entry in REGISTRY.items() for variant in entry.variants
              if not front_end(name, variant)]
    assert through and native, "the registry names steps of both kinds"
    summary = summary_rows([(job, batch, 10.0, 1.0) for job in (*through, *native) for batch in (32, 128)])
    draw(ranking_table(summary), summary, tmp_path, ENV)
    (fig,) = drawn
    lines = {line.get_label(): line for line in fig.axes[0].lines}
    assert {job: (lines[job].get_linestyle(), lines[job].get_fillstyle()) for job in (*through, *native)} == \
        {**{job: ("-.", "left") for job in through}, **{job: ("-", "full") for job in native}}


def test_a_front_ends_dot_is_half_filled_in_the_speed_chart(drawn, tmp_path):
    (job,) = [f"{name}:{variant}" for name, entry in REGISTRY.items() for variant in entry.variants[:1]
              if front_end(name, variant)][:1]
    framework, variant = job.split(":")
    summary = pd.concat([SUMMARY, summary_rows([(job, 128, 11.0, 1.0)])])
    speed_chart(ranking_table(summary, RATIOS), summary, tmp_path, ENV)
    (fig,) = drawn
    fills = {line.get_marker(): line.get_fillstyle() for line in fig.axes[0].lines
             if line.get_marker() not in ("None", "|")}
    assert fills[marker(framework, variant)] == "left" and fills[marker("pytorch", "eager")] == "full"


def epochs_rows(epochs: int) -> pd.DataFrame:
    return pd.DataFrame([{"framework": framework, "variant": variant, "model": "lenet", "device": "cpu",
                          "devices": 1, "batch_size": 32, "epoch": epoch, "train_loss": 2.0 / epoch,
                          "test_loss": 2.1 / epoch, "test_accuracy": 0.1 * epoch, "train_s": 5.0, "eval_s": 1.0,
                          "train_busy_share": 0.0}
                         for framework, variant in (("pytorch", "eager"), ("jax", "jit"))
                         for epoch in range(1, epochs + 1)])


def test_learning_curves_need_enough_epochs_and_carry_the_binomial_band(drawn, tmp_path):
    assert curves_chart(curves_table(epochs_rows(MIN_EPOCHS - 1)), SUMMARY, tmp_path, ENV, 10_000) == ""
    assert not drawn
    curves_chart(curves_table(epochs_rows(MIN_EPOCHS)), SUMMARY, tmp_path, ENV, 10_000)
    (fig,) = drawn
    band = fig.axes[1].collections[0].get_paths()[0].vertices[:, 1]
    half = 1.96 * np.sqrt(0.4 * 0.6 / 10_000)  # at epoch 4, accuracy 0.4
    assert band.max() == pytest.approx(0.4 + half) and band.min() == pytest.approx(0.1 - 1.96 * np.sqrt(0.09 / 10_000))


def test_accuracy_is_drawn_against_wall_clock_seconds_and_steps_as_a_band_over_seeds(drawn, tmp_path):
    bands = pd.DataFrame([{"label": f"{framework}:{variant}", "framework": framework, "variant": variant,
                           "step": 500 * k, "wall_s": 6.0 * k, "accuracy": 0.1 * k, "low": 0.1 * k - 0.01,
                           "high": 0.1 * k + 0.02, "seeds": 5}
                          for framework, variant in (("pytorch", "eager"), ("jax", "jit")) for k in (1, 2, 3)])
    accuracy_time_chart(bands, 0.25, SUMMARY, tmp_path, ENV)
    (fig,) = drawn
    time_ax, step_ax = fig.axes
    lines = {line.get_label(): line for line in time_ax.lines}
    assert list(lines["jax:jit (5 seeds)"].get_xdata()) == [6.0, 12.0, 18.0]
    assert list({line.get_label(): line for line in step_ax.lines}["jax:jit (5 seeds)"].get_xdata()) == [500, 1000,
                                                                                                          1500]
    assert lines["jax:jit (5 seeds)"].get_color() == colour("jax")
    band = time_ax.collections[1].get_paths()[0].vertices[:, 1]  # jax's: least to greatest over the seeds
    assert band.min() == pytest.approx(0.09) and band.max() == pytest.approx(0.32)
    assert "wall-clock" in time_ax.get_xlabel() and "steps" in step_ax.get_xlabel()
