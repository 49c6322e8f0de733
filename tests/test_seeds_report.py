"""Time to accuracy across seeds and the convergence verdicts, on synthetic runs: a framework trained differently
(another learning rate) is flagged and only it; identical frameworks are not; seeds that missed the target are kept
and reported; per-image predictions make accuracy comparisons paired; a run written before seeds, test-set sizes and
predictions still renders. The exact tests themselves are checked against known values."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from benchmarks.harness.results import EPOCHS_COLUMNS, SCHEMA, SUMMARY_COLUMNS
from report.__main__ import main as report_main
from report.compare import compare
from report.findings import accuracy_findings, comparisons, target_findings, timed_jobs, window_times
from report.paired import gehan_permutation, holm, mcnemar, paired_t, smallest_permutation_p, t_two_sided
from report.predictions import Predictions, all_predictions, image_count, paired_accuracy, predictions_path, seed_of
from report.readme import render
from report.render import write_report
from report.seeds import (
    analyse,
    bands,
    censored_median,
    method_note,
    processes,
    ranking_sentences,
    time_to_target_markdown,
    verdict_sentences,
)
from tests.conftest import ROOT
from tests.test_findings import run_tables, windows

FRAMEWORKS = {"pytorch": "eager", "tensorflow": "function", "jax": "jit"}
CURVE = [0.35, 0.40, 0.45, 0.50, 0.55, 0.60]  # every framework's accuracy per evaluation, before a seed's luck
EVERY = 500  # steps between evaluations
IMAGES = 2000


def seeds_run(shift: dict[str, float] | None = None, seeds: int = 6, repeats: int = 1, target: float = 0.5,
              luck: list[float] | None = None, saved: bool = True, rng_seed: int = 0):
    """summary, epochs and predictions of a time-to-accuracy run of the three frameworks over `seeds` seeds. A
    seed's luck (`luck`, else drawn) moves every framework's accuracy alike, as the same initial weights and batches
    do; `shift` moves one framework's accuracy at every evaluation (its training differs). Each process stops at the
    first evaluation that reaches `target`. The images each model classifies correctly are drawn from one ranking of
    the images per seed, so two models of a seed disagree on few images, as models trained alike do."""
    rng = np.random.default_rng(rng_seed)
    luck = luck if luck is not None else list(0.012 * rng.standard_normal(seeds))
    labels = rng.integers(0, 10, IMAGES).astype(np.uint8)
    summary, epochs, predictions = [], [], {}
    for seed, offset in enumerate(luck):
        hardness = rng.random(IMAGES)
        for framework, variant in FRAMEWORKS.items():
            for repeat in range(1, repeats + 1):
                job_id = f"lenet-{framework}-{variant}-tuned-bs32-s{seed}-r{repeat}"
                identity = {"run_id": "run", "job_id": job_id, "framework": framework, "variant": variant,
                            "tuning": "tuned", "model": "lenet", "device": "cpu", "precision": "fp32",
                            "batch_size": 32, "devices": 1, "repeat": repeat, "attempt": 1, "seed": seed}
                steps, rows, trained, reached = [], [], 0.0, None
                for k, mean in enumerate(CURVE, start=1):
                    accuracy = mean + offset + (shift or {}).get(framework, 0.0) + 0.002 * rng.standard_normal()
                    correct = hardness + 0.01 * rng.standard_normal(IMAGES) < accuracy
                    guessed = np.where(correct, labels, (labels + 1) % 10).astype(np.uint8)
                    train_s = {"pytorch": 1.0, "tensorflow": 1.5, "jax": 2.0}[framework] * (1 + 0.03 * rng.random())
                    trained += train_s
                    rows.append({**identity, "epoch": k * EVERY / 1563, "step": k * EVERY, "train_loss": 1.0,
                                 "test_loss": 1.0, "test_accuracy": correct.mean(), "train_s": train_s, "eval_s": 0.2,
                                 "test_size": IMAGES, "evaluated": IMAGES})
                    steps.append(guessed)
                    if correct.mean() >= target:
                        reached = (k, trained)
                        break
                epochs += rows
                summary.append({**identity, "nodes": 1, "input": "prefetch", "status": "ok", "windows": 0,
                                "test_accuracy": rows[-1]["test_accuracy"], "target_accuracy": target,
                                "target_reached": reached is not None,
                                "epochs_to_target": rows[-1]["epoch"] if reached else None,
                                "steps_to_target": rows[-1]["step"] if reached else None,
                                "train_s_to_target": reached[1] if reached else None,
                                "train_busy_share_to_target": 0.0, "wall_busy_share_to_target": 0.0})
                if saved:
                    predictions[(job_id, 1)] = Predictions(np.array([row["step"] for row in rows]), np.stack(steps),
                                                           labels)
    return pd.DataFrame(summary), pd.DataFrame(epochs), predictions


def verdicts_of(shift=None, **kwargs) -> pd.DataFrame:
    summary, epochs, predictions = seeds_run(shift, **kwargs)
    return analyse(summary, epochs, predictions).verdicts.set_index("label")


# --- The tests themselves -----------------------------------------------------------------------------------------


def test_the_exact_tests_give_their_textbook_values():
    assert t_two_sided(2.776, 4) == pytest.approx(0.05, abs=1e-4)  # the t table's 97.5% points
    assert t_two_sided(12.706, 1) == pytest.approx(0.05, abs=1e-4)
    assert t_two_sided(2.228, 10) == pytest.approx(0.05, abs=1e-4)
    assert mcnemar(10, 0) == pytest.approx(2 / 2**10) and mcnemar(5, 5) == 1.0
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    apart = gehan_permutation(np.arange(5.0), np.ones(5, bool), np.arange(5.0) + 10, np.ones(5, bool))
    assert apart == pytest.approx(2 / 252) == smallest_permutation_p(5, 5)
    assert gehan_permutation(np.arange(5.0), np.ones(5, bool), np.arange(5.0), np.ones(5, bool)) == 1.0


def test_a_censored_value_counts_as_beyond_every_value_it_passed():
    """A seed stopped at step 3,000 without reaching the target needed more than 3,000 steps: beyond every seed
    that reached it by then, and not known to be beyond one that reached it later."""
    reached = np.array([True] * 5)
    missed = np.array([False] * 5)
    assert gehan_permutation(np.full(5, 3000.0), missed, np.full(5, 2000.0), reached) == pytest.approx(2 / 252)
    assert gehan_permutation(np.full(5, 3000.0), missed, np.full(5, 3500.0), reached) == 1.0
    assert censored_median(np.array([1.0, 2, 3, 9, 9]), np.array([True, True, True, False, False])) == (3.0, True)
    assert censored_median(np.array([1.0, 2, 9, 9, 9]), np.array([True, True, False, False, False])) == (9.0, False)


def test_a_paired_t_test_finds_a_steady_difference_and_states_what_it_could_detect():
    p, detectable = paired_t(np.array([0.011, 0.009, 0.010, 0.012, 0.008]))
    assert p < 0.001 and 0 < detectable < 0.01
    p, _ = paired_t(np.array([0.01, -0.01, 0.005, -0.004, 0.0]))
    assert p > 0.5


# --- (a), (b): the verdicts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("framework", list(FRAMEWORKS), ids=str)
def test_a_framework_trained_differently_is_flagged_and_only_it(framework):
    verdicts = verdicts_of({framework: -0.04})
    flagged = verdicts.index[verdicts["flagged"]].tolist()
    assert flagged == [f"{framework}:{FRAMEWORKS[framework]}"], verdicts


def test_identical_frameworks_are_not_flagged():
    verdicts = verdicts_of()
    assert not verdicts["flagged"].any() and verdicts["p"].gt(0.05).all(), verdicts


def test_the_verdict_names_the_framework_its_p_value_and_what_the_seeds_could_detect():
    summary, epochs, predictions = seeds_run({"jax": -0.04})
    found = analyse(summary, epochs, predictions)
    sentences = verdict_sentences(found.verdicts, found.pairs)
    (flagged,) = [sentence for sentence in sentences if "**" in sentence]
    assert "**jax:jit converges unlike every other framework**" in flagged and "Holm-corrected" in flagged
    assert "paired t on 6 seeds" in flagged and "could detect an accuracy difference of" in flagged
    assert found.mcnemar["seed"].nunique() == 6  # each pair McNemar-tested within each seed, once per pair
    assert len(found.mcnemar) == 6 * 3


def test_two_frameworks_that_differ_are_both_named_as_a_pair_that_no_test_can_split():
    summary, epochs, predictions = seeds_run({"jax": -0.04})
    keep = summary["framework"].ne("tensorflow")
    found = analyse(summary[keep], epochs[epochs["framework"].ne("tensorflow")], predictions)
    assert found.verdicts["flagged"].all()
    assert all("no test can say which" in sentence for sentence in verdict_sentences(found.verdicts, found.pairs))


# --- (c): censored seeds ------------------------------------------------------------------------------------------


def test_seeds_that_missed_the_target_are_kept_and_the_median_is_not_reached_where_most_missed():
    luck = [-0.06, -0.03, 0.0, 0.03, 0.06]
    summary, epochs, predictions = seeds_run({"jax": -0.12}, seeds=5, luck=luck)
    found = analyse(summary, epochs, predictions)
    jax = found.table.set_index("label").loc["jax:jit"]
    assert (jax["seeds"], jax["reached"]) == (5, summary[summary["framework"].eq("jax")]["target_reached"].sum())
    assert jax["reached"] < 3 and not jax["median_reached"]
    assert jax["median_steps"] == 6 * EVERY  # the lower bound: its censored seeds stopped at their last evaluation
    shown = time_to_target_markdown(found.table)
    (row,) = [line for line in shown.splitlines() if "jax:jit" in line]
    assert f"{jax['reached']} of 5" in row and "not reached (> 3,000)" in row
    pytorch = found.table.set_index("label").loc["pytorch:eager"]
    assert pytorch["verdict"] == "fastest" and pytorch["reached"] == 5 and pytorch["median_reached"]


def test_repeats_of_a_seed_are_one_value_and_ties_are_called_where_the_interval_covers_one():
    summary, epochs, predictions = seeds_run(repeats=2)
    table = analyse(summary, epochs, predictions).table.set_index("label")
    assert table["seeds"].eq(6).all()  # 12 processes per framework, 6 seeds
    assert table.loc["tensorflow:function", "verdict"] == "slower"  # 1.5 s against 1.0 s an evaluation
    low, high = table.loc["tensorflow:function", ["ratio_low", "ratio_high"]]
    assert low > 1 and np.isfinite(high)
    same = summary.assign(framework=summary["framework"].replace("tensorflow", "pytorch"),
                          variant=summary["variant"].replace("function", "compile"))
    same.loc[same["variant"].eq("compile"), "train_s_to_target"] = same.loc[same["variant"].eq("eager"),
                                                                            "train_s_to_target"].to_numpy()
    moved = epochs.assign(framework=same.set_index("job_id")["framework"].reindex(epochs["job_id"]).to_numpy(),
                          variant=same.set_index("job_id")["variant"].reindex(epochs["job_id"]).to_numpy())
    table = analyse(same, moved, predictions).table.set_index("label")
    assert table.loc[["pytorch:eager", "pytorch:compile"], "verdict"].tolist() in (["fastest", "tied"],
                                                                                   ["tied", "fastest"])


# --- Accuracy on the same images ----------------------------------------------------------------------------------


def test_predictions_pair_the_accuracy_finding_and_without_them_the_bound_is_named():
    summary, epochs, predictions = seeds_run({"jax": -0.04}, seeds=1, target=0.9)
    (paired,) = accuracy_findings(summary, epochs, predictions)
    assert "paired on the same 2,000 test images (seed 0)" in paired and "McNemar p" in paired
    assert "**they differ**" in paired
    (bound,) = accuracy_findings(summary, epochs, {})
    assert "the bound for two independent samples" in bound and "2,000 test images" in bound
    assert "inferred" not in bound  # epochs.csv recorded the count


def test_mcnemar_counts_the_images_one_model_alone_got_right():
    labels = np.array([0, 1, 2, 3, 4], np.uint8)
    first = Predictions(np.array([500]), np.array([[0, 1, 2, 9, 9]], np.uint8), labels)
    second = Predictions(np.array([500]), np.array([[0, 9, 9, 9, 4]], np.uint8), labels)
    result = paired_accuracy(first, second, 500, 500)
    assert (result.only_first, result.only_second, result.first, result.second) == (2, 1, 0.6, 0.4)
    with pytest.raises(ValueError, match="different test images"):
        paired_accuracy(first, Predictions(second.steps, second.predictions, labels[::-1].copy()), 500, 500)


def test_the_test_set_is_read_as_recorded_else_inferred_and_said_so():
    _, epochs, _ = seeds_run(seeds=1)
    recorded = image_count(epochs)
    assert (recorded.size, recorded.evaluated, recorded.recorded) == (IMAGES, IMAGES, True)
    inferred = image_count(epochs.drop(columns=["test_size", "evaluated"]))
    assert inferred.recorded is False and "inferred from the accuracies' denominators" in inferred.note()
    assert seed_of(epochs.drop(columns="seed")).eq(0).all()


def test_compare_pairs_the_accuracy_of_two_runs_on_the_same_images():
    runs = []
    for shift in ({}, {"jax": -0.04}):
        summary, _, predictions = seeds_run(shift, seeds=1, target=0.9)
        summary = summary.assign(windows=5, step_ms_median=10.0, peak_rss_mb=1000.0, peak_device_mb=None, busy=False)
        steps = summary[["job_id", "attempt", "repeat"]].merge(pd.DataFrame({"window": range(5)}), how="cross")
        runs.append((summary, steps.assign(step_ms=10.0), predictions))
    (old, old_steps, old_saved), (new, new_steps, new_saved) = runs
    table = compare(old, new, old_steps, new_steps, IMAGES, predictions=(old_saved, new_saved)).set_index("framework")
    assert table.loc["jax", "accuracy"] == "changed" and table.loc["pytorch", "accuracy"] == "unchanged"
    assert table["accuracy_test"].str.startswith("paired on 2,000 images, McNemar").all()
    unpaired = compare(old, new, old_steps, new_steps, IMAGES).set_index("framework")
    assert unpaired["accuracy_test"].eq("independent-samples bound, 2,000 images").all()


# --- Charts and rendering -----------------------------------------------------------------------------------------


def test_the_chart_bands_span_the_seeds_around_their_median():
    summary, epochs, predictions = seeds_run(seeds=4, target=0.99)
    drawn = bands(epochs, processes(summary, epochs))
    first = drawn[(drawn["label"] == "jax:jit") & (drawn["step"] == EVERY)].iloc[0]
    values = epochs[(epochs["framework"] == "jax") & (epochs["step"] == EVERY)]["test_accuracy"]
    assert (first["low"], first["accuracy"], first["high"], first["seeds"]) == (values.min(), values.median(),
                                                                                values.max(), 4)


def write_folder(folder, summary, epochs, predictions):
    """A run folder of the current layout: tables with their seed and test-set columns, and predictions."""
    folder.mkdir()
    env = json.loads((ROOT / "results" / "time-to-accuracy" / "env.json").read_text())
    (folder / "env.json").write_text(json.dumps({**env, "schema": SCHEMA}))  # its tables are of the current one
    pd.DataFrame(summary).reindex(columns=[*SUMMARY_COLUMNS, "seed"]).to_csv(folder / "summary.csv", index=False)
    epochs.reindex(columns=[*EPOCHS_COLUMNS, "seed", "test_size", "evaluated"]).to_csv(folder / "epochs.csv",
                                                                                       index=False)
    for (job_id, attempt), found in predictions.items():
        path = predictions_path(folder, job_id, attempt)
        path.parent.mkdir(exist_ok=True)
        np.savez(path, steps=found.steps, predictions=found.predictions, labels=found.labels)


def test_a_run_of_several_seeds_renders_its_table_verdicts_and_chart(tmp_path):
    summary, epochs, predictions = seeds_run({"jax": -0.04})
    write_folder(tmp_path / "run", summary, epochs, predictions)
    assert set(all_predictions(tmp_path / "run", summary)) == set(predictions)
    report = write_report(tmp_path / "run").read_text()
    assert "## Time to 50.0% across seeds" in report and "**jax:jit converges unlike every other" in report
    assert "No per-image predictions" not in report and "6 of 6" in report
    assert (tmp_path / "run" / "accuracy_time.png").is_file() and (tmp_path / "run" / "mcnemar.csv").is_file()
    table = pd.read_csv(tmp_path / "run" / "time_to_target_seeds.csv")
    assert table["seeds"].eq(6).all()


def test_a_run_from_before_seeds_test_sizes_and_predictions_still_renders(tmp_path):
    """The committed time-to-accuracy run recorded no seed, no test-set size and no predictions: one seed (0),
    its size read off the accuracies, its accuracies compared by the independent-samples bound, each said."""
    shutil.copytree(ROOT / "results" / "time-to-accuracy", tmp_path / "run")
    report = write_report(tmp_path / "run").read_text()
    section = report[report.index("across seeds"):]
    assert "1 of 1" in section and "undecided: fewer than 3 seeds" in section
    assert "inferred from the accuracies' denominators" in section and "No per-image predictions" in section
    assert "independent-samples bound" in section


def test_the_readme_kind_renders_the_seeds_table_and_verdicts():
    text = "<!-- generated: seeds results/time-to-accuracy -->\nold\n<!-- end generated -->\n"
    rendered, changed = render(text, ROOT)
    assert changed == ["seeds results/time-to-accuracy"]
    assert "| pytorch:eager" in rendered and "converges like" in rendered


def test_a_failed_process_counts_in_no_seed_and_is_said_so():
    summary, epochs, predictions = seeds_run()
    failed = summary["job_id"].eq(summary["job_id"].iloc[0])
    found = analyse(summary.assign(status=summary["status"].mask(failed, "failed")), epochs, predictions)
    assert found.unfinished == 1 and found.table.set_index("label").loc["pytorch:eager", "seeds"] == 5
    assert "1 process(es) that failed or were interrupted" in method_note(found)


def test_the_time_to_target_finding_says_its_medians_pool_seeds():
    summary, _, _ = seeds_run()
    (sentence,) = target_findings(summary.assign(busy=False))
    assert "medians over the processes of 6 seeds" in sentence and "across seeds" in sentence


def test_a_predictions_file_that_is_not_one_stops_the_report_with_one_line(tmp_path, capsys):
    summary, epochs, predictions = seeds_run(seeds=3)
    write_folder(tmp_path / "run", summary, epochs, predictions)
    job_id = summary["job_id"].iloc[0]
    np.savez(predictions_path(tmp_path / "run", job_id, 1), steps=np.arange(3), labels=np.zeros(5))
    assert report_main([str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert f"{job_id}-a1.npz is not a predictions file" in error and "Traceback" not in error


def test_on_one_seed_the_verdict_rests_on_mcnemars_test_of_the_same_images():
    summary, epochs, predictions = seeds_run({"jax": -0.04}, seeds=1)
    found = analyse(summary, epochs, predictions)
    assert found.pairs["accuracy_test"].eq("McNemar on 2,000 images").all()
    assert found.pairs["steps_p"].isna().all()  # one seed a side: no distribution of steps to compare
    assert found.verdicts.set_index("label")["flagged"].to_dict() == {"pytorch:eager": False,
                                                                      "tensorflow:function": False, "jax:jit": True}
    unpaired = analyse(summary, epochs, {})
    assert unpaired.pairs["accuracy_test"].eq("independent-samples bound, 2,000 images").all()


def test_speed_pools_a_jobs_seeds_as_processes_of_their_own():
    """Two seeds of one job, each run once (repeat 1): two processes, never one whose windows are merged."""
    summary, steps = run_tables([
        {"framework": "pytorch", "variant": "eager", "processes": [windows(10.0, 0.2, seed=1),
                                                                   windows(11.0, 0.2, seed=2)]},
        {"framework": "jax", "variant": "jit", "processes": [windows(12.0, 0.2, seed=3), windows(12.5, 0.2, seed=4)]},
    ])
    seeds = summary["job_id"].str.endswith("r2").astype(int)
    summary = summary.assign(seed=seeds, repeat=1)
    steps = steps.assign(seed=steps["job_id"].str.endswith("r2").astype(int), repeat=1)
    compared = comparisons(summary, steps)
    assert compared["processes"].eq(2).all()
    assert all(len(processes) == 2 for processes in window_times(timed_jobs(summary), steps).values())


def test_a_target_no_seed_reached_is_said_not_reached_in_every_cell():
    summary, epochs, predictions = seeds_run(seeds=3, target=0.99)
    found = analyse(summary, epochs, predictions)
    assert found.table["verdict"].eq("not reached").all() and found.table["reached"].eq(0).all()
    shown = time_to_target_markdown(found.table)
    assert "inf" not in shown and "not reached (> 3,000) (not reached)" in shown
    assert ranking_sentences(found.table) == ["lenet, batch 32: no framework reached the target at the median of its "
                                              "seeds."]
