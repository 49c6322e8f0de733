"""The report's findings on crafted tables: the fastest variant, ties and losers decided by the
bootstrap interval, the repeats resampled as processes, compile pay-off, memory order, parity and
accuracy agreement."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from report.findings import (
    accuracy_findings,
    break_even_steps,
    compile_findings,
    findings_section,
    job_key,
    memory_findings,
    parity_finding,
    ratio_interval,
    speed_findings,
    took_turns,
    tuning_gains,
)
from report.predictions import evaluated_images
from report.sections import settings_section

NO_EPOCHS = pd.DataFrame(columns=["run_id", "test_accuracy"])


def run_tables(jobs: list[dict], batch_size: int = 128) -> tuple[pd.DataFrame, pd.DataFrame]:
    """summary and steps tables for jobs given as framework, variant, one window array per process,
    and optionally tuning, settings, compile_s, peak_rss_mb, peak_device_mb, test_accuracy, busy."""
    summary, steps = [], []
    for job in jobs:
        for repeat, windows in enumerate(job["processes"], start=1):
            job_id = f"{job['framework']}-{job['variant']}-{job.get('tuning', 'tuned')}-bs{batch_size}-r{repeat}"
            identity = {"run_id": "run", "job_id": job_id, "framework": job["framework"], "variant": job["variant"],
                        "tuning": job.get("tuning", "tuned"), "model": "lenet", "device": job.get("device", "cpu"),
                        "precision": "fp32",
                        "batch_size": batch_size, "devices": 1, "repeat": repeat, "attempt": 1}
            summary.append({**identity, "nodes": 1, "input": "prefetch", "status": "ok", "windows": len(windows),
                            "settings": job.get("settings", ""),
                            "step_ms_median": float(np.median(windows)), "compile_s": job.get("compile_s", 1.0),
                            "peak_rss_mb": job.get("peak_rss_mb", 1000.0), "peak_device_mb": job.get("peak_device_mb"),
                            "test_accuracy": job.get("test_accuracy"), "busy": job.get("busy", False)})
            steps += [{**identity, "window": window, "step_ms": ms} for window, ms in enumerate(windows)]
    return pd.DataFrame(summary), pd.DataFrame(steps)


def windows(median: float, noise: float, seed: int, count: int = 50) -> np.ndarray:
    return median + noise * np.random.default_rng(seed).standard_normal(count)


def comparison(sentence: str, label: str) -> tuple[float, float, float, bool]:
    """ratio, low, high and the tie mark of `label` in a speed finding."""
    found = re.search(rf"{re.escape(label)} ([\d.]+)x \(([\d.]+)-([\d.]+)(, tied)?\)", sentence)
    assert found, sentence
    return float(found[1]), float(found[2]), float(found[3]), bool(found[4])


# --- Speed --------------------------------------------------------------------------------------


def test_the_fastest_is_named_and_a_clear_loser_has_its_ratio_and_an_interval_above_one():
    summary, steps = run_tables([
        {"framework": "jax", "variant": "jit", "processes": [windows(15.0, 0.3, seed=1)]},
        {"framework": "pytorch", "variant": "eager", "processes": [windows(10.0, 0.2, seed=2)]},
    ])
    (sentence,) = speed_findings(summary, steps)
    assert sentence.startswith("lenet, batch 128: **pytorch:eager** is fastest (")
    ratio, low, high, tied = comparison(sentence, "jax:jit")
    assert ratio == pytest.approx(1.5, abs=0.02) and 1 < low < ratio < high
    assert not tied


def test_a_run_of_both_profiles_never_compares_a_stock_row_with_a_tuned_one():
    summary, steps = run_tables([
        {"framework": "pytorch", "variant": "eager", "tuning": "stock", "processes": [windows(10.0, 0.1, seed=1)]},
        {"framework": "pytorch", "variant": "eager", "tuning": "tuned", "processes": [windows(8.0, 0.1, seed=2)],
         "settings": "GLIBC_TUNABLES=glibc.malloc.hugetlb=1"},
        {"framework": "jax", "variant": "jit", "tuning": "stock", "processes": [windows(15.0, 0.1, seed=3)]},
        {"framework": "jax", "variant": "jit", "tuning": "tuned", "processes": [windows(12.0, 0.1, seed=4)]},
    ])
    stock, tuned = speed_findings(summary, steps)
    assert stock.startswith("lenet, batch 128, stock: **pytorch:eager** is fastest (")
    assert tuned.startswith("lenet, batch 128, tuned: **pytorch:eager** is fastest (")
    assert comparison(stock, "jax:jit")[0] == pytest.approx(1.5, abs=0.02)  # 15 / 10, not 15 / 8
    assert comparison(tuned, "jax:jit")[0] == pytest.approx(1.5, abs=0.02)  # 12 / 8, not 12 / 10
    for sentence in findings_section(summary, steps, NO_EPOCHS, {"run": None}).splitlines()[2:]:
        assert not ("stock" in sentence and "tuned" in sentence), sentence
    gains = tuning_gains(summary, steps).set_index("job")
    assert gains.loc["pytorch:eager", "gain"] == pytest.approx(1.25, abs=0.02)
    assert gains.loc["jax:jit", "gain"] == pytest.approx(1.25, abs=0.02)
    assert gains.loc["pytorch:eager", "tuned settings"] == "GLIBC_TUNABLES=glibc.malloc.hugetlb=1"
    assert gains["verdict"].eq("tuned faster").all() and (gains["gain_low"] > 1).all()


def test_the_settings_section_lists_each_variant_under_each_profile():
    summary, _ = run_tables([
        {"framework": "pytorch", "variant": "eager", "tuning": tuning, "processes": [windows(10.0, 0.1, seed=1)],
         "settings": settings}
        for tuning, settings in [("stock", ""), ("tuned", "GLIBC_TUNABLES=glibc.malloc.hugetlb=1")]])
    section = settings_section(summary.assign(settings_not_applied=""))
    assert "| pytorch:eager | stock     | none " in section
    assert "| pytorch:eager | tuned     | GLIBC_TUNABLES=glibc.malloc.hugetlb=1 " in section


def test_two_variants_drawn_from_the_same_distribution_are_tied():
    summary, steps = run_tables([
        {"framework": "pytorch", "variant": "eager", "processes": [windows(10.0, 0.5, seed=3)]},
        {"framework": "tensorflow", "variant": "function", "processes": [windows(10.0, 0.5, seed=4)]},
    ])
    (sentence,) = speed_findings(summary, steps)
    other = "tensorflow:function" if "**pytorch:eager**" in sentence else "pytorch:eager"
    ratio, low, high, tied = comparison(sentence, other)
    assert low <= 1 <= high and tied


def test_a_busy_row_is_not_compared():
    summary, steps = run_tables([
        {"framework": "pytorch", "variant": "eager", "processes": [np.full(10, 10.0)]},
        {"framework": "jax", "variant": "jit", "processes": [np.full(10, 5.0)], "busy": True},
    ])
    assert speed_findings(summary, steps) == ["lenet, batch 128: **pytorch:eager** is fastest (12,800 images/s), "
                                              "the only variant measured."]


def test_a_single_process_per_variant_is_said_plainly():
    summary, steps = run_tables([
        {"framework": "pytorch", "variant": "eager", "processes": [windows(10.0, 0.2, seed=7)]},
        {"framework": "jax", "variant": "jit", "processes": [windows(12.0, 0.2, seed=8)]},
    ])
    (sentence,) = speed_findings(summary, steps)
    assert ("(one process each: the intervals cover window-to-window noise only, not process-to-process variation; "
            "rerun with --repeats 3).") in sentence


def test_repeats_are_resampled_as_processes_and_said_so():
    """Three processes that settle at 19.4, 20.4 and 21.8 ms: their spread, not the tight windows
    within each, sets the interval."""
    slow = [windows(ms, 0.05, seed=10 + i) for i, ms in enumerate([19.4, 20.4, 21.8])]
    fast = [windows(19.0, 0.05, seed=20 + i) for i in range(3)]
    summary, steps = run_tables([{"framework": "pytorch", "variant": "eager", "processes": slow},
                                 {"framework": "pytorch", "variant": "compile", "processes": fast}])
    (sentence,) = speed_findings(summary, steps)
    assert "(3 processes each, resampled with their windows: the intervals cover process-to-process variation)" \
        in sentence
    ratio, low, high, _ = comparison(sentence, "pytorch:eager")
    assert ratio == pytest.approx(20.4 / 19.0, abs=0.01)
    assert low < 19.5 / 19.0 and high > 21.7 / 19.0  # windows alone would give a far narrower interval
    _, low_pooled, high_pooled = ratio_interval([np.concatenate(slow)], [np.concatenate(fast)],
                                                np.random.default_rng(0))
    assert high_pooled - low_pooled < (high - low) / 2


def test_one_variant_in_a_single_process_among_repeats_is_named():
    summary, steps = run_tables([
        {"framework": "pytorch", "variant": "eager", "processes": [windows(10.0, 0.2, seed=30 + i) for i in range(3)]},
        {"framework": "jax", "variant": "jit", "processes": [windows(12.0, 0.2, seed=40)]},
    ])
    (sentence,) = speed_findings(summary, steps)
    assert "(jax:jit in one process: intervals involving them cover window-to-window noise only" in sentence


def test_the_intervals_are_reproducible():
    summary, steps = run_tables([
        {"framework": "pytorch", "variant": "eager", "processes": [windows(10.0, 0.5, seed=50)]},
        {"framework": "jax", "variant": "jit", "processes": [windows(11.0, 0.5, seed=51)]},
    ])
    assert speed_findings(summary, steps) == speed_findings(summary, steps)


# --- Compile pay-off ----------------------------------------------------------------------------


def test_compilation_pays_off_after_the_first_step_count_that_beats_eager():
    # 1 s more compilation, 25 ms saved per step: even at 40 steps, then ahead at 41.
    assert break_even_steps(1.25, 9.0, 0.25, 34.0) == 41
    assert 1250 + 41 * 9 < 250 + 41 * 34 and not 1250 + 40 * 9 < 250 + 40 * 34  # in ms
    assert break_even_steps(0.1, 9.0, 0.25, 34.0) == 0  # cheaper to compile and faster: from the start
    assert break_even_steps(13.3, 8.5, 0.0138, 3.95) is None
    assert break_even_steps(1.0, 10.0, 0.1, 10.0) is None


def test_compile_findings_name_the_step_count_and_never():
    summary, steps = run_tables([
        {"framework": "tensorflow", "variant": "eager", "processes": [np.full(10, 34.0)], "compile_s": 0.25},
        {"framework": "tensorflow", "variant": "xla", "processes": [np.full(10, 9.0)], "compile_s": 1.25},
        {"framework": "tensorflow", "variant": "function", "processes": [np.full(10, 9.0)], "compile_s": 0.26},
        {"framework": "pytorch", "variant": "eager", "processes": [np.full(10, 3.95)], "compile_s": 0.0138},
        {"framework": "pytorch", "variant": "compile", "processes": [np.full(10, 8.5)], "compile_s": 13.3},
        {"framework": "jax", "variant": "jit", "processes": [np.full(10, 12.0)], "compile_s": 1.8},
    ])
    (sentence,) = compile_findings(summary)
    assert "tensorflow:xla pays off against tensorflow:eager after 41 steps" in sentence
    assert "tensorflow:function pays off against tensorflow:eager after 1 step (" in sentence  # 10 ms, 25 ms a step
    assert "pytorch:compile never pays off against pytorch:eager: its step (8.5 ms) is not faster" in sentence
    assert "jax" not in sentence  # no eager variant to weigh it against


# --- Memory, parity, accuracy -------------------------------------------------------------------


def test_memory_is_ordered_from_least_to_most():
    summary, _ = run_tables([
        {"framework": "pytorch", "variant": "eager", "processes": [np.ones(3)], "peak_rss_mb": 2000.0},
        {"framework": "jax", "variant": "jit", "processes": [np.ones(3)], "peak_rss_mb": 1700.0},
        {"framework": "tensorflow", "variant": "function", "processes": [np.ones(3)], "peak_rss_mb": 2100.0},
    ])
    assert memory_findings(summary) == ["Memory, lenet, batch 128, peak RSS in MiB from least to most: "
                                        "jax:jit 1,700, pytorch:eager 2,000, tensorflow:function 2,100."]


def test_device_memory_ranks_when_every_variant_reports_it():
    summary, _ = run_tables([
        {"framework": "pytorch", "variant": "eager", "processes": [np.ones(3)], "peak_device_mb": 300.0},
        {"framework": "jax", "variant": "jit", "processes": [np.ones(3)], "peak_device_mb": 500.0},
    ])
    (sentence,) = memory_findings(summary)
    assert "peak device memory in MiB from least to most: pytorch:eager 300, jax:jit 500." in sentence


def parity_rows(passed: bool) -> pd.DataFrame:
    """One asserted comparison of parity.csv that passed or failed."""
    return pd.DataFrame([{"model": "lenet", "precision": "fp32", "pair": "a vs b", "check": "loss",
                          "setting": "", "step": None, "tensor": "loss", "error": 0.0 if passed else 1.0,
                          "tolerance": 1e-4, "asserted": True, "passed": passed, "outlier": False}])


def test_parity_verdicts():
    passed, failed = parity_rows(True), parity_rows(False)
    assert parity_finding({"run": passed}) == "Parity passed (see Parity below)."
    assert parity_finding({"run": None}) == "Parity not checked (see Parity below)."
    assert parity_finding({"run": failed}).startswith("Parity **FAILED** (see Parity below). Speed comparisons")
    assert parity_finding({"cpu": passed, "gpu": None}) == ("Parity passed in run cpu; not checked in run gpu "
                                                            "(see Parity below).")


def test_the_test_set_size_is_read_off_the_accuracies():
    assert evaluated_images(pd.Series([0.4868, 0.5161, 0.4856, 0.5063, 0.4777, 0.516])) == 10_000  # CIFAR-10's
    assert evaluated_images(pd.Series([0.347, 0.5, None])) == 1000
    assert evaluated_images(pd.Series([None], dtype=float)) is None


@pytest.mark.parametrize(("accuracies", "verdict"), [((0.5063, 0.5161), "they agree within the 1.39 points"),
                                                     ((0.4801, 0.5199), "**more than** the 1.39 points")], ids=str)
def test_final_accuracies_agree_within_the_test_sets_sampling_error(accuracies, verdict):
    summary, _ = run_tables([
        {"framework": "pytorch", "variant": "eager", "processes": [np.ones(3)], "test_accuracy": accuracies[0]},
        {"framework": "jax", "variant": "jit", "processes": [np.ones(3)], "test_accuracy": accuracies[1]},
    ])
    epochs = pd.DataFrame({"run_id": "run", "test_accuracy": [0.4868, 0.4777]})
    (sentence,) = accuracy_findings(summary, epochs)
    assert verdict in sentence and "sampling 10,000 test images" in sentence
    assert accuracy_findings(summary.assign(test_accuracy=None), NO_EPOCHS) == []


def test_the_section_opens_with_its_heading_and_lists_every_finding():
    summary, steps = run_tables([
        {"framework": "pytorch", "variant": "eager", "processes": [windows(10.0, 0.2, seed=60)]},
        {"framework": "pytorch", "variant": "compile", "processes": [windows(8.0, 0.2, seed=61)], "compile_s": 5.0},
    ])
    section = findings_section(summary, steps, NO_EPOCHS, {"run": None})
    assert section.startswith("## Findings\n\n- lenet, batch 128: **pytorch:compile** is fastest")
    assert len(section.strip().splitlines()) == 2 + 4  # speed, compile, memory, parity


def test_a_run_without_timed_windows_still_gets_its_ratios():
    summary, steps = run_tables([
        {"framework": "pytorch", "variant": "eager", "processes": [np.full(5, 10.0)]},
        {"framework": "jax", "variant": "jit", "processes": [np.full(5, 15.0)]},
    ])
    (sentence,) = speed_findings(summary, steps.iloc[:0])
    assert "jax:jit 1.50x (no timed windows to resample)" in sentence


def test_a_ratio_without_enough_windows_for_an_interval_says_how_many_there_were():
    summary, steps = run_tables([
        {"framework": "pytorch", "variant": "eager", "processes": [np.full(2, 10.0)]},
        {"framework": "jax", "variant": "jit", "processes": [np.full(3, 15.0)]},
    ])
    (sentence,) = speed_findings(summary, steps)  # the count is the fastest's, as the table gives it
    assert "jax:jit 1.50x (undecided: 2 timed windows, too few for an interval)" in sentence


def test_jobs_that_stopped_at_a_target_are_compared_at_the_last_step_all_of_them_evaluated():
    """A time-to-accuracy run stops each job at its first evaluation above the target: final
    accuracies after 2,000 and 2,500 steps are not the same quantity."""
    summary, _ = run_tables([
        {"framework": "pytorch", "variant": "eager", "processes": [np.ones(3)], "test_accuracy": 0.5054},
        {"framework": "jax", "variant": "jit", "processes": [np.ones(3)], "test_accuracy": 0.5230},
    ])
    pytorch, jax = summary["job_id"]
    epochs = pd.DataFrame({"run_id": "run", "job_id": [pytorch] * 4 + [jax] * 5,
                           "step": [500, 1000, 1500, 2000, 500, 1000, 1500, 2000, 2500],
                           "test_accuracy": [0.40, 0.45, 0.48, 0.5054, 0.39, 0.44, 0.47, 0.4962, 0.5230]})
    (sentence,) = accuracy_findings(summary, epochs)
    assert sentence.startswith("Test accuracy at step 2,000, the last evaluation of every job")
    assert "from 49.62% (jax:jit) to 50.54% (pytorch:eager)" in sentence and "they agree within" in sentence


# --- Pairing windows by round -------------------------------------------------------------------


def rounds_of(shared: float, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Two sides of three processes, 10 and 12 ms a step, over 20 rounds: every window of round k is
    slowed by the same factor exp(shared * z_k) (a slow spell of the machine), plus 2% of its own noise."""
    rng = np.random.default_rng(seed)
    spell = shared * rng.standard_normal(20)
    side = [[ms * np.exp(spell + 0.02 * rng.standard_normal(20)) for _ in range(3)] for ms in (10.0, 12.0)]
    return side[0], side[1]


def test_pairing_by_round_cancels_a_slow_spell_that_fell_on_both_sides():
    processes, baseline = rounds_of(shared=0.2, seed=0)
    ratio, low, high = ratio_interval(processes, baseline, np.random.default_rng(0))
    paired_ratio, paired_low, paired_high = ratio_interval(processes, baseline, np.random.default_rng(0), paired=True)
    assert paired_ratio == ratio  # pairing changes the interval, never the estimate
    assert paired_high - paired_low < (high - low) / 2
    assert paired_low < 10 / 12 < paired_high


def test_pairing_windows_that_share_nothing_leaves_the_interval_as_wide():
    widths = []
    for seed in range(10):
        processes, baseline = rounds_of(shared=0.0, seed=seed)
        _, low, high = ratio_interval(processes, baseline, np.random.default_rng(0))
        _, paired_low, paired_high = ratio_interval(processes, baseline, np.random.default_rng(0), paired=True)
        widths.append((paired_high - paired_low) / (high - low))
    assert np.median(widths) == pytest.approx(1, abs=0.1)


SETTING_KEY = ("lenet", "cpu", 1, 1, "fp32", "stock", 128, "prefetch")


@pytest.mark.parametrize(("interleave", "first", "second", "took"), [
    ("jobs", ("pytorch", "eager"), ("jax", "jit"), True),
    ("repeats", ("pytorch", "eager"), ("jax", "jit"), False),
    (None, ("pytorch", "eager"), ("jax", "jit"), False),
], ids=["jobs interleaved: two variants of a setting took turns", "repeats interleaved: two variants did not",
        "runs merged: nothing took turns"])
def test_which_jobs_took_turns_follows_the_runners_groups(interleave, first, second, took):
    assert took_turns(interleave, job_key(SETTING_KEY, *first), job_key(SETTING_KEY, *second)) is took


@pytest.mark.parametrize("interleave", ["jobs", "repeats"], ids=lambda mode: f"{mode} interleaved")
def test_a_jobs_two_profiles_took_turns_and_a_data_parallel_jobs_variants_did_not(interleave):
    tuned = tuple("tuned" if value == "stock" else value for value in SETTING_KEY)
    assert took_turns(interleave, job_key(SETTING_KEY, "jax", "jit"), job_key(tuned, "jax", "jit"))
    data_parallel = tuple(2 if index == 2 else value for index, value in enumerate(SETTING_KEY))
    assert not took_turns(interleave, job_key(data_parallel, "jax", "jit"), job_key(data_parallel, "pytorch", "eager"))
