"""What the three adapters share: the adapter contract, the training configuration, the model
catalogue with its canonical parameter layout, the canonical training state, and the NumPy-drawn
initial weights."""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from frameworks.tuning import Setting

Params = dict[str, np.ndarray]  # canonical layout: PyTorch `state_dict` names and shapes, float32
# (BatchNorm's `num_batches_tracked` stays an int64 scalar, as in PyTorch)

# --- Models -------------------------------------------------------------------------------------

BUFFERS = ("running_mean", "running_var", "num_batches_tracked")  # BatchNorm state, not trained


@dataclass(frozen=True)
class ModelSpec:
    """A model described once, as PyTorch's `state_dict` has it: names and shapes in order,
    BatchNorm buffers included; conv kernels OIHW, dense weights (out, in). Each adapter maps these
    names to its own variables by rule (see `to_nhwc` and the adapters' name tables)."""

    shapes: dict[str, tuple[int, ...]]
    # The dense layer fed by flattening a conv feature map, and that map's (channels, rows, columns):
    # PyTorch flattens NCHW as (channel, row, column), NHWC frameworks as (row, column, channel).
    flatten: tuple[str, tuple[int, int, int]] | None = None

    @property
    def trainable(self) -> list[str]:
        return [name for name in self.shapes if not name.endswith(BUFFERS)]

    @property
    def buffers(self) -> list[str]:
        return [name for name in self.shapes if name.endswith(BUFFERS)]


def _conv_bn(prefix: str, channels_in: int, channels_out: int) -> dict[str, tuple[int, ...]]:
    """A 3x3 convolution without bias, then BatchNorm (its ReLU has no state)."""
    return {f"{prefix}.conv.weight": (channels_out, channels_in, 3, 3), f"{prefix}.bn.weight": (channels_out,),
            f"{prefix}.bn.bias": (channels_out,), f"{prefix}.bn.running_mean": (channels_out,),
            f"{prefix}.bn.running_var": (channels_out,), f"{prefix}.bn.num_batches_tracked": ()}


MODELS: dict[str, ModelSpec] = {
    # The seed's LeNet-style network: two 5x5 convolutions with max-pooling, three dense layers.
    "lenet": ModelSpec({
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
    }, flatten=("fc1", (16, 5, 5))),
    # The DAWNBench ResNet-9 ("How to train your ResNet", Myrtle.ai): conv-BN-ReLU blocks, two
    # residual blocks, global max-pool, a bias-free linear layer, logits scaled by 0.125.
    "resnet9": ModelSpec({
        **_conv_bn("prep", 3, 64),
        **_conv_bn("layer1", 64, 128), **_conv_bn("res1.a", 128, 128), **_conv_bn("res1.b", 128, 128),
        **_conv_bn("layer2", 128, 256),
        **_conv_bn("layer3", 256, 512), **_conv_bn("res3.a", 512, 512), **_conv_bn("res3.b", 512, 512),
        "fc.weight": (10, 512),
    }, flatten=("fc", (512, 1, 1))),
}
RESNET9_LOGIT_SCALE = 0.125
# BatchNorm in PyTorch's terms, which every framework is aligned to: the running statistics move by
# this fraction of the batch's (Keras and Flax state it as 1 - 0.1 = 0.9 of the old value), the
# running variance takes the unbiased batch variance while normalisation uses the biased one.
BATCHNORM_MOMENTUM = 0.1
BATCHNORM_EPSILON = 1e-5


def check_model(model: str) -> None:
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r} (choose from: {', '.join(MODELS)})")


def init_params(model: str, seed: int) -> Params:
    """Initial weights drawn once in NumPy, as PyTorch's default initialisers would draw them:
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for every conv and dense weight and bias; BatchNorm scale 1,
    shift 0, running mean 0, running variance 1, no batches tracked."""
    check_model(model)
    shapes = MODELS[model].shapes
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in shapes.items():
        layer, kind = name.rsplit(".", 1)
        if f"{layer}.running_mean" in shapes:  # BatchNorm
            fill = {"weight": 1, "bias": 0, "running_mean": 0, "running_var": 1}.get(kind)
            params[name] = np.int64(0) if fill is None else np.full(shape, fill, np.float32)
        else:
            bound = 1.0 / math.sqrt(int(np.prod(shapes[f"{layer}.weight"][1:])))
            params[name] = rng.uniform(-bound, bound, size=shape).astype(np.float32)
    return params


def randomize_batchnorm(model: str, params: Params, seed: int) -> Params:
    """`params` with random, non-trivial BatchNorm scales, shifts and running statistics, so that
    parity checks cannot pass by a layout mistake that the defaults (1, 0, 0, 1) would hide."""
    rng = np.random.default_rng(seed)
    ranges = {"weight": (0.5, 1.5), "bias": (-0.5, 0.5), "running_mean": (-0.5, 0.5), "running_var": (0.5, 1.5)}
    randomized = dict(params)
    for name, shape in MODELS[model].shapes.items():
        layer, kind = name.rsplit(".", 1)
        if f"{layer}.running_mean" in MODELS[model].shapes and kind in ranges:
            randomized[name] = rng.uniform(*ranges[kind], size=shape).astype(np.float32)
    return randomized


# --- Training configuration ---------------------------------------------------------------------

LR_SCHEDULES = ("constant", "cosine", "onecycle")
PRECISIONS = ("fp32", "tf32", "bf16")  # what a benchmark may run in; parity also runs "fp64"


@dataclass(frozen=True)
class TrainConfig:
    """SGD with momentum in PyTorch's form: buf = momentum * buf + (grad + weight_decay * w), then
    w -= lr_t * buf, or with Nesterov momentum w -= lr_t * (grad + weight_decay * w + momentum * buf);
    the loss is the batch-mean cross-entropy against labels smoothed as PyTorch's `label_smoothing`
    does ((1 - s) on the true class plus s / classes on every class). The same mathematics is
    spelled out explicitly in every framework."""

    learning_rate: float = 0.01  # per step (the peak of the one-cycle schedule)
    momentum: float = 0.9
    weight_decay: float = 0.0  # L2 added to the gradient, not decoupled
    lr_schedule: str = "constant"  # "cosine": lr_t = lr * (1 + cos(pi * t / total_steps)) / 2; "onecycle":
    # piecewise linear from 0 at step 0 up to lr at warmup_fraction * total_steps, down to 0 at total_steps
    total_steps: int = 1  # length of the schedule, in optimizer steps
    precision: str = "fp32"  # "fp32": TF32 off everywhere; "tf32": allowed on GPU; "bf16": mixed
    # precision, each framework's own way (float32 weights and loss, bfloat16 compute); "fp64":
    # float64 weights and compute, for parity only
    nesterov: bool = False
    label_smoothing: float = 0.0
    warmup_fraction: float = 0.25  # of the one-cycle schedule

    @property
    def warmup_steps(self) -> float:
        """Where the one-cycle schedule peaks, in optimizer steps (need not be whole)."""
        return self.warmup_fraction * self.total_steps

    def schedule_factor(self, step: int) -> float:
        """The schedule's multiple of `learning_rate` after `step` optimizer steps."""
        step = min(step, self.total_steps)
        if self.lr_schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * step / self.total_steps))
        if self.lr_schedule == "onecycle":
            peak = self.warmup_steps
            return step / peak if step < peak else (self.total_steps - step) / (self.total_steps - peak)
        return 1.0

    def learning_rate_at(self, step: int) -> float:
        return self.learning_rate * self.schedule_factor(step)


# --- Canonical training state -------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingState:
    """Everything a training step depends on, in canonical layout: the weights and BatchNorm
    buffers (`params`, a `state_dict`), PyTorch's `momentum_buffer` of each trainable weight (same
    name, same layout; zeros before the first step, which PyTorch's lazily created buffer equals),
    and the number of optimizer steps taken (which sets the scheduled learning rate). Any framework
    can continue from any other's exact state."""

    params: Params
    momentum: Params
    step: int

    @classmethod
    def fresh(cls, params: Params) -> TrainingState:
        return cls(params, {name: np.zeros_like(value) for name, value in params.items()
                            if not name.endswith(BUFFERS)}, 0)

    def astype(self, dtype) -> TrainingState:
        """Floating-point arrays cast to `dtype`; counters stay integers."""
        def cast(arrays: Params) -> Params:
            return {name: np.asarray(value, dtype) if np.issubdtype(np.asarray(value).dtype, np.floating)
                    else np.asarray(value) for name, value in arrays.items()}
        return TrainingState(cast(self.params), cast(self.momentum), self.step)


# --- Data parallelism ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DataParallel:
    """Where one process stands in a data-parallel group: it drives `devices` devices (replicas),
    and is process `rank` of `processes` that meet at `coordinator` (HOST:PORT of rank 0). Every
    replica takes an equal, consecutive shard of the global batch, in rank order, and the
    frameworks' own engines average the gradients, so the group computes what one device computes
    on the whole global batch: the loss is its mean and BatchNorm normalises by its statistics
    (synchronised across replicas in every framework). `hosts`: each process's host, where an
    engine needs every member's address (TensorFlow's multi-worker cluster)."""

    devices: int = 1
    processes: int = 1
    rank: int = 0
    coordinator: str | None = None
    hosts: tuple[str, ...] = ()

    @property
    def replicas(self) -> int:
        return self.devices * self.processes

    @property
    def active(self) -> bool:
        return self.replicas > 1

    def shard(self, arrays: np.ndarray, index: int) -> np.ndarray:
        """The part of `arrays` (a batch along axis 0) that shard `index` of `replicas` takes."""
        size = len(arrays) // self.replicas
        return arrays[index * size:(index + 1) * size]

    def local(self, arrays: np.ndarray) -> np.ndarray:
        """This process's part of a global batch: its devices' shards, side by side."""
        size = len(arrays) // self.processes
        return arrays[self.rank * size:(self.rank + 1) * size]

    def address(self, offset: int = 0) -> tuple[str, int]:
        host, port = self.coordinator.rsplit(":", 1)
        return host, int(port) + offset


SINGLE = DataParallel()


# --- Native input pipelines ---------------------------------------------------------------------


@dataclass(frozen=True)
class NativeInput:
    """What a framework's own input pipeline is built from: the training arrays the suite's
    verified loader returned (no library opens a data file itself) and the recipe every pipeline
    follows. Pixels are normalised as `(images / scale - mean) / std` per channel; with `augment`,
    each image is first reflect-padded by `pad` pixels, cut to a random 32x32 window and mirrored
    left to right with probability 1/2. Every epoch is shuffled afresh and its last partial batch
    dropped. `workers`: the pipeline's parallel workers, None for the framework's own default."""

    images: np.ndarray  # (N, 32, 32, 3) NHWC: uint8 as stored (scale 255), or float32 (scale 1)
    labels: np.ndarray  # (N,) int32
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    scale: float
    augment: bool
    pad: int
    batch_size: int
    epochs: int  # the epochs the pipeline serves, back to back
    seed: int
    workers: int | None

    @property
    def steps_per_epoch(self) -> int:
        return len(self.labels) // self.batch_size


@dataclass
class NativePipeline:
    """A running native pipeline: `batches` yields `epochs * steps_per_epoch` batches, epoch after
    epoch, each as `Adapter.train_step` takes it (placed on the device); `workers` says how many
    workers it runs and where that number came from; `close` stops its workers."""

    batches: Iterator[tuple]
    workers: str
    close: Callable[[], None] = lambda: None


class PipelineUnavailable(RuntimeError):
    """The framework's input pipeline cannot be built here (its package is missing); the job is
    skipped with this reason."""


# --- The adapter contract -----------------------------------------------------------------------


class DeviceUnavailable(RuntimeError):
    """The framework cannot see the requested device; the job is skipped with this reason."""


class Adapter(abc.ABC):
    """One framework running one model. NumPy arrays at the boundary: images float32 NHWC,
    labels int32. `train_step` queues work and returns the loss without a host sync.

    With `parallel` active, the adapter is one process of a data-parallel group: `train_step`
    takes this process's part of the global batch (`DataParallel.local`) and returns the loss of
    the whole global batch; states load and export identically on every process; evaluation and
    `loss_and_grads` stay on one device.

    The class-level hooks (`configure_threads`, `version`, `build_info`, `apply_tuning`, `tuning_state`,
    `device_matmul`) serve a worker before any model is built; `profile` and `op_category` serve
    --profile. What the parent process needs to know of them without importing the framework, its
    registry entry says."""

    framework: str
    # Where Keras compiles the step (a Keras `fit`-style variant): its `jit_compile`, as the installed
    # Keras resolved it once the model was compiled; None where the adapter writes its own step.
    jit_compile: bool | None = None

    # --- Runtime, before a model is built -------------------------------------------------------

    @classmethod
    def configure_threads(cls, threads: int) -> None:
        """Set the framework's own intra-op threads before it starts its runtime (the process is
        already pinned to `threads` cores)."""

    @classmethod
    @abc.abstractmethod
    def version(cls) -> str:
        """The framework's version, recorded with every result row."""

    @classmethod
    @abc.abstractmethod
    def build_info(cls) -> dict:
        """What this process's framework was built with and holds, for env.json (JSON values): the
        versions of its libraries (CUDA, cuDNN, NCCL, XLA's platform, BLAS, oneDNN; None where this
        build has none), "summary": those a reader needs in one line (the report's), and, under
        "flags", the settings that change its numerics or speed as they stand now, the same for a
        float32 and a float64 model (a parity worker reads them after its float64 one). Read in a
        worker, once its model is built."""

    # Structural settings (`frameworks.tuning`, kind "build") that `apply_tuning` accepted, by name,
    # for the models built afterwards in this process (a worker runs one profile).
    structure: Mapping[str, str] = MappingProxyType({})

    @classmethod
    def apply_tuning(cls, settings: tuple[Setting, ...]) -> dict[str, str]:
        """Apply the framework-state settings of the tuning table and keep the structural ones for
        the models built afterwards, before any is built (environment settings are set by the
        parent). Returns, by name, the reason for each setting this framework version cannot apply;
        `tuning_state` then reports what it holds."""
        return {setting.name: f"the {cls.framework} adapter applies no {setting.kind} setting"
                for setting in settings if setting.kind != "env"}

    @classmethod
    def tuning_state(cls, settings: tuple[Setting, ...]) -> dict[str, str | None]:
        """The value the framework holds for each state or structural setting, read back from it
        (None where this version has no such thing), whatever the profile."""
        return {setting.name: cls.structure.get(setting.name) for setting in settings if setting.kind == "build"}

    @classmethod
    def device_matmul(cls, precision: str, size: int) -> tuple[Callable[[], object], Callable[[object], None], str]:
        """A square float32 (bfloat16 with "bf16", TF32 allowed with "tf32") matrix product of
        `size` on the GPU, for the machine's peak: (multiply, which queues one product and returns
        it; wait, which blocks until a returned product is done; a description of the kernel's
        framework and dtype). Only where the registry entry says `device_matmul`."""
        raise NotImplementedError(f"{cls.framework} offers no device matmul")

    def __init__(self, model: str, device: str, variant: str, config: TrainConfig,
                 parallel: DataParallel = SINGLE):
        check_model(model)
        self.model_name = model
        self.device = device
        self.variant = variant
        self.config = config
        self.parallel = parallel

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

    def native_input(self, source: NativeInput) -> NativePipeline:
        """The framework's idiomatic input pipeline over `source`, as its users write it (the
        recipe and the placement on this adapter's device included). Raises PipelineUnavailable
        where the pipeline's package is missing."""
        raise PipelineUnavailable(f"{self.framework} offers no native input pipeline")

    def place(self, images: np.ndarray, labels: np.ndarray) -> tuple:
        """The batch in the framework's own tensors on the device, the copy started without
        waiting for it (`train_step` takes the result as it takes NumPy arrays). The default hands
        the arrays back unchanged: the copy then happens inside `train_step`."""
        return images, labels

    def wait(self, placed: tuple) -> None:
        """Block until a `place`d batch is on the device."""
        self.synchronize()

    @abc.abstractmethod
    def train_step(self, images, labels):
        """One optimizer step on NumPy arrays or a `place`d batch; returns the batch loss as a
        device value (no host sync)."""

    @abc.abstractmethod
    def synchronize(self) -> None:
        """Block until all queued device work is done."""

    @abc.abstractmethod
    def losses_to_numpy(self, losses: list) -> np.ndarray:
        """Fetch the device losses returned by `train_step` to the host."""

    @abc.abstractmethod
    def loss_and_grads(self, images: np.ndarray, labels: np.ndarray) -> tuple[float, Params]:
        """The training loss (label-smoothed as configured) and its gradients in canonical layout, in
        training mode (BatchNorm normalises by the batch), leaving weights, optimizer and running
        statistics unchanged."""

    @abc.abstractmethod
    def logits(self, images: np.ndarray) -> np.ndarray:
        """Forward pass in evaluation mode (BatchNorm normalises by its running statistics)."""

    @abc.abstractmethod
    def evaluate(self, images: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
        """Summed cross-entropy on a batch, and each image's predicted class (the arg max of its
        logits) as a NumPy integer array: only the class indices leave the device, and the harness
        scores them against the labels."""

    def builtin_equivalents(self) -> dict[str, tuple[Callable, Callable]]:
        """Where the suite's own code sits on the training step's hot path, the same work written
        with the framework's built-ins only, for `python -m benchmarks.hotpath` to time the two in
        one process: by name, (the suite's, the built-in's), each a callable that takes a `place`d
        batch, queues its work on this adapter's model without a host sync, and returns a value for
        `wait`. The built-in side need not compute the same step (that is what the measurement
        decides); neither side's state is meaningful afterwards."""
        return {}

    @abc.abstractmethod
    def compile_count(self) -> int:
        """Traces or compilations of the training step so far (to detect retracing)."""

    def reset_peak_device_memory(self) -> None:
        """Start the device peak afresh from what is allocated now: called once the warm-up is over,
        so that what compiling and autotuning allocated (cuDNN's and XLA's algorithm searches try
        each candidate with its workspace) is not in it. Nothing to do where the framework keeps no
        peak counter or its figure needs no reset."""

    def peak_device_memory(self) -> int | None:
        """Peak bytes on the device, by the framework's own measure (docs/method.md, Memory): its
        allocator's peak since `reset_peak_device_memory`, or the compiled step's; None on CPU."""
        return None

    def applied_threads(self) -> int | None:
        """Intra-op threads the framework actually uses on CPU."""
        return None

    # --- Profiling ------------------------------------------------------------------------------

    def run_steps(self, batches: list) -> None:
        """Train on every (placed) batch of `batches` and wait for the device: what a profile records."""
        for batch in batches:
            self.train_step(*batch)
        self.synchronize()

    def profile(self, batches: list, folder: Path) -> list[dict]:
        """`run_steps(batches)` under the framework's own profiler, its trace written in `folder`
        in the framework's native viewable format; the operations it recorded, one row per event
        or aggregate of events: `op`, `calls`, `self_us` (microseconds, summed over the steps) and
        `detail` (what else names the op, or ""). Only where the registry entry says `profiler`."""
        raise NotImplementedError(f"no profiler for {self.framework}")

    @staticmethod
    def op_category(op: str, detail: str) -> str:
        """The category, comparable across frameworks, of one op `profile` recorded (one of
        `benchmarks.harness.profiling.CATEGORIES`; rules in `frameworks.profiles`)."""
        raise NotImplementedError("no profiler, so no op categories")


# --- Layout conversions shared by the NHWC frameworks -------------------------------------------


def variable_paths(model: str, root, attribute_names: dict[type, dict[str, str]]) -> dict[str, tuple[str, ...]]:
    """Canonical name -> the attribute path of its variable in a framework's module tree (`root`),
    found by walking the canonical module path and naming the leaf as `attribute_names` does for
    that module's type; names the framework keeps no variable for (`num_batches_tracked`) are
    left out."""
    paths = {}
    for name in MODELS[model].shapes:
        path, leaf = name.rsplit(".", 1)
        module = root
        for part in path.split("."):
            module = getattr(module, part)
        attribute = next(names for kind, names in attribute_names.items() if isinstance(module, kind)).get(leaf)
        if attribute is not None:
            paths[name] = (*path.split("."), attribute)
    return paths


def _flatten_to_hwc(weight: np.ndarray, chw: tuple[int, int, int]) -> np.ndarray:
    """PyTorch dense weight (out, c*h*w) -> NHWC dense kernel (h*w*c, out)."""
    c, h, w = chw
    out = weight.shape[0]
    return np.ascontiguousarray(weight.reshape(out, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, out))


def _flatten_from_hwc(kernel: np.ndarray, chw: tuple[int, int, int]) -> np.ndarray:
    """Inverse of `_flatten_to_hwc`."""
    c, h, w = chw
    out = kernel.shape[1]
    return np.ascontiguousarray(kernel.reshape(h, w, c, out).transpose(3, 2, 0, 1).reshape(out, c * h * w))


def to_nhwc(model: str, arrays: Params) -> Params:
    """Canonical arrays (weights, buffers, momentum or gradients) in NHWC frameworks' layout, by
    rule: conv kernels OIHW -> HWIO, dense weights transposed to (in, out), the flattening dense
    layer's inputs permuted to (row, column, channel); vectors and scalars unchanged."""
    flatten = MODELS[model].flatten
    converted = {}
    for name, value in arrays.items():
        if flatten and name == f"{flatten[0]}.weight":
            converted[name] = _flatten_to_hwc(value, flatten[1])
        elif value.ndim == 4:
            converted[name] = np.ascontiguousarray(value.transpose(2, 3, 1, 0))
        elif value.ndim == 2:
            converted[name] = np.ascontiguousarray(value.T)
        else:
            converted[name] = value
    return converted


def from_nhwc(model: str, arrays: Params) -> Params:
    """Inverse of `to_nhwc`."""
    flatten = MODELS[model].flatten
    converted = {}
    for name, value in arrays.items():
        value = np.asarray(value)
        if flatten and name == f"{flatten[0]}.weight":
            converted[name] = _flatten_from_hwc(value, flatten[1])
        elif value.ndim == 4:
            converted[name] = np.ascontiguousarray(value.transpose(3, 2, 0, 1))
        elif value.ndim == 2:
            converted[name] = np.ascontiguousarray(value.T)
        else:
            converted[name] = value
    return converted
