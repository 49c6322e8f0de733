"""`benchmarks.canary`'s statistics on crafted round times: a step that follows the machine's
speed is told from one that scatters on its own."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.canary import WINDOW, parse, window_stats

ROUNDS = 50 * WINDOW


def machine_speed(rng) -> np.ndarray:
    """A slowly wandering slowdown factor around 1, like a shared host's (about 10% window to window)."""
    return np.repeat(1 + 0.1 * rng.standard_normal(ROUNDS // 100), 100)


def canaries(speed, rng) -> dict[str, np.ndarray]:
    return {name: base * speed * (1 + 0.01 * rng.standard_normal(ROUNDS))
            for name, base in (("python", 4.0), ("matmul", 3.0), ("memcopy", 2.0))}


def test_a_step_that_follows_the_machine_correlates_and_leaves_little_noise():
    rng = np.random.default_rng(0)
    speed = machine_speed(rng)
    stats, left = window_stats({"step": 15.0 * speed * (1 + 0.01 * rng.standard_normal(ROUNDS)),
                                **canaries(speed, rng)})
    assert stats["step"]["window_cv"] > 0.05
    assert stats["step"]["median_ms"] == pytest.approx(15.0, rel=0.1)
    assert all(stats[name]["corr_with_step"] > 0.95 for name in ("python", "matmul", "memcopy"))
    assert left < 0.01


def test_a_step_with_noise_of_its_own_keeps_it():
    rng = np.random.default_rng(1)
    speed = machine_speed(rng)
    own = np.repeat(1 + 0.1 * rng.standard_normal(ROUNDS // 100), 100)  # independent of the machine
    stats, left = window_stats({"step": 15.0 * own, **canaries(speed, rng)})
    assert all(abs(stats[name]["corr_with_step"]) < 0.6 for name in ("python", "matmul", "memcopy"))
    assert left > stats["step"]["window_cv"] * 0.9


def test_too_few_steps_is_one_clear_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(["pytorch", "10"])
    assert exit_info.value.code == 2
    assert "at least 60" in capsys.readouterr().err
