"""The canonical models in float64 NumPy: forward pass, cross-entropy, gradients and PyTorch's SGD
step, written as plainly as possible and sharing no code with the three adapters. Parity compares
every framework with it, so the suite measures accuracy (what float32, TF32 or bf16 cost) and not
only agreement between frameworks that could all be wrong the same way.

NumPy rather than PyTorch in float64: PyTorch is one of the frameworks under test, and a reference
built on its convolutions and autograd would share any fault of theirs. Gradients come from a
minimal reverse-mode tape below; `tests/test_reference.py` checks them against finite differences.
Layout is PyTorch's throughout (NCHW activations, OIHW kernels, (out, in) dense weights)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from frameworks.base import (
    BATCHNORM_EPSILON,
    BATCHNORM_MOMENTUM,
    MODELS,
    RESNET9_LOGIT_SCALE,
    Params,
    TrainConfig,
    TrainingState,
)

# --- A minimal reverse-mode tape ----------------------------------------------------------------


class Node:
    """A value on the tape, with the nodes it was computed from and its vector-Jacobian product."""

    def __init__(self, value: np.ndarray, parents: Sequence[Node] = (),
                 vjp: Callable[[np.ndarray], Sequence[np.ndarray]] | None = None):
        self.value, self.parents, self.vjp = value, tuple(parents), vjp
        self.grad = None
        self.margin = np.inf  # decisions (ReLU, max-pool): how far the closest one is from flipping


def graph(output: Node) -> list[Node]:
    """Every node `output` depends on, in an order where each comes after its parents."""
    order, seen = [], set()

    def visit(node: Node) -> None:
        if id(node) not in seen:
            seen.add(id(node))
            for parent in node.parents:
                visit(parent)
            order.append(node)

    visit(output)
    return order


def backward(output: Node) -> None:
    """Accumulate d(output)/d(node) into `node.grad` for every node `output` depends on."""
    output.grad = np.ones_like(output.value)
    for node in reversed(graph(output)):
        if node.vjp is None:
            continue
        for parent, grad in zip(node.parents, node.vjp(node.grad)):
            parent.grad = grad if parent.grad is None else parent.grad + grad


# --- Operations ---------------------------------------------------------------------------------


def conv2d(x: Node, weight: Node, bias: Node | None, padding: int = 0) -> Node:
    """Cross-correlation, stride 1, zero padding, as `torch.nn.Conv2d`."""
    kh, kw = weight.value.shape[2:]
    padded = np.pad(x.value, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = sliding_window_view(padded, (kh, kw), axis=(2, 3))  # (n, c, h_out, w_out, kh, kw)
    out = np.einsum("nchwij,ocij->nohw", windows, weight.value, optimize=True)
    if bias is not None:
        out = out + bias.value[None, :, None, None]

    def vjp(grad):
        grad_weight = np.einsum("nohw,nchwij->ocij", grad, windows, optimize=True)
        grad_windows = np.einsum("nohw,ocij->nchwij", grad, weight.value, optimize=True)
        grad_padded = np.zeros_like(padded)
        h_out, w_out = grad.shape[2:]
        for i in range(kh):
            for j in range(kw):
                grad_padded[:, :, i:i + h_out, j:j + w_out] += grad_windows[..., i, j]
        h, w = x.value.shape[2:]
        grad_x = grad_padded[:, :, padding:padding + h, padding:padding + w]
        return (grad_x, grad_weight) + (() if bias is None else (grad.sum(axis=(0, 2, 3)),))

    return Node(out, (x, weight) if bias is None else (x, weight, bias), vjp)


def _relative(value: float, scale: np.ndarray) -> float:
    top = float(np.max(np.abs(scale)))
    return value / top if top else np.inf


def relu(x: Node) -> Node:
    mask = x.value > 0  # the derivative at 0 is 0, as in every framework
    out = Node(np.where(mask, x.value, 0.0), (x,), lambda grad: (grad * mask,))
    out.margin = _relative(float(np.min(np.abs(x.value))), x.value)
    return out


def max_pool2d(x: Node, size: int = 2) -> Node:
    """Non-overlapping `size` x `size` windows (stride = size); the gradient goes to the first
    maximum of each window, as PyTorch routes it."""
    n, c, h, w = x.value.shape
    windows = x.value.reshape(n, c, h // size, size, w // size, size).transpose(0, 1, 2, 4, 3, 5)
    windows = windows.reshape(n, c, h // size, w // size, size * size)
    first_max = windows.argmax(axis=-1)

    def vjp(grad):
        grad_windows = np.zeros_like(windows)
        np.put_along_axis(grad_windows, first_max[..., None], grad[..., None], axis=-1)
        grad_x = grad_windows.reshape(n, c, h // size, w // size, size, size).transpose(0, 1, 2, 4, 3, 5)
        return (grad_x.reshape(n, c, h, w),)

    out = Node(windows.max(axis=-1), (x,), vjp)
    top_two = np.sort(windows, axis=-1)[..., -2:]
    live = top_two[..., 1] > 0  # after a ReLU, an all-zero window passes no gradient whichever input wins
    if live.any():
        out.margin = _relative(float(np.min(np.diff(top_two, axis=-1)[..., 0][live])), x.value)
    return out


def flatten(x: Node) -> Node:
    """(n, c, h, w) -> (n, c*h*w), in PyTorch's (channel, row, column) order."""
    shape = x.value.shape
    return Node(x.value.reshape(shape[0], -1), (x,), lambda grad: (grad.reshape(shape),))


def linear(x: Node, weight: Node, bias: Node | None = None) -> Node:
    if bias is None:
        return Node(x.value @ weight.value.T, (x, weight), lambda grad: (grad @ weight.value, grad.T @ x.value))
    out = x.value @ weight.value.T + bias.value
    return Node(out, (x, weight, bias), lambda grad: (grad @ weight.value, grad.T @ x.value, grad.sum(axis=0)))


def add(a: Node, b: Node) -> Node:
    return Node(a.value + b.value, (a, b), lambda grad: (grad, grad))


def scale(x: Node, factor: float) -> Node:
    return Node(x.value * factor, (x,), lambda grad: (grad * factor,))


def batch_norm(x: Node, weight: Node, bias: Node, running_mean: np.ndarray, running_var: np.ndarray,
               training: bool) -> tuple[Node, tuple[np.ndarray, np.ndarray]]:
    """`torch.nn.BatchNorm2d` on NCHW: in training, normalise by the batch's mean and biased
    variance and move the running statistics towards the batch's mean and *unbiased* variance;
    in evaluation, normalise by the running statistics. Returns the output and the new running
    statistics (unchanged in evaluation)."""
    axes = (0, 2, 3)
    per_channel = lambda v: v[None, :, None, None]  # noqa: E731
    if training:
        count = x.value.size // x.value.shape[1]
        mean, var = x.value.mean(axis=axes), x.value.var(axis=axes)
        running = ((1 - BATCHNORM_MOMENTUM) * running_mean + BATCHNORM_MOMENTUM * mean,
                   (1 - BATCHNORM_MOMENTUM) * running_var + BATCHNORM_MOMENTUM * var * count / (count - 1))
    else:
        mean, var, running = running_mean, running_var, (running_mean, running_var)
    inv_std = 1.0 / np.sqrt(var + BATCHNORM_EPSILON)
    normalized = (x.value - per_channel(mean)) * per_channel(inv_std)
    out = normalized * per_channel(weight.value) + per_channel(bias.value)

    def vjp(grad):
        grad_weight, grad_bias = (grad * normalized).sum(axis=axes), grad.sum(axis=axes)
        if not training:  # statistics are constants
            return grad * per_channel(weight.value * inv_std), grad_weight, grad_bias
        count = x.value.size // x.value.shape[1]
        grad_x = per_channel(weight.value * inv_std / count) * (
            count * grad - per_channel(grad_bias) - normalized * per_channel(grad_weight))
        return grad_x, grad_weight, grad_bias

    return Node(out, (x, weight, bias), vjp), running


def cross_entropy(logits: Node, labels: np.ndarray, label_smoothing: float = 0.0) -> Node:
    """Batch-mean softmax cross-entropy from logits and integer labels, against targets smoothed
    as PyTorch's `label_smoothing` smooths them: (1 - s) on the true class plus s / classes on each."""
    shifted = logits.value - logits.value.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    targets = np.full(log_probs.shape, label_smoothing / log_probs.shape[1])
    targets[np.arange(len(labels)), labels] += 1.0 - label_smoothing
    loss = -(targets * log_probs).sum(axis=1).mean()

    def vjp(grad):
        return (grad * (np.exp(log_probs) - targets) / len(labels),)

    return Node(np.asarray(loss), (logits,), vjp)


# --- Models -------------------------------------------------------------------------------------


class Net:
    """A model's forward pass on the tape: `p` maps canonical names to parameter nodes and buffer
    arrays; in training, BatchNorm's new running statistics collect in `updates`."""

    def __init__(self, p: dict, training: bool):
        self.p, self.training, self.updates = p, training, {}

    def conv_bn(self, prefix: str, x: Node) -> Node:
        p = self.p
        x = conv2d(x, p[f"{prefix}.conv.weight"], None, padding=1)
        x, (mean, var) = batch_norm(x, p[f"{prefix}.bn.weight"], p[f"{prefix}.bn.bias"],
                                    p[f"{prefix}.bn.running_mean"], p[f"{prefix}.bn.running_var"], self.training)
        self.updates.update({f"{prefix}.bn.running_mean": mean, f"{prefix}.bn.running_var": var,
                             f"{prefix}.bn.num_batches_tracked": p[f"{prefix}.bn.num_batches_tracked"] + self.training})
        return relu(x)

    def lenet(self, x: Node) -> Node:
        p = self.p
        x = max_pool2d(relu(conv2d(x, p["conv1.weight"], p["conv1.bias"])))
        x = max_pool2d(relu(conv2d(x, p["conv2.weight"], p["conv2.bias"])))
        x = flatten(x)
        x = relu(linear(x, p["fc1.weight"], p["fc1.bias"]))
        x = relu(linear(x, p["fc2.weight"], p["fc2.bias"]))
        return linear(x, p["fc3.weight"], p["fc3.bias"])

    def resnet9(self, x: Node) -> Node:
        x = self.conv_bn("prep", x)
        x = max_pool2d(self.conv_bn("layer1", x))
        x = add(x, self.conv_bn("res1.b", self.conv_bn("res1.a", x)))
        x = max_pool2d(self.conv_bn("layer2", x))
        x = max_pool2d(self.conv_bn("layer3", x))
        x = add(x, self.conv_bn("res3.b", self.conv_bn("res3.a", x)))
        x = flatten(max_pool2d(x, size=x.value.shape[2]))  # global max-pool
        return scale(linear(x, self.p["fc.weight"]), RESNET9_LOGIT_SCALE)


# --- Forward, gradients and one training step ---------------------------------------------------


def forward_graph(model: str, params: Params, images: np.ndarray,
                  training: bool = False) -> tuple[dict[str, Node], Net, Node]:
    """The forward pass on the tape: the trainable weights' nodes, the network (with its BatchNorm
    updates), and the logits' node. Buffers stay arrays; images come NHWC, as every adapter gets them."""
    spec = MODELS[model]
    nodes = {name: Node(np.asarray(params[name], np.float64)) for name in spec.trainable}
    buffers = {name: np.asarray(params[name], np.float64 if name.endswith("running_mean") or
                                name.endswith("running_var") else np.int64) for name in spec.buffers}
    net = Net({**nodes, **buffers}, training)
    return nodes, net, getattr(net, model)(Node(np.asarray(images, np.float64).transpose(0, 3, 1, 2)))


def logits(model: str, params: Params, images: np.ndarray) -> np.ndarray:
    """Evaluation mode: BatchNorm normalises by its running statistics."""
    return forward_graph(model, params, images, training=False)[2].value


def loss_and_grads(model: str, params: Params, images: np.ndarray, labels: np.ndarray,
                   label_smoothing: float = 0.0) -> tuple[float, Params]:
    """Training mode, as the adapters' `loss_and_grads`."""
    return _loss_grads_buffers(model, params, images, labels, label_smoothing)[:2]


def _loss_grads_buffers(model, params, images, labels, label_smoothing=0.0) -> tuple[float, Params, Params]:
    nodes, net, out = forward_graph(model, params, images, training=True)
    loss = cross_entropy(out, labels, label_smoothing)
    backward(loss)
    return float(loss.value), {name: node.grad for name, node in nodes.items()}, net.updates


def decision_margin(model: str, params: Params, images: np.ndarray) -> float:
    """The smallest relative distance of any ReLU input from 0, or of any max-pool window's
    runner-up from its maximum, on this batch: below float32's resolution (about 1e-7), float32
    rounding may flip that decision and change one unit's gradient."""
    return min(node.margin for node in graph(forward_graph(model, params, images, training=True)[2]))


def train_step(model: str, state: TrainingState, images: np.ndarray, labels: np.ndarray,
               config: TrainConfig) -> tuple[float, TrainingState]:
    """One step of `torch.optim.SGD`: g += wd * w; buf = momentum * buf + g; w -= lr_t * buf, or
    with Nesterov w -= lr_t * (g + momentum * buf); lr_t the schedule's value at the state's step
    count, the loss label-smoothed as configured; BatchNorm buffers as the training-mode forward
    pass left them. Returns float64 arrays."""
    loss, grads, buffers = _loss_grads_buffers(model, state.params, images, labels, config.label_smoothing)
    learning_rate = config.learning_rate_at(state.step)
    params, momentum = dict(buffers), {}
    for name in MODELS[model].trainable:
        weight = np.asarray(state.params[name], np.float64)
        grad = grads[name] + config.weight_decay * weight
        momentum[name] = config.momentum * np.asarray(state.momentum[name], np.float64) + grad
        step = grad + config.momentum * momentum[name] if config.nesterov else momentum[name]
        params[name] = weight - learning_rate * step
    return loss, TrainingState(params, momentum, state.step + 1)
