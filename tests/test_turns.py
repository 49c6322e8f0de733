"""Workers that take turns (`spawn.run_workers`), as the repeats of a job do: one works while
the others wait, the turn passes after every window, and one worker's crash or timeout neither
stops nor loses the others. Workers that time nothing run side by side instead
(`spawn.run_side_by_side`), each on its own cores."""

from __future__ import annotations

import dataclasses
import os

import pytest

from benchmarks.harness.jobs import Data, Job, Placement, Timing
from benchmarks.harness.spawn import run_side_by_side, run_workers
from benchmarks.harness.worker import pin
from tests.conftest import make_job
from tests.faulty_framework import SLOW_STEP_S

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("faulty")]  # every test starts worker processes



def job(variant: str, repeat: int = 1, batch_size: int = 32, placement: Placement = Placement(),
        timing: Timing = Timing(steps=40, warmup_steps=5, window=20)) -> Job:
    # by default 1 compile step, a warm-up window of 5 steps, then 2 timed windows of 20: 3 turns' worth
    return make_job("faulty", variant, batch_size, timing=timing, data=Data(train_size=256, test_size=64),
                    placement=placement, repeat=repeat)


def run(jobs: list[Job], tmp_path, timeout: float = 120.0) -> tuple[list[int], dict[int, dict]]:
    progress, results = [], {}
    run_workers(jobs, [tmp_path / f"{i}.log" for i in range(len(jobs))], timeout,
                lambda index, message: progress.append(index) if message["type"] == "progress" else None,
                results.__setitem__)
    return progress, results


def test_repeats_take_turns_window_by_window(tmp_path):
    progress, results = run([job("ok", repeat) for repeat in (1, 2, 3)], tmp_path)
    assert progress == [0, 1, 2] * 3
    assert [results[i]["status"] for i in range(3)] == ["ok"] * 3
    assert all(results[i]["windows"] == 2 for i in range(3))


def test_a_crash_or_timeout_in_turn_leaves_the_others_running(tmp_path):
    progress, results = run([job("kill"), job("ok"), job("hang")], tmp_path, timeout=10.0)
    assert results[0]["status"] == "error" and "SIGKILL" in results[0]["error"]
    assert results[1]["status"] == "ok" and results[1]["windows"] == 2
    assert results[2]["status"] == "timeout"
    assert progress.count(1) == 3


def test_side_by_side_jobs_overlap_and_a_crash_or_timeout_leaves_the_others_running(tmp_path):
    jobs = [job("kill"), job("ok"), job("hang"), job("ok")]
    ended = []
    run_side_by_side(jobs, [tmp_path / f"{i}.log" for i in range(len(jobs))], 10.0, 2,
                     lambda index, result: ended.append((index, result)))
    results = dict(ended)
    assert results[0]["status"] == "error" and "SIGKILL" in results[0]["error"]
    assert results[1]["status"] == results[3]["status"] == "ok" and results[3]["windows"] == 2
    assert results[2]["status"] == "timeout"
    # two at once: the last job waited for a slot (the first two ended first, in either order: the
    # killed one and the quick one race), then ended while the hanging one still held the other slot
    order = [index for index, _ in ended]
    assert sorted(order[:2]) == [0, 1] and order[2:] == [3, 2]


def test_a_side_by_side_slot_is_refilled_before_the_ended_jobs_result_is_handled(tmp_path):
    """A parity table is compared in the runner's process as its model's last worker ends: the next
    worker must already be running meanwhile, so that no core waits for the comparison."""
    logs = [tmp_path / f"{i}.log" for i in range(3)]
    started_when_handled = {}

    def handled(index: int, result: dict) -> None:
        started_when_handled[index] = [log.exists() for log in logs]

    run_side_by_side([job("ok"), job("ok"), job("ok")], logs, 60.0, 1, handled)
    assert started_when_handled == {0: [True, True, False], 1: [True, True, True], 2: [True, True, True]}


def test_a_side_by_side_job_is_pinned_to_its_own_cores():
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("needs two cores")
    try:
        pin(job("ok", placement=Placement(threads=1, first_core=1)))
        assert os.sched_getaffinity(0) == {cores[1]}
    finally:
        os.sched_setaffinity(0, cores)


def test_turn_groups_gather_a_comparison_or_only_a_jobs_repeats():
    from benchmarks.run import turn_groups
    layouts = {"one device": Placement(), "two devices": Placement(devices=2),
               "two nodes": Placement(nodes=2, coordinator="10.0.0.1:29500")}
    plan = {name: [job(variant, repeat, batch_size, placement) for variant in ("ok", "slow")
                   for batch_size in (32, 64) for repeat in (1, 2)] for name, placement in layouts.items()}
    by_jobs = turn_groups(plan["one device"], "jobs")
    assert [[(j.what.variant, j.what.batch_size, j.repeat) for j in group] for group in by_jobs] == [
        [("ok", 32, 1), ("ok", 32, 2), ("slow", 32, 1), ("slow", 32, 2)],
        [("ok", 64, 1), ("ok", 64, 2), ("slow", 64, 1), ("slow", 64, 2)]]
    assert [[(j.what.variant, j.what.batch_size) for j in group]
            for group in turn_groups(plan["one device"], "repeats")] == [
        [("ok", 32)] * 2, [("ok", 64)] * 2, [("slow", 32)] * 2, [("slow", 64)] * 2]
    # Both tuning profiles of a job take turns with it: in the comparison, or beside its repeats.
    profiles = [dataclasses.replace(j, what=dataclasses.replace(j.what, tuning=profile))
                for j in plan["one device"] for profile in ("stock", "tuned")]
    assert [len(group) for group in turn_groups(profiles, "jobs")] == [8, 8]
    by_repeats = turn_groups(profiles, "repeats")
    assert [sorted({(j.what.variant, j.what.batch_size) for j in group}) for group in by_repeats] == [
        [("ok", 32)], [("ok", 64)], [("slow", 32)], [("slow", 64)]]
    assert {j.what.tuning for group in turn_groups(profiles, "repeats") for j in group} == {"stock", "tuned"}
    # Data-parallel jobs, on one machine or several, take turns with their own repeats only.
    assert len(turn_groups(plan["two devices"], "jobs")) == 4
    assert len(turn_groups(plan["two nodes"], "jobs")) == 4
    # A group larger than the memory holds is cut repeat by repeat into even groups.
    assert [[(j.what.variant, j.repeat) for j in group] for group in turn_groups(plan["one device"], "jobs", 3)] == [
        [("ok", 1), ("slow", 1)], [("ok", 2), ("slow", 2)]] * 2
    seven = [job(f"v{index}", repeat) for index in range(7) for repeat in (1, 2, 3)]
    cut = turn_groups(seven, "jobs", 6)
    assert [len(group) for group in cut] == [6, 5, 5, 5]
    assert [(j.what.variant, j.repeat) for j in cut[0]] == [(f"v{index}", 1) for index in range(6)]
    assert len({id(j) for group in cut for j in group}) == 21  # every job once
    assert turn_groups(seven, "jobs", 21) == turn_groups(seven, "jobs")


def test_epoch_time_leaves_out_the_turns_of_other_jobs(tmp_path):
    # One epoch of 8 steps in windows of 2: the slow job's windows (0.05 s a step) fall between
    # the fast job's, and must not count in the fast job's epoch time.
    epoch = Timing(epochs=1, steps=0, warmup_steps=1, window=2)
    fast, slow = (job(variant, timing=epoch) for variant in ("ok", "slow"))
    _, results = run([fast, slow], tmp_path)
    assert [results[i]["status"] for i in range(2)] == ["ok", "ok"]
    assert results[1]["epoch_s"] > 6 * SLOW_STEP_S  # 7 steps after the first, each sleeping
    assert results[0]["epoch_s"] < results[1]["epoch_s"] / 4


def test_the_report_says_which_processes_took_turns():
    from report.sections import method_section
    assert "Every job of one model and batch size" in method_section({"interleave": "jobs"})
    assert "The repeats of a job ran at once" in method_section({"interleave": "repeats"})
    assert "each run's env.json says which" in method_section({"merged": ["a", "b"]})
