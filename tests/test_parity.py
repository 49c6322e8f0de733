"""Cross-framework parity: every framework and variant, from the same random non-zero weights
and batches, must compute the same logits, loss, gradients and 20-step training trajectory
(momentum, L2 weight decay and a cosine schedule), compared in PyTorch's canonical layout."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest

from benchmarks.parity import PARITY_SEED, TOLERANCES, TRAINING_CONFIGS, compare, compute_outputs
from frameworks.base import MODELS, init_params
from tests.conftest import VARIANTS, require

PAIRS = [pytest.param(a, b, model, id=f"{a}-vs-{b}-{model}")
         for a, b in itertools.combinations(VARIANTS, 2) for model in MODELS]


@functools.cache
def outputs(variant: str, model: str) -> dict[str, np.ndarray]:
    framework, name = variant.split(":")
    return compute_outputs(require(framework), model, "cpu", name)


def assert_agree(a: str, b: str, model: str, *checks: str, config: str | None = None) -> None:
    require(a.split(":")[0]), require(b.split(":")[0])
    table = compare({a: outputs(a, model), b: outputs(b, model)}, model)
    table = table[table["check"].isin(checks) & ~table["pair"].str.endswith("canonical")]
    if config is not None:
        table = table[table["tensor"].str.startswith(config)]
    assert len(table) > 0, "nothing was compared"
    failures = [f"{row.pair}: {row.check} of {row.tensor} differs by {row.error:.2e} (tolerance {row.tolerance:.0e})"
                for row in table.itertuples() if not row.passed]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("model", list(MODELS), ids=str)
@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_weights_survive_a_round_trip_exactly(variant, model):
    exported = {key.split("/", 1)[1]: value for key, value in outputs(variant, model).items()
                if key.startswith("round trip/")}
    params = init_params(model, PARITY_SEED)
    assert exported.keys() == params.keys()
    for name, value in params.items():
        assert exported[name].dtype == np.float32 and exported[name].shape == value.shape, name
        assert np.array_equal(exported[name], value), f"{variant}: {name} changed in set_params/get_params"


def test_parity_weights_and_inputs_are_random_not_zero():
    params = init_params("lenet", PARITY_SEED)
    assert all(np.count_nonzero(value) == value.size for value in params.values())


@pytest.mark.parametrize("a, b, model", PAIRS)
def test_forward_logits_match(a, b, model):
    assert_agree(a, b, model, "forward")


@pytest.mark.parametrize("a, b, model", PAIRS)
def test_loss_and_gradients_match(a, b, model):
    assert_agree(a, b, model, "loss", "gradients")


@pytest.mark.parametrize("config", list(TRAINING_CONFIGS), ids=str)
@pytest.mark.parametrize("a, b, model", PAIRS)
def test_twenty_training_steps_match(a, b, model, config):
    assert_agree(a, b, model, "training losses", "trained weights", config=config)


def test_tolerances_are_the_promised_ones():
    assert TOLERANCES == {"round trip": 0.0, "forward": 1e-5, "loss": 1e-4, "gradients": 1e-4,
                          "training losses": 1e-4, "trained weights": 1e-4}
