"""The float64 reference is itself checked: its gradients against central finite differences,
its training step against PyTorch's SGD formula written out, and its layout against the model
catalogue."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.parity import parity_batches
from frameworks import reference
from frameworks.base import MODELS, TrainConfig, TrainingState, init_params


@pytest.mark.parametrize("model", list(MODELS), ids=str)
def test_gradients_match_central_differences(model):
    params = {name: value.astype(np.float64) for name, value in init_params(model, seed=3).items()}
    images, labels = parity_batches(1)[0]
    images, labels = images[:4], labels[:4]
    _, grads = reference.loss_and_grads(model, params, images, labels)
    rng = np.random.default_rng(0)
    eps = 1e-6
    for name, value in params.items():
        for index in [tuple(rng.integers(0, size) for size in value.shape) for _ in range(3)]:
            plus, minus = dict(params), dict(params)
            plus[name], minus[name] = value.copy(), value.copy()
            plus[name][index] += eps
            minus[name][index] -= eps
            numeric = (reference.loss_and_grads(model, plus, images, labels)[0]
                       - reference.loss_and_grads(model, minus, images, labels)[0]) / (2 * eps)
            assert grads[name][index] == pytest.approx(numeric, rel=1e-5, abs=1e-8), f"{name}{index}"


@pytest.mark.parametrize("model", list(MODELS), ids=str)
def test_gradients_have_the_canonical_names_and_shapes(model):
    images, labels = parity_batches(1)[0]
    _, grads = reference.loss_and_grads(model, init_params(model, seed=3), images, labels)
    assert {name: grad.shape for name, grad in grads.items()} == MODELS[model]
    assert all(grad.dtype == np.float64 and np.count_nonzero(grad) for grad in grads.values())


def test_training_step_is_pytorch_sgd_with_l2_decay_and_the_scheduled_rate():
    config = TrainConfig(learning_rate=0.1, momentum=0.9, weight_decay=0.01, lr_schedule="cosine", total_steps=10)
    params = init_params("lenet", seed=3)
    rng = np.random.default_rng(1)
    momentum = {name: rng.standard_normal(value.shape) for name, value in params.items()}
    images, labels = parity_batches(1)[0]
    loss, after = reference.train_step("lenet", TrainingState(params, momentum, 4), images, labels, config)
    expected_loss, grads = reference.loss_and_grads("lenet", params, images, labels)
    lr = 0.1 * 0.5 * (1 + np.cos(np.pi * 4 / 10))
    assert loss == expected_loss and after.step == 5
    for name, weight in params.items():
        weight = weight.astype(np.float64)
        buffer = 0.9 * momentum[name] + grads[name] + 0.01 * weight
        np.testing.assert_allclose(after.momentum[name], buffer, rtol=1e-12)
        np.testing.assert_allclose(after.params[name], weight - lr * buffer, rtol=1e-12)


def test_max_pool_routes_the_gradient_to_the_first_maximum_as_pytorch_does():
    x = reference.Node(np.array([[[[1.0, 3.0], [3.0, 2.0]]]]))
    out = reference.max_pool2d(x)
    reference.backward(out)
    assert out.value.item() == 3.0
    assert x.grad.tolist() == [[[[0.0, 1.0], [0.0, 0.0]]]]
