"""Workers that take turns (`spawn.run_workers`), as the repeats of a job do: one works while
the others wait, the turn passes after every window, and one worker's crash or timeout neither
stops nor loses the others."""

from __future__ import annotations

import pytest

from benchmarks.jobs import Job
from benchmarks.spawn import run_workers
from frameworks import EXTRA_ENV
from tests.faulty_framework import EXTRA_FRAMEWORKS

pytestmark = pytest.mark.slow  # every test here starts worker processes


@pytest.fixture(autouse=True)
def faulty(monkeypatch):
    monkeypatch.setenv(EXTRA_ENV, EXTRA_FRAMEWORKS)


def job(variant: str, repeat: int = 1) -> Job:
    # 1 compile step, a warm-up window of 5 steps, then 2 timed windows of 20: 3 turns' worth
    return Job("benchmark", "faulty", variant, "lenet", "cpu", 32, repeat, 0, 1, "fp32", 0, 40, 5, 20, 0.01, 0.9,
               0.0, "constant", "synthetic", None, 256, 64)


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
