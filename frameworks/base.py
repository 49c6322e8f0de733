"""What the three adapters share: the adapter contract, the training configuration, the model
catalogue with its canonical parameter layout, the canonical training state, and the NumPy-drawn
initial weights."""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import numpy as np

Params = dict[str, np.ndarray]  # canonical layout: PyTorch names and shapes, float32

# --- Models -------------------------------------------------------------------------------------

# Canonical shapes, PyTorch layout: conv kernels OIHW, dense weights (out, in). `fc1`'s 400 inputs
# are ordered as PyTorch flattens an NCHW tensor: (channel, row, column) of a 16x5x5 map.
MODELS: dict[str, dict[str, tuple[int, ...]]] = {
    "lenet": {
        "conv1.weight": (6, 3, 5, 5),
        "conv1.bias": (6,),
        "conv2.weight": (16, 6, 5, 5),
        "conv2.bias": (16,),
        "fc1.weight": (120, 400),
        "fc1.bias": (120,),
        "fc2.weight": (84, 120),
        "fc2.bias": (84,),
        "fc3.weight": (10, 84),
        "fc3.bias": (10,),
    },
}
LENET_FLAT_CHW = (16, 5, 5)  # the feature map `fc1` flattens


def check_model(model: str) -> None:
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r} (choose from: {', '.join(MODELS)})")


def init_params(model: str, seed: int) -> Params:
    """Initial weights drawn once in NumPy, as PyTorch's default initialisers would draw them:
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for every weight and bias of a layer."""
    check_model(model)
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in MODELS[model].items():
        layer = name.rsplit(".", 1)[0]
        fan_in = int(np.prod(MODELS[model][f"{layer}.weight"][1:]))
        bound = 1.0 / math.sqrt(fan_in)
        params[name] = rng.uniform(-bound, bound, size=shape).astype(np.float32)
    return params


# --- Training configuration ---------------------------------------------------------------------

LR_SCHEDULES = ("constant", "cosine")
PRECISIONS = ("fp32", "tf32", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """SGD with momentum in PyTorch's form: buf = momentum * buf + (grad + weight_decay * w);
    w -= lr_t * buf. The same mathematics is spelled out explicitly in every framework."""

    learning_rate: float = 0.01  # per step, on the batch-mean cross-entropy
    momentum: float = 0.9
    weight_decay: float = 0.0  # L2 added to the gradient, not decoupled
    lr_schedule: str = "constant"  # "cosine": lr_t = lr * (1 + cos(pi * t / total_steps)) / 2
    total_steps: int = 1  # length of the cosine schedule, in optimizer steps
    precision: str = "fp32"  # "fp32": TF32 off everywhere; "tf32": allowed on GPU; "bf16": mixed
    # precision, each framework's own way (float32 weights and loss, bfloat16 compute)

    def learning_rate_at(self, step: int) -> float:
        if self.lr_schedule == "constant":
            return self.learning_rate
        progress = min(step, self.total_steps) / self.total_steps
        return self.learning_rate * 0.5 * (1.0 + math.cos(math.pi * progress))


# --- Canonical training state -------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingState:
    """Everything a training step depends on, in canonical layout: the weights, PyTorch's
    `momentum_buffer` of each weight (same name, same layout; zeros before the first step, which
    PyTorch's lazily created buffer equals), and the number of optimizer steps taken (which sets
    the scheduled learning rate). Any framework can continue from any other's exact state."""

    params: Params
    momentum: Params
    step: int

    @classmethod
    def fresh(cls, params: Params) -> TrainingState:
        return cls(params, {name: np.zeros_like(value) for name, value in params.items()}, 0)

    def astype(self, dtype) -> TrainingState:
        cast = lambda arrays: {name: np.asarray(value, dtype) for name, value in arrays.items()}  # noqa: E731
        return TrainingState(cast(self.params), cast(self.momentum), self.step)


# --- The adapter contract -----------------------------------------------------------------------


class DeviceUnavailable(RuntimeError):
    """The framework cannot see the requested device; the job is skipped with this reason."""


class Adapter(abc.ABC):
    """One framework running one model. NumPy arrays at the boundary: images float32 NHWC,
    labels int32. `train_step` queues work and returns the loss without a host sync."""

    framework: str

    def __init__(self, model: str, device: str, variant: str, config: TrainConfig):
        check_model(model)
        self.model_name = model
        self.device = device
        self.variant = variant
        self.config = config

    @abc.abstractmethod
    def set_state(self, state: TrainingState) -> None:
        """Load a canonical training state into the model and the optimizer, in place (a compiled
        step keeps running without retracing)."""

    @abc.abstractmethod
    def get_state(self) -> TrainingState:
        """Export the current weights, momentum buffers and step count in canonical layout."""

    def set_params(self, params: Params) -> None:
        """Load canonical weights and reset the optimizer (zero momentum, step 0)."""
        self.set_state(TrainingState.fresh(params))

    def get_params(self) -> Params:
        return self.get_state().params

    @abc.abstractmethod
    def train_step(self, images: np.ndarray, labels: np.ndarray):
        """One optimizer step; returns the batch loss as a device value (no host sync)."""

    @abc.abstractmethod
    def synchronize(self) -> None:
        """Block until all queued device work is done."""

    @abc.abstractmethod
    def losses_to_numpy(self, losses: list) -> np.ndarray:
        """Fetch the device losses returned by `train_step` to the host."""

    @abc.abstractmethod
    def loss_and_grads(self, images: np.ndarray, labels: np.ndarray) -> tuple[float, Params]:
        """Batch-mean loss and its gradients in canonical layout, without updating anything."""

    @abc.abstractmethod
    def logits(self, images: np.ndarray) -> np.ndarray:
        """Forward pass in evaluation mode."""

    @abc.abstractmethod
    def evaluate(self, images: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
        """Summed cross-entropy and number of correct predictions on a batch."""

    @abc.abstractmethod
    def compile_count(self) -> int:
        """Traces or compilations of the training step so far (to detect retracing)."""

    def peak_device_memory(self) -> int | None:
        """Peak bytes allocated on the device by the framework's own counter; None on CPU."""
        return None

    def applied_threads(self) -> int | None:
        """Intra-op threads the framework actually uses on CPU."""
        return None


# --- Layout conversions shared by the NHWC frameworks -------------------------------------------


def oihw_to_hwio(kernel: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(kernel.transpose(2, 3, 1, 0))


def hwio_to_oihw(kernel: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))


def fc1_to_hwc_in_out(weight: np.ndarray) -> np.ndarray:
    """PyTorch `fc1.weight` (out, c*h*w) -> NHWC dense kernel (h*w*c, out)."""
    c, h, w = LENET_FLAT_CHW
    out = weight.shape[0]
    return np.ascontiguousarray(weight.reshape(out, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, out))


def fc1_from_hwc_in_out(kernel: np.ndarray) -> np.ndarray:
    """Inverse of `fc1_to_hwc_in_out`."""
    c, h, w = LENET_FLAT_CHW
    out = kernel.shape[1]
    return np.ascontiguousarray(kernel.reshape(h, w, c, out).transpose(3, 2, 0, 1).reshape(out, c * h * w))


def to_nhwc_params(params: Params) -> Params:
    """Canonical weights in NHWC frameworks' layout: kernels HWIO, dense (in, out)."""
    converted = {}
    for name, value in params.items():
        if name == "fc1.weight":
            converted[name] = fc1_to_hwc_in_out(value)
        elif value.ndim == 4:
            converted[name] = oihw_to_hwio(value)
        elif value.ndim == 2:
            converted[name] = np.ascontiguousarray(value.T)
        else:
            converted[name] = value
    return converted


def from_nhwc_params(params: Params) -> Params:
    """Inverse of `to_nhwc_params`."""
    converted = {}
    for name, value in params.items():
        value = np.asarray(value, dtype=np.float32)
        if name == "fc1.weight":
            converted[name] = fc1_from_hwc_in_out(value)
        elif value.ndim == 4:
            converted[name] = hwio_to_oihw(value)
        elif value.ndim == 2:
            converted[name] = np.ascontiguousarray(value.T)
        else:
            converted[name] = value
    return converted
