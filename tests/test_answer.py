"""The report's first screen, on a crafted run folder (no framework runs): within its first 25
lines, per model and batch size, each framework's fastest variant, its speed and its step-time ratio
to the fastest framework with its interval, "tied" where the interval covers 1, and "undecided"
where too few timed windows give no interval; a busy or failed row is never the answer, and a
framework measured only on a busy machine is named as not compared."""

from __future__ import annotations

import io
import itertools
import json
import re

import numpy as np
import pandas as pd
import pytest

from benchmarks.harness.results import SCHEMA, STEPS_COLUMNS, SUMMARY_COLUMNS
from report.render import write_report

FIRST_SCREEN = 25
NOT_INSTALLED = "cannot import absent: No module named 'absent'"

# (model, batch size) -> framework:variant -> (median step ms, processes, windows per process, busy)
RUN = {
    ("lenet", 32): {"pytorch:eager": (10.0, 3, 20, False), "pytorch:compile": (13.0, 3, 20, False),
                    "tensorflow:function": (10.1, 3, 20, False), "tensorflow:eager": (40.0, 3, 20, False),
                    "jax:jit": (15.0, 3, 20, False), "tensorflow:xla": (5.0, 3, 20, True)},  # busy: never the answer
    ("lenet", 128): {"pytorch:eager": (30.0, 3, 20, False), "tensorflow:function": (45.0, 3, 20, False),
                     "jax:jit": (20.0, 3, 20, False), "standin:numpy": (5.0, 3, 20, True)},  # busy: not compared
    ("resnet9", 64): {"pytorch:eager": (2430.0, 1, 1, False), "tensorflow:fit": (2455.0, 1, 1, False),
                      "jax:jit": (2480.0, 1, 1, False)},  # one window each: no interval, no claim
}
# What the first screen must say: per model and batch size, framework -> (variant, verdict)
ANSWER = {
    ("lenet", 32): {"pytorch": ("eager", "fastest"), "tensorflow": ("function", "tied"), "jax": ("jit", "slower")},
    ("lenet", 128): {"jax": ("jit", "fastest"), "pytorch": ("eager", "slower"), "tensorflow": ("function", "slower")},
    ("resnet9", 64): {"pytorch": ("eager", "fastest"), "tensorflow": ("fit", "undecided"),
                      "jax": ("jit", "undecided")},
}


def crafted_run(folder):
    """summary.csv, steps.csv and env.json of RUN, windows scattering 1% around each process's median,
    the processes 1% apart; plus one failed job, faster than any, that timed nothing."""
    rng = np.random.default_rng(0)
    summary, steps = [], []
    for (model, batch), jobs in RUN.items():
        for job, (ms, processes, count, busy) in jobs.items():
            framework, variant = job.split(":")
            for repeat in range(1, processes + 1):
                process_ms = ms * (1 + 0.01 * (repeat - 2))
                windows = process_ms * (1 + 0.01 * rng.standard_normal(count))
                identity = {"run_id": "crafted", "job_id": f"{model}-{framework}-{variant}-bs{batch}-r{repeat}",
                            "framework": framework, "variant": variant, "tuning": "tuned", "model": model,
                            "device": "cpu", "precision": "fp32", "batch_size": batch, "devices": 1,
                            "repeat": repeat, "attempt": 1}
                p5, q1, median, q3, p95 = np.percentile(windows, [5, 25, 50, 75, 95])
                summary.append({**identity, "status": "ok", "windows": count, "step_ms_median": median,
                                "step_ms_q1": q1, "step_ms_q3": q3, "step_ms_iqr": q3 - q1, "step_ms_p5": p5,
                                "step_ms_p95": p95, "images_per_s": batch / median * 1000, "compile_s": 1.0,
                                "recompiles": 0, "baseline_rss_mb": 500.0, "peak_rss_mb": 2000.0, "busy": busy,
                                "contention": 0.5 if busy else 1e-11, "data": "synthetic", "augment": "none",
                                "input": "prefetch", "threads": 2})
                steps += [{**identity, "window": i, "steps": 10, "step_ms": value} for i, value in enumerate(windows)]
    summary.append({**summary[0], "job_id": "lenet-jax-jit-bs32-failed", "framework": "jax", "variant": "jit",
                    "status": "failed", "windows": 0, "step_ms_median": 1.0, "error": "crashed"})
    for (model, batch), variant in itertools.product(RUN, ("eager", "graph")):  # a framework not installed
        summary.append({"run_id": "crafted", "job_id": f"{model}-absent-{variant}-bs{batch}", "framework": "absent",
                        "variant": variant, "tuning": "tuned", "model": model, "device": "cpu", "precision": "fp32",
                        "batch_size": batch, "devices": 1, "repeat": 1, "attempt": 1, "status": "unavailable",
                        "error": NOT_INSTALLED, "data": "synthetic", "augment": "none", "input": "prefetch",
                        "threads": 2})
    folder.mkdir()
    pd.DataFrame(summary, columns=SUMMARY_COLUMNS).to_csv(folder / "summary.csv", index=False)
    pd.DataFrame(steps, columns=STEPS_COLUMNS).to_csv(folder / "steps.csv", index=False)
    (folder / "env.json").write_text(json.dumps({"schema": SCHEMA, "cpu": "Crafted CPU", "usable_cores": 2,
                                                 "cpu_features": None, "interleave": "jobs", "data": "synthetic"}))
    return folder


def first_screen_table(lines: list[str]) -> pd.DataFrame:
    """The first Markdown table among `lines`, as a DataFrame of its cells (text)."""
    start = next(index for index, line in enumerate(lines) if line.startswith("|"))
    rows = [line for line in lines[start:] if line.startswith("|")]
    rows = [rows[0], *rows[2:]]  # without the alignment row
    text = "\n".join(row.strip().strip("|") for row in rows)
    table = pd.read_csv(io.StringIO(text), sep="|", dtype=str, keep_default_na=False)
    return table.rename(columns=str.strip).apply(lambda column: column.str.strip())


@pytest.fixture(scope="module")
def report_lines(tmp_path_factory) -> list[str]:
    return write_report(crafted_run(tmp_path_factory.mktemp("run") / "crafted")).read_text().splitlines()


def test_the_first_screen_names_each_frameworks_best_variant_and_its_ratio(report_lines):
    table = first_screen_table(report_lines[:FIRST_SCREEN])
    assert len(table) == sum(len(frameworks) for frameworks in ANSWER.values()), "every row on the first screen"
    for (model, batch), frameworks in ANSWER.items():
        rows = table[(table["model"] == model) & (table["batch_size"] == str(batch))].set_index("framework")
        assert {framework: (row["variant"], row["verdict"]) for framework, row in rows.iterrows()} == frameworks
        for framework, (_, verdict) in frameworks.items():
            row = rows.loc[framework]
            if verdict == "fastest":
                assert float(row["ratio"]) == 1 and row["ratio_low"] == row["ratio_high"] == ""
            elif verdict == "undecided":
                assert float(row["ratio"]) > 1 and row["ratio_low"] == row["ratio_high"] == ""
            else:
                low, high = float(row["ratio_low"]), float(row["ratio_high"])
                assert low <= float(row["ratio"]) <= high
                assert (low <= 1 <= high) == (verdict == "tied")


def test_the_first_screen_says_each_answer_in_one_sentence(report_lines):
    screen = "\n".join(report_lines[:FIRST_SCREEN])
    sentences = [line for line in report_lines[:FIRST_SCREEN] if line.startswith("- ")]
    assert len(sentences) == len(ANSWER)
    lenet32, lenet128, resnet9 = sentences
    assert lenet32.startswith("- lenet, batch 32: **pytorch** is fastest (eager, ")
    assert "tensorflow (function) tied with it (1.01x, " in lenet32
    assert lenet128.startswith("- lenet, batch 128: **jax** is fastest (jit, ")
    assert "pytorch (eager) 1.49x (" in lenet128
    assert lenet128.endswith(f" Not compared: standin (measured on a busy machine), absent ({NOT_INSTALLED}).")
    assert resnet9.startswith("- resnet9, batch 64: **pytorch** is fastest (eager, ")
    for framework in ("tensorflow (fit)", "jax (jit)"):  # one window each: no interval, no difference claimed
        assert re.search(rf"{re.escape(framework)} 1\.0\dx, undecided: too few timed windows for an interval", resnet9)
    assert "2.43e+03" not in screen and "e-1" not in screen, "plain numbers, never scientific notation"


def test_one_ratio_convention_is_stated_once_and_used_throughout(report_lines):
    report = "\n".join(report_lines)
    assert "vs_fastest" not in report
    assert report.count("`ratio`: a row's median step time over the fastest's") == 1
    assert report.index("`ratio`: a row's median step time") < report.index("| model")


def test_the_busy_row_is_listed_but_never_compared(report_lines):
    ranking = first_screen_table(report_lines[report_lines.index("## Speed, ranked by throughput"):])
    busy = ranking.set_index("job").loc["lenet tensorflow:xla (busy)"]
    assert busy["ratio"] == busy["verdict"] == "" and busy["contention"] == "0.5"
    assert ranking.loc[ranking["job"] == "lenet pytorch:eager", "contention"].eq("0").all()  # 1e-11, not 1e-11


def test_a_framework_that_is_not_installed_is_one_line_not_a_row_per_job(report_lines):
    report = "\n".join(report_lines)
    assert f"- absent, 6 jobs: {NOT_INSTALLED}" in report
    assert "| lenet absent:" not in report and report.count(NOT_INSTALLED) == 1 + len(RUN)  # and once per answer
    assert "| jax:jit " in report[report.index("## Failed"):], "other failures keep their rows"

