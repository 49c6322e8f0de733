"""What a front end (Keras) costs, on crafted run folders (no framework runs): each front-end step is paired with
its registry counterpart in the same setting and nowhere else, its cost is its step time over the native one's
with the ranking's bootstrap interval, each side's compile time and memory come from its own rows, and the
report shows the table, its CSV and one sentence in the answer only where the run has such a pair."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmarks.harness.results import JOB, SCHEMA, SETTING, STEPS_COLUMNS, SUMMARY_COLUMNS
from frameworks import counterpart, front_end, registry
from report.findings import SEED, ratio_interval
from report.front_end import CSV, front_end_costs, front_end_default, front_end_table
from report.readme import render
from report.render import write_report
from tests.test_report_csv import NUMBER, half_unit, markdown_tables

SETTING_OF = {"model": "lenet", "device": "cpu", "devices": 1, "nodes": 1, "precision": "fp32", "tuning": "tuned",
              "batch_size": 128, "input": "prefetch"}
# Another value of each SETTING column: a job that differs in it is another setting.
ELSEWHERE = {"model": "resnet9", "device": "cuda", "devices": 2, "nodes": 2, "precision": "bf16", "tuning": "stock",
             "batch_size": 64, "input": "resident"}
# Every step trained through a front end that has a native counterpart, as the registry names them.
PAIRS = [(f"{name}:{variant}", counterpart(name, variant)) for name, entry in registry().items()
         for variant in entry.variants if front_end(name, variant) and counterpart(name, variant)]
WINDOWS, PROCESSES = 20, 3


def job(label: str, ms: float, **fields) -> dict:
    """One job of a crafted run: framework:variant, its median step time in ms, and summary fields to set."""
    framework, variant = label.split(":")
    return {"framework": framework, "variant": variant, "ms": ms, **SETTING_OF, **fields}


def crafted(jobs: list[dict], folder=None, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """summary and steps tables of `jobs`, PROCESSES processes each, windows scattering 1% around each
    process's median and the processes 1% apart; written as a run folder into `folder` when given."""
    rng = np.random.default_rng(seed)
    summary, steps = [], []
    for spec in jobs:
        identity = {column: spec[column] for column in JOB}
        name = "-".join(str(value) for value in identity.values())
        for repeat in range(1, PROCESSES + 1):
            windows = spec["ms"] * (1 + 0.01 * (repeat - 2)) * (1 + 0.01 * rng.standard_normal(WINDOWS))
            row = {**identity, "run_id": "crafted", "job_id": f"{name}-r{repeat}", "repeat": repeat, "attempt": 1}
            summary.append({**row, "status": "ok", "windows": WINDOWS, "step_ms_median": float(np.median(windows)),
                            "images_per_s": spec["batch_size"] / float(np.median(windows)) * 1000,
                            "compile_s": spec.get("compile_s", 1.0), "jit_compile": spec.get("jit_compile"),
                            "baseline_rss_mb": 500.0, "peak_rss_mb": spec.get("peak_rss_mb", 2000.0),
                            "peak_device_mb": spec.get("peak_device_mb"), "busy": spec.get("busy", False),
                            "contention": 0.0, "recompiles": 0, "data": "synthetic", "augment": "none",
                            "threads": 2})
            steps += [{**row, "window": window, "steps": 10, "step_ms": ms} for window, ms in enumerate(windows)]
    summary, steps = pd.DataFrame(summary, columns=SUMMARY_COLUMNS), pd.DataFrame(steps, columns=STEPS_COLUMNS)
    if folder is not None:
        folder.mkdir()
        summary.to_csv(folder / "summary.csv", index=False)
        steps.to_csv(folder / "steps.csv", index=False)
        (folder / "env.json").write_text(json.dumps({"schema": SCHEMA, "cpu": "Crafted CPU", "usable_cores": 2,
                                                     "cpu_features": None, "interleave": "jobs",
                                                     "data": "synthetic"}))
    return summary, steps


def pairs(costs: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(costs["job"], costs["native"]))


def test_the_registry_names_pairs_to_compare():
    assert PAIRS, "no front-end step with a native counterpart: nothing here is tested"
    for _, native in PAIRS:
        framework, variant = native.split(":")
        assert variant in registry()[framework].variants and not front_end(framework, variant), native


def test_every_front_end_step_is_paired_with_its_counterpart_and_slower_reads_above_one():
    jobs = [spec for index, (through, native) in enumerate(PAIRS)
            for spec in (job(through, 12.0 + index, compile_s=3.0 + index, peak_rss_mb=2500.0 + index,
                             jit_compile=index % 2 == 0),
                         job(native, 10.0 + index, compile_s=1.0 + index, peak_rss_mb=2000.0 + index))]
    costs = front_end_costs(*crafted(jobs))
    assert pairs(costs) == set(PAIRS)
    for index, (through, native) in enumerate(PAIRS):
        row = costs[costs["job"].eq(through) & costs["native"].eq(native)].iloc[0]
        assert row["cost"] == pytest.approx((12.0 + index) / (10.0 + index), rel=0.02), through
        assert 1 < row["cost_low"] < row["cost"] < row["cost_high"] and row["verdict"] == "slower", through
        assert (row["compile_s"], row["native_compile_s"]) == (3.0 + index, 1.0 + index)
        assert (row["peak_rss_mb"], row["native_peak_rss_mb"]) == (2500.0 + index, 2000.0 + index)
        assert row["framework_rss_mb"] == 2000.0 + index and row["native_framework_rss_mb"] == 1500.0 + index
        assert row["jit_compile"] == str(index % 2 == 0)
        assert row["front_end_default"] == front_end_default(*through.split(":"))


def test_a_front_end_faster_than_its_native_step_reads_below_one():
    through, native = PAIRS[0]
    (row,) = front_end_costs(*crafted([job(through, 9.0), job(native, 10.0)])).to_dict("records")
    assert row["cost_high"] < 1 and row["verdict"] == "faster"


def test_each_front_ends_own_default_is_the_first_of_its_frameworks_variants_that_trains_through_it():
    defaults = {f"{name}:{variant}" for name, entry in registry().items() for variant in entry.variants
                if front_end_default(name, variant)}
    through = {name for name, entry in registry().items() if any(front_end(name, v) for v in entry.variants)}
    assert {label.split(":")[0] for label in defaults} == through  # one per framework a front end runs on
    for label in defaults:
        framework, variant = label.split(":")
        variants = registry()[framework].variants
        assert not any(front_end(framework, other) for other in variants[:variants.index(variant)]), label
    assert not any(front_end_default(name, variant) for name, entry in registry().items()
                   for variant in entry.variants if not front_end(name, variant))


@pytest.mark.parametrize("column", SETTING, ids=str)
def test_jobs_of_different_settings_are_never_paired(column):
    through, native = PAIRS[0]
    jobs = [job(through, 12.0), job(native, 10.0, **{column: ELSEWHERE[column]})]
    assert front_end_costs(*crafted(jobs)).empty


def test_busy_and_native_input_rows_are_not_paired():
    through, native = PAIRS[0]
    assert front_end_costs(*crafted([job(through, 12.0), job(native, 10.0, busy=True)])).empty
    native_input = {"input": "native"}
    assert front_end_costs(*crafted([job(through, 12.0, **native_input), job(native, 10.0, **native_input)])).empty


def test_the_interval_is_the_rankings_bootstrap_paired_by_round_where_the_two_took_turns():
    through, native = PAIRS[0]
    summary, steps = crafted([job(through, 12.0), job(native, 10.0)])
    sides = [[group["step_ms"].to_numpy(float) for _, group in steps[steps["framework"].eq(label.split(":")[0]) &
                                                                        steps["variant"].eq(label.split(":")[1])]
              .sort_values("window").groupby("repeat")] for label in (through, native)]
    for interleave, paired in (("jobs", True), (None, False)):
        (row,) = front_end_costs(summary, steps, interleave=interleave).to_dict("records")
        _, low, high = ratio_interval(*sides, np.random.default_rng(SEED), paired=paired)
        assert (row["cost_low"], row["cost_high"]) == (low, high), interleave


def test_too_few_windows_give_no_interval():
    through, native = PAIRS[0]
    summary, steps = crafted([job(through, 12.0), job(native, 10.0)])
    (row,) = front_end_costs(summary, steps[steps["window"] == 0].iloc[:2]).to_dict("records")
    assert row["verdict"] == "undecided" and np.isnan(row["cost_low"])


# --- The report -----------------------------------------------------------------------------------


def test_the_report_shows_the_cost_its_csv_and_one_sentence_in_the_answer(tmp_path):
    through, native = PAIRS[0]
    framework, variant = through.split(":")
    run = tmp_path / "run"
    crafted([job(through, 12.0, jit_compile=False), job(native, 10.0),
             job(native, 10.0, batch_size=32), job(through, 12.0, batch_size=32, busy=True)], run)
    text = write_report(run).read_text()
    name = front_end(framework, variant)
    title = f"## What {name[:1].upper() + name[1:]} costs"
    assert title in text
    table = pd.read_csv(run / CSV)
    assert list(zip(table["job"], table["native"], table["batch_size"])) == [(through, native, 128)]
    answer = text[:text.index("## Run")]
    (sentence,) = [line for line in answer.splitlines() if " costs " in line]
    cost = table["cost"].iloc[0]
    assert sentence.startswith(f"- {name[:1].upper() + name[1:]} costs {cost:.2f}x "
                               f"({table['cost_low'].iloc[0]:.2f}-{table['cost_high'].iloc[0]:.2f}) on "
                               f"{native.split(':')[0]} against {native} ({through}"), sentence
    assert "jit_compile=False" in sentence
    assert ("own default" in sentence) == front_end_default(framework, variant)
    section = text[text.index(title):].split("\n## ")[0]
    assert through in section and native in section and "cost_low" in section


def test_every_number_of_the_section_is_in_its_csv_under_its_column_name(tmp_path):
    run = tmp_path / "run"
    crafted([spec for index, (through, native) in enumerate(PAIRS)
             for spec in (job(through, 12.0 + index, compile_s=2.0 + index / 3, peak_rss_mb=2345.6 + index),
                          job(native, 10.0 + index, compile_s=0.7 + index / 7))], run)
    text = write_report(run).read_text()
    section = text[text.index("## What "):].split("\n## ")[0]
    (table,) = markdown_tables(section)
    written = pd.read_csv(run / CSV)
    checked = 0
    for column in table.columns:
        for cell in table[column]:
            if NUMBER.fullmatch(cell):
                value = float(cell.replace(",", ""))
                assert ((written[column] - value).abs() <= half_unit(cell) * (1 + 1e-9)).any(), (column, cell)
                checked += 1
    assert checked >= len(PAIRS) * 10 and {"cost", "cost_low", "native_compile_s", "native_peak_rss_mb"} <= \
        set(table.columns)


def test_a_run_without_a_front_end_pair_has_no_section_csv_or_sentence(tmp_path):
    through, native = PAIRS[0]
    others = [f"{name}:{entry.default_variant}" for name, entry in registry().items()
              if not front_end(name, entry.default_variant)]
    run = tmp_path / "run"
    # a front-end step whose counterpart ran at another batch size: no pair either
    crafted([*(job(label, 10.0 + index) for index, label in enumerate(others)), job(through, 12.0, batch_size=32)],
            run)
    (run / CSV).write_text("left by an earlier rendering\n")
    text = write_report(run).read_text()
    assert " costs " not in text and not (run / CSV).exists()
    assert "## Speed" in text  # the report itself was rendered


def test_a_generated_readme_block_gives_the_runs_sentences_and_table(tmp_path):
    through, native = PAIRS[0]
    (tmp_path / "results").mkdir()
    summary, steps = crafted([job(through, 12.0, jit_compile=False), job(native, 10.0)], tmp_path / "results" / "run")
    page = "<!-- generated: front-end-cost results/run -->\nstale\n<!-- end generated -->\n"
    text, changed = render(page, tmp_path)
    assert changed == ["front-end-cost results/run"]
    body = text.split("-->\n", 1)[1].split("<!-- end generated -->")[0]
    (sentence,) = [line for line in body.splitlines() if line.startswith("- ")]
    assert f"against {native} ({through}" in sentence
    assert front_end_table(front_end_costs(summary, steps, interleave="jobs")) in body


def test_a_generated_block_of_a_run_without_a_pair_is_refused(tmp_path):
    through, native = PAIRS[0]
    (tmp_path / "results").mkdir()
    crafted([job(native, 10.0)], tmp_path / "results" / "run")
    with pytest.raises(ValueError, match="no front-end step"):
        render("<!-- generated: front-end-cost results/run -->\n\n<!-- end generated -->\n", tmp_path)
