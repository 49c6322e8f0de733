"""The float64 reference is itself checked: its gradients against central finite differences,
its training step against PyTorch's SGD formula written out, and its layout against the model
catalogue."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.checks.definitions import parity_batches
from frameworks import reference
from frameworks.base import MODELS, TrainConfig, TrainingState, init_params, randomize_batchnorm


@pytest.mark.parametrize("model", list(MODELS), ids=str)
def test_gradients_match_central_differences(model):
    """Each tensor's gradient against the loss's central difference along a random direction."""
    params = {name: np.asarray(value, np.float64) if name in MODELS[model].trainable else value
              for name, value in randomize_batchnorm(model, init_params(model, seed=3), seed=4).items()}
    images, labels = parity_batches(1)[0]
    images, labels = images[:2], labels[:2]
    _, grads = reference.loss_and_grads(model, params, images, labels)
    rng = np.random.default_rng(0)
    eps = 1e-7  # larger steps cross ReLU and max-pool kinks in ResNet-9's 10^5 units and bend the difference
    for name in MODELS[model].trainable:
        direction = rng.standard_normal(params[name].shape)
        direction /= np.linalg.norm(direction)
        loss_at = lambda step: reference.loss_and_grads(  # noqa: E731
            model, {**params, name: params[name] + step * direction}, images, labels)[0]
        numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
        assert np.sum(grads[name] * direction) == pytest.approx(numeric, rel=1e-5, abs=1e-9), name


@pytest.mark.parametrize("model", list(MODELS), ids=str)
def test_gradients_have_the_canonical_names_and_shapes(model):
    images, labels = parity_batches(1)[0]
    _, grads = reference.loss_and_grads(model, init_params(model, seed=3), images, labels)
    spec = MODELS[model]
    assert {name: grad.shape for name, grad in grads.items()} == {name: spec.shapes[name] for name in spec.trainable}
    assert all(grad.dtype == np.float64 and np.count_nonzero(grad) for grad in grads.values())


def one_step(config: TrainConfig):
    """LeNet's weights and random momentum buffers at step 4, the reference's step from there under
    `config`, and the loss and gradients that step saw."""
    params = init_params("lenet", seed=3)
    rng = np.random.default_rng(1)
    momentum = {name: rng.standard_normal(value.shape) for name, value in params.items()}
    images, labels = parity_batches(1)[0]
    loss, after = reference.train_step("lenet", TrainingState(params, momentum, 4), images, labels, config)
    return params, momentum, (loss, after), reference.loss_and_grads("lenet", params, images, labels)


def test_training_step_is_pytorch_sgd_with_l2_decay_and_the_scheduled_rate():
    config = TrainConfig(learning_rate=0.1, momentum=0.9, weight_decay=0.01, lr_schedule="cosine", total_steps=10)
    params, momentum, (loss, after), (expected_loss, grads) = one_step(config)
    lr = 0.1 * 0.5 * (1 + np.cos(np.pi * 4 / 10))
    assert loss == expected_loss and after.step == 5
    for name, weight in params.items():
        weight = weight.astype(np.float64)
        buffer = 0.9 * momentum[name] + grads[name] + 0.01 * weight
        np.testing.assert_allclose(after.momentum[name], buffer, rtol=1e-12)
        np.testing.assert_allclose(after.params[name], weight - lr * buffer, rtol=1e-12)


def test_nesterov_step_adds_the_momentum_look_ahead_to_the_gradient():
    config = TrainConfig(learning_rate=0.1, momentum=0.9, weight_decay=0.01, nesterov=True)
    params, momentum, (_, after), (_, grads) = one_step(config)
    for name, weight in params.items():
        grad = grads[name] + 0.01 * weight.astype(np.float64)
        buffer = 0.9 * momentum[name] + grad
        np.testing.assert_allclose(after.momentum[name], buffer, rtol=1e-12)
        np.testing.assert_allclose(after.params[name], weight - 0.1 * (grad + 0.9 * buffer), rtol=1e-12)


def test_label_smoothing_mixes_the_true_class_loss_with_the_mean_over_classes():
    """PyTorch's definition: (1 - s) * cross-entropy + s * mean over classes of -log p; its
    gradient against central differences."""
    logits = np.random.default_rng(0).standard_normal((5, 10))
    labels = np.array([0, 3, 9, 3, 1])
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    plain = -log_probs[np.arange(5), labels].mean()
    expected = 0.8 * plain + 0.2 * (-log_probs.mean(axis=1)).mean()
    node = reference.Node(logits)
    loss = reference.cross_entropy(node, labels, label_smoothing=0.2)
    reference.backward(loss)
    assert float(loss.value) == pytest.approx(expected, rel=1e-14)
    direction = np.random.default_rng(1).standard_normal(logits.shape)
    loss_at = lambda eps: float(  # noqa: E731
        reference.cross_entropy(reference.Node(logits + eps * direction), labels, 0.2).value)
    numeric = (loss_at(1e-6) - loss_at(-1e-6)) / 2e-6
    assert np.sum(node.grad * direction) == pytest.approx(numeric, rel=1e-7)


def test_one_cycle_schedule_rises_linearly_from_zero_to_the_peak_and_falls_to_zero():
    config = TrainConfig(learning_rate=0.4, lr_schedule="onecycle", total_steps=24, warmup_fraction=5 / 24)
    rates = [config.learning_rate_at(step) for step in range(30)]
    assert rates[0] == 0.0 and rates[5] == pytest.approx(0.4) and rates[24:] == [0.0] * 6
    np.testing.assert_allclose(np.diff(rates[:6]), 0.4 / 5)
    np.testing.assert_allclose(np.diff(rates[5:25]), -0.4 / 19)


def test_max_pool_routes_the_gradient_to_the_first_maximum_as_pytorch_does():
    x = reference.Node(np.array([[[[1.0, 3.0], [3.0, 2.0]]]]))
    out = reference.max_pool2d(x)
    reference.backward(out)
    assert out.value.item() == 3.0
    assert x.grad.tolist() == [[[[0.0, 1.0], [0.0, 0.0]]]]
