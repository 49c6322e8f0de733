"""Cross-framework parity: every framework and variant, from the same random non-zero weights
and batches, must compute the same logits, loss and gradients, and the same training step from a
common state (weights, momentum buffers, step count) under three optimizer settings (momentum, L2
weight decay, a cosine schedule); and each must match a float64 NumPy reference. Compared in
PyTorch's canonical layout."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pandas as pd
import pytest

from benchmarks.parity import (PARITY_SEED, REFERENCE, TOLERANCES, TRAIN_STEPS, TRAINING_CONFIGS, compare,
                               compute_outputs, failures, key, outliers, reference_outputs, round_trip_state,
                               worst_by_check)
from frameworks.base import MODELS, init_params
from tests.conftest import VARIANTS, require

PAIRS = [pytest.param(a, b, model, id=f"{a}-vs-{b}-{model}")
         for a, b in itertools.combinations(VARIANTS, 2) for model in MODELS]
AGAINST_REFERENCE = [pytest.param(variant, REFERENCE, model, id=f"{variant}-vs-float64-{model}")
                     for variant in VARIANTS for model in MODELS]


@functools.cache
def outputs(variant: str, model: str) -> dict[str, np.ndarray]:
    if variant == REFERENCE:
        return reference_outputs(model)
    framework, name = variant.split(":")
    return compute_outputs(require(framework), model, "cpu", name)


def comparison(a: str, b: str, model: str, *checks: str, setting: str | None = None) -> pd.DataFrame:
    for variant in (a, b):
        if variant != REFERENCE:
            require(variant.split(":")[0])
    table = compare({a: outputs(a, model), b: outputs(b, model)}, model)
    table = table[table["pair"].eq(f"{a} vs {b}") & table["check"].isin(checks)]
    if setting is not None:
        table = table[table["setting"] == setting]
    assert len(table) > 0, "nothing was compared"
    return table


def assert_agree(a: str, b: str, model: str, *checks: str, setting: str | None = None) -> None:
    problems = failures(comparison(a, b, model, *checks, setting=setting))
    assert not problems, "\n".join(problems)


# --- Round trip ---------------------------------------------------------------------------------


@pytest.mark.parametrize("model", list(MODELS), ids=str)
@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_training_state_survives_a_round_trip_exactly(variant, model):
    exported = {parse.split("|")[-1]: value for parse, value in outputs(variant, model).items()
                if parse.startswith("round trip|")}
    given = round_trip_state(model)
    expected = {**given.params, **{f"momentum {name}": value for name, value in given.momentum.items()}}
    assert exported.keys() == {*expected, "step count"}
    for name, value in expected.items():
        assert exported[name].dtype == np.float32 and exported[name].shape == value.shape, name
        assert np.array_equal(exported[name], value), f"{variant}: {name} changed in set_state/get_state"
    assert int(exported["step count"]) == given.step, f"{variant}: step count changed in set_state/get_state"


def test_parity_weights_and_momentum_are_random_not_zero():
    state = round_trip_state("lenet")
    for arrays in (state.params, state.momentum):
        assert all(np.count_nonzero(value) == value.size for value in arrays.values())
    assert state.params.keys() == init_params("lenet", PARITY_SEED).keys() and state.step > 0


# --- Pairs of variants --------------------------------------------------------------------------


@pytest.mark.parametrize("a, b, model", PAIRS)
def test_forward_logits_match(a, b, model):
    assert_agree(a, b, model, "forward")


@pytest.mark.parametrize("a, b, model", PAIRS)
def test_loss_and_gradients_match(a, b, model):
    assert_agree(a, b, model, "loss", "gradients")


@pytest.mark.parametrize("setting", list(TRAINING_CONFIGS), ids=str)
@pytest.mark.parametrize("a, b, model", PAIRS)
def test_each_training_step_from_a_common_state_matches(a, b, model, setting):
    table = comparison(a, b, model, "per-step", "step count", setting=setting)
    assert set(table["step"]) == set(range(TRAIN_STEPS))
    problems = failures(table)
    assert not problems, "\n".join(problems)


# --- Each variant against the float64 reference -------------------------------------------------


@pytest.mark.parametrize("a, b, model", AGAINST_REFERENCE)
def test_forward_loss_and_gradients_match_float64(a, b, model):
    assert_agree(a, b, model, "forward", "loss", "gradients")


@pytest.mark.parametrize("setting", list(TRAINING_CONFIGS), ids=str)
@pytest.mark.parametrize("a, b, model", AGAINST_REFERENCE)
def test_each_training_step_matches_float64(a, b, model, setting):
    assert_agree(a, b, model, "per-step", "step count", setting=setting)


# --- How the table judges -----------------------------------------------------------------------


def _as_variant(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The reference's outputs dressed as a variant's: with an exact round trip."""
    state = round_trip_state("lenet")
    round_trip = {key("round trip", name): value for name, value in state.params.items()}
    round_trip.update({key("round trip", f"momentum {name}"): value for name, value in state.momentum.items()})
    return {**arrays, **round_trip, key("round trip", "step count"): np.int64(state.step)}


def _relative(change: float) -> float:
    """The relative error of x * (1 + change) against x."""
    return change / (1 + change)


def _per_step_table(errors: dict[tuple[int, str], float], margin: float = 1e-8) -> pd.DataFrame:
    """A crafted two-variant comparison: the reference's own outputs, with chosen per-step
    tensors of variant `b` scaled by (1 + change)."""
    reference = reference_outputs("lenet")
    b = dict(reference)
    for (step, tensor), change in errors.items():
        name = key("per-step", tensor, "momentum", step)
        b[name] = reference[name] * (1 + change)
    reference = {**reference, key("margin", "decision", "momentum", 5): np.float64(margin)}
    return compare({"a": _as_variant(reference), "b": _as_variant(b), REFERENCE: reference}, "lenet")


def test_a_single_flipped_decision_is_named_as_an_outlier_not_a_failure():
    table = _per_step_table({(5, "momentum conv1.weight"): 3e-3, (5, "update conv1.weight"): 3e-3})
    assert not failures(table[table["pair"] == "a vs b"])
    [line] = [line for line in outliers(table) if line.startswith("a vs b")]
    assert "step 5" in line and "conv1.weight" in line and f"{_relative(3e-3):.2e}" in line


@pytest.mark.parametrize("errors, margin", [
    ({(5, "momentum conv1.weight"): 3e-3, (9, "momentum fc1.weight"): 3e-3}, 1e-8),  # two steps
    ({(5, "momentum conv1.weight"): 3e-3, (5, "loss"): 1e-3}, 1e-8),  # the loss moved too
    ({(5, "momentum conv1.weight"): 0.2}, 1e-8),  # more than one decision can change
    ({(5, "momentum conv1.weight"): 3e-3}, 1e-3),  # no decision was near a tie at that step
], ids=["two-steps", "loss-differs", "too-large", "no-near-tie"])
def test_per_step_differences_that_are_no_single_flip_fail_and_name_step_and_tensor(errors, margin):
    problems = failures(_per_step_table(errors, margin))
    assert problems
    for (step, tensor), change in errors.items():
        assert any(f"a vs b: per-step [momentum, step {step}] {tensor}: relative error {_relative(change):.2e}" in line
                   and "> tolerance 1e-04" in line for line in problems), problems


def test_free_running_trajectories_report_where_they_part():
    reference = reference_outputs("lenet")
    parted = dict(reference)
    for step in range(12, TRAIN_STEPS):
        name = key("free-running", "loss", "weight decay", step)
        parted[name] = reference[name] * (1 + 1e-3 * (step - 11))
    worst = worst_by_check(compare({"a": _as_variant(reference), "b": _as_variant(parted), REFERENCE: reference},
                                   "lenet"))
    row = worst[(worst["pair"] == "a vs b") & (worst["check"] == "free-running")].iloc[0]
    assert row["parts at step"] == 12 and row["step"] == TRAIN_STEPS - 1
    assert row["error"] == pytest.approx(_relative(8e-3), rel=1e-6) and not row["asserted"]


def test_tolerances_are_the_promised_ones():
    assert TOLERANCES == {"round trip": 0.0, "forward": 1e-5, "loss": 1e-4, "gradients": 1e-4,
                          "per-step": 1e-4, "step count": 0.0, "free-running": 1e-4}
