"""What the parity checks are: the seed, batches and random weights every framework starts from,
each model's plan (batch, image side, steps, optimizer settings), the tolerance of every check in
every precision, and the naming of the outputs ("check|setting|step|tensor") that workers write
and the comparison reads. NumPy only: no framework, no float64 model."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from frameworks.base import MODELS, Params, TrainConfig, TrainingState, init_params, randomize_batchnorm

PARITY_SEED = 1234
PARITY_BATCH = 32
TRAIN_STEPS = 20
# Optimizer settings, each exposing a different way the frameworks' forms differ: momentum alone
# (constant lr), L2 weight decay (coupled vs decoupled), a changing learning rate (where Keras's
# `v = m*v - lr*g` form and PyTorch's `buf = m*buf + g; w -= lr*buf` part ways), and ResNet-9's
# recipe: Nesterov momentum (three different spellings of the look-ahead), label smoothing (Keras
# smooths one-hot labels only) and the one-cycle schedule (each framework builds its own), with
# weight decay. A schedule spans the plan's steps.
TRAINING_CONFIGS = {
    "momentum": TrainConfig(learning_rate=0.05, momentum=0.9),
    "weight decay": TrainConfig(learning_rate=0.05, momentum=0.9, weight_decay=5e-3),
    "cosine schedule": TrainConfig(learning_rate=0.05, momentum=0.9, weight_decay=5e-3, lr_schedule="cosine"),
    "recipe": TrainConfig(learning_rate=0.05, momentum=0.9, weight_decay=5e-3, nesterov=True, label_smoothing=0.2,
                          lr_schedule="onecycle", warmup_fraction=0.3),
}
PROOF = "fp64"  # the precision every variant is also checked in, where no decision can flip


@dataclass(frozen=True)
class ParityPlan:
    """How a model is checked: batch, image side, training steps, optimizer settings, and whether
    float32 gradients are asserted or only reported (then float64 alone proves them)."""

    batch_size: int
    side: int
    steps: int
    settings: tuple[str, ...]
    float32_gradients_asserted: bool


PLANS = {
    "lenet": ParityPlan(PARITY_BATCH, 32, TRAIN_STEPS, tuple(TRAINING_CONFIGS), True),
    # ResNet-9 makes 3 M ReLU and max-pool decisions per 32x32 batch of 8: in float32 one of them
    # flips in most steps (gradients 4e-4 to 2e-3 off float64 in 3 of 4 batches; 8e-3 on 16x16
    # images, where each decision weighs more in a 2x2 BatchNorm), so its float32 gradients are
    # reported and float64 proves them. The optimizer's settings one by one are LeNet's business;
    # ResNet-9 takes its recipe (the richest), on 16x16 images that the same network (fully
    # convolutional, global max-pool) maps to 2x2 at its last BatchNorm, and a batch of 4.
    "resnet9": ParityPlan(4, 16, 4, ("recipe",), False),
}


def training_config(model: str, setting: str, precision: str = "fp32") -> TrainConfig:
    """A setting's optimizer, its schedule spanning the model's parity steps."""
    return dataclasses.replace(TRAINING_CONFIGS[setting], total_steps=PLANS[model].steps, precision=precision)


# check -> relative tolerance over each whole tensor (0 = exact), in float32
TOLERANCES = {"round trip": 0.0, "forward": 1e-5, "loss": 1e-4, "gradients": 1e-4,
              "per-step": 1e-4, "step count": 0.0, "free-running": 1e-4}
# Other precisions are held to their own accuracy. fp64: float64 against float64, where every
# variant agrees with the reference to 1e-14 or better. bf16: twice the largest error against
# float64 measured on an AVX-512 CPU (logits 4.6e-3, loss 4.9e-5, gradients and per-step 2.2e-1:
# bfloat16 keeps 8 significant bits). TF32 keeps 11, so its bounds are bf16's divided by 8 (not
# measurable on a CPU, which has no TF32). Round trip and step count stay exact.
PRECISION_TOLERANCES = {
    "fp32": {},
    "fp64": {"forward": 1e-10, "loss": 1e-10, "gradients": 1e-10, "per-step": 1e-10, "free-running": 1e-10},
    "tf32": {"forward": 1.25e-3, "loss": 1e-4, "gradients": 6e-2, "per-step": 6e-2, "free-running": 6e-2},
    "bf16": {"forward": 1e-2, "loss": 1e-4, "gradients": 0.5, "per-step": 0.5, "free-running": 0.5},
}
# Where a model's parity plan, not a framework, makes an error larger than its precision's bound.
# ResNet-9's loss averages a batch of 4 (LeNet's, 32): in bf16 its loss is 1.5e-4 to 2.7e-4 off
# float64 in median and at most 5.3e-4, in all three frameworks alike, over 12 random draws of
# weights and batch on an AVX-512 BF16 CPU, with the same logits error as LeNet's (3.5e-3 median);
# LeNet's loss stays under 5.1e-5. Twice the largest, as above; TF32's is bf16's divided by 8. A
# loss computed in bf16 instead of float32 is 1.9e-2 off in median over the same draws.
MODEL_TOLERANCES = {
    ("resnet9", "bf16"): {"loss": 1.1e-3},
    ("resnet9", "tf32"): {"loss": 1.4e-4},
}
EXACT_CHECKS = ("round trip", "step count")
# Where each precision's bounds were set: all on CPUs, none yet on a GPU (where cuDNN's and XLA's
# own algorithms round differently, and TF32 exists), so the first parity on a card calibrates them.
# Every comparison row carries its error, its bound, and both places (`checks.verdicts.calibration`
# sets them side by side); the bounds themselves change only from what such a run measures.
BOUND_SET_ON = {"fp32": "cpu", "fp64": "cpu", "bf16": "cpu", "tf32": "cpu: bf16's / 8, TF32 unmeasured"}
# A float32 rounding that flips one ReLU or max-pool decision changes one unit's gradient in that
# step: a few 1e-3 in the weight it feeds (2.2e-3 measured), with the step's loss unchanged. One
# such step per pair and setting is named as an outlier instead of failing, provided the float64
# reference saw a decision within NEAR_TIE (relative) of flipping in that step; a second fails.
FLIP_BOUND = 5e-2
NEAR_TIE = 1e-6
COLUMNS = ["precision", "pair", "check", "setting", "step", "tensor", "error", "tolerance", "bound set on",
           "measured on", "asserted", "passed", "outlier"]


def parity_batches(count: int, batch_size: int = PARITY_BATCH, side: int = 32) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random normal images (never zeros: a zero input hides layout mistakes) and labels."""
    rng = np.random.default_rng(PARITY_SEED)
    return [(rng.standard_normal((batch_size, side, side, 3)).astype(np.float32),
             rng.integers(0, 10, batch_size).astype(np.int32)) for _ in range(count)]


def model_batches(model: str) -> list[tuple[np.ndarray, np.ndarray]]:
    plan = PLANS[model]
    return parity_batches(plan.steps, plan.batch_size, plan.side)


def parity_params(model: str) -> Params:
    """Random weights, and random, non-trivial BatchNorm scales, shifts and running statistics."""
    return randomize_batchnorm(model, init_params(model, PARITY_SEED), PARITY_SEED + 2)


def round_trip_state(model: str) -> TrainingState:
    """A state every adapter must load and export bit for bit: random weights and BatchNorm
    statistics, random non-zero momentum buffers (a zero buffer would hide a layout mistake) and a
    step count past zero (which is also the batches BatchNorm has tracked)."""
    step = 7
    params = {name: np.int64(step) if name.endswith("num_batches_tracked") else value
              for name, value in parity_params(model).items()}
    rng = np.random.default_rng(PARITY_SEED + 1)
    momentum = {name: rng.standard_normal(params[name].shape).astype(np.float32) for name in MODELS[model].trainable}
    return TrainingState(params, momentum, step)


def key(check: str, tensor: str, setting: str = "", step: int | str = "") -> str:
    return f"{check}|{setting}|{step}|{tensor}"


def parse_key(text: str) -> tuple[str, str, str, str]:
    check, setting, step, tensor = text.split("|")
    return check, setting, step, tensor


def _step_outputs(setting: str, step: int, common: TrainingState, loss: float, after: TrainingState) -> dict:
    """What one training step from `common` produced: loss, weight updates, momentum buffers and
    BatchNorm's running statistics."""
    out = {key("per-step", "loss", setting, step): np.float64(loss),
           key("step count", "step count", setting, step): np.int64(after.step)}
    for name, value in after.params.items():
        if name in after.momentum:  # the difference in float64, stored in the weights' dtype
            update = np.asarray(value, np.float64) - np.asarray(common.params[name], np.float64)
            out[key("per-step", f"update {name}", setting, step)] = update.astype(np.asarray(value).dtype)
            out[key("per-step", f"momentum {name}", setting, step)] = np.asarray(after.momentum[name])
        elif name.endswith("num_batches_tracked"):
            out[key("step count", name, setting, step)] = np.int64(value)
        else:
            out[key("per-step", name, setting, step)] = np.asarray(value)
    return out



def _state_arrays(setting: str, step: int, state: TrainingState) -> dict[str, np.ndarray]:
    arrays = {key("state", f"params {name}", setting, step): value for name, value in state.params.items()}
    arrays.update({key("state", f"momentum {name}", setting, step): value for name, value in state.momentum.items()})
    arrays[key("state", "step", setting, step)] = np.int64(state.step)
    return arrays


def common_state(outputs: dict[str, np.ndarray], setting: str, step: int) -> TrainingState:
    """The reference's state before `step` of `setting`, which every framework starts that step from."""
    prefix = f"state|{setting}|{step}|"
    part = {name[len(prefix):]: value for name, value in outputs.items() if name.startswith(prefix)}
    pick = lambda kind: {n.split(" ", 1)[1]: v for n, v in part.items() if n.startswith(kind + " ")}  # noqa: E731
    return TrainingState(pick("params"), pick("momentum"), int(part["step"]))



class PrecisionView(Mapping):
    """One precision's outputs within `compute_all`'s naming, read lazily: a worker's .npz file
    holds every training step's tensors (hundreds of MB for ResNet-9), compared one at a time."""

    def __init__(self, arrays: Mapping[str, np.ndarray], precision: str):
        self.arrays, self.prefix = arrays, f"{precision}/"
        self.names = [name[len(self.prefix):] for name in arrays if name.startswith(self.prefix)]
        self.known = set(self.names)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[self.prefix + name]

    def __contains__(self, name: object) -> bool:  # without reading the array (Mapping's default does)
        return name in self.known

    def __iter__(self):
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


