"""`python -m report.noise`: on crafted windows with a known process offset and a known dependence
on steal, the table reports the processes' medians, their spread, the window noise and the
correlation, from each job's final attempt only; a folder that is not a run is refused with one line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmarks.harness.results import JOB, SCHEMA, STEPS_COLUMNS
from report.noise import main, noise_table


def crafted_run(run_id: str = "run") -> tuple[pd.DataFrame, pd.DataFrame]:
    """steps and summary tables of two jobs of three processes, 40 windows each. pytorch:eager:
    process r takes 10 + r ms plus 5 ms per unit of steal (steal alternates 0 and 0.2); jax:jit:
    20 ms in every process, noise only from a fixed pattern, steal never measured (None). The
    first pytorch process also left an earlier attempt at 100 ms a step, which a resumed run
    replaced: it must not count."""
    rows = []
    pattern = np.tile([-0.2, 0.2], 20)
    for framework, variant in (("pytorch", "eager"), ("jax", "jit")):
        for repeat in (1, 2, 3):
            for window in range(40):
                steal = 0.2 * (window % 2) if framework == "pytorch" else None
                ms = 10.0 + repeat + 5.0 * steal if framework == "pytorch" else 20.0 + pattern[window]
                rows.append({"run_id": run_id, "job_id": f"lenet-{framework}-{variant}-bs128-r{repeat}",
                             "framework": framework, "variant": variant, "model": "lenet", "device": "cpu",
                             "precision": "fp32", "batch_size": 128, "devices": 1, "repeat": repeat, "attempt": 2,
                             "window": window, "epoch": 0, "first_step": 5 + 20 * window, "steps": 20,
                             "seconds": ms * 20 / 1000, "step_ms": ms, "others_cpu": 0.0, "steal": steal,
                             "load": 0.5})
    rows += [{**rows[0], "window": window, "attempt": 1, "step_ms": 100.0} for window in range(3)]
    steps = pd.DataFrame(rows, columns=STEPS_COLUMNS)
    identity = [column for column in JOB if column in steps]
    summary = (steps[["job_id", "attempt", *identity]].drop_duplicates().sort_values("attempt")  # attempt 2 last
               .assign(tuning="stock", nodes=1, input="prefetch"))
    return steps, summary


def test_noise_table_separates_processes_windows_and_steal():
    table = noise_table(*crafted_run()).set_index("job")
    eager, jit = table.loc["pytorch:eager"], table.loc["jax:jit"]
    assert eager["processes"] == 3 and eager["windows"] == 120
    assert eager["process_ms"] == "11.50, 12.50, 13.50"  # medians of 10 + r + {0, 1}
    assert eager["spread"] == pytest.approx(2 / 12.5)
    assert eager["window_cv"] == pytest.approx(np.std([12.0, 13.0] * 20, ddof=1) / 12.5)
    assert eager["steal_corr"] > 0.4 and eager["stolen"] == pytest.approx(0.5)
    assert np.isnan(eager["others_corr"])  # others_cpu is constant: nothing to correlate with
    assert jit["spread"] == 0.0
    assert jit["window_cv"] == pytest.approx(np.std(20.0 + np.tile([-0.2, 0.2], 20), ddof=1) / 20)
    assert np.isnan(jit["steal_corr"]) and np.isnan(jit["stolen"])  # steal not measured: no figure, not zero noise
    # pytorch's processes are 1 ms apart in every round: no reshuffle within rounds spreads them as far.
    assert eager["process_p"] == pytest.approx(1 / 2001)
    assert jit["process_p"] == 1.0  # identical processes: every reshuffle is as far apart (not at all)


def test_process_p_is_large_when_processes_differ_only_by_chance():
    steps, summary = crafted_run()
    rng = np.random.default_rng(3)
    eager = steps["framework"] == "pytorch"
    steps.loc[eager, "step_ms"] = 12.0 * np.exp(0.1 * rng.standard_normal(eager.sum()))
    assert noise_table(steps, summary).set_index("job").loc["pytorch:eager", "process_p"] > 0.05


def test_noise_command_prints_one_row_per_job_and_run(tmp_path, capsys):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        steps, summary = crafted_run(name)
        steps.to_csv(tmp_path / name / "steps.csv", index=False)
        summary.to_csv(tmp_path / name / "summary.csv", index=False)
        (tmp_path / name / "env.json").write_text(json.dumps({"schema": SCHEMA}))
    assert main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "|" in line][2:]
    assert sorted((line.split("|")[1].strip(), line.split("|")[2].strip()) for line in lines) == [
        ("a", "jax:jit"), ("a", "pytorch:eager"), ("b", "jax:jit"), ("b", "pytorch:eager")]


def test_noise_command_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path)])
    assert exit_info.value.code == 2
    assert "holds no summary.csv: not a run folder" in capsys.readouterr().err
