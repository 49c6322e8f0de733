"""JAX adapter: Flax NNX model, Optax SGD, one `jax.jit`-compiled step with donated state; over
several devices, the same step on a device mesh, the batch sharded and the state replicated
(`NamedSharding`), across processes through `jax.distributed`. Its native input: a Grain pipeline."""

from __future__ import annotations

import gzip
import importlib.metadata
import json
import os
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path

import flax
import jax
import jax.extend
import jax.numpy as jnp
import jaxlib
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from frameworks.base import (
    BATCHNORM_EPSILON,
    BATCHNORM_MOMENTUM,
    MODELS as SPECS,
    RESNET9_LOGIT_SCALE,
    SINGLE,
    Adapter,
    DataParallel,
    DeviceUnavailable,
    NativeInput,
    NativePipeline,
    PipelineUnavailable,
    TrainConfig,
    TrainingState,
    from_nhwc,
    to_nhwc,
    variable_paths,
)
from frameworks.profiles import flax_category, hlo_descriptions, xla_thunk_events

# --- Model --------------------------------------------------------------------------------------


def _loss_dtype(logits):
    """The loss is computed in float32 (float64 in fp64 mode), whatever the compute dtype."""
    return logits.astype(jnp.promote_types(logits.dtype, jnp.float32))


class LeNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs, dtype=jnp.float32):
        self.conv1 = nnx.Conv(3, 6, (5, 5), padding="VALID", dtype=dtype, rngs=rngs)
        self.conv2 = nnx.Conv(6, 16, (5, 5), padding="VALID", dtype=dtype, rngs=rngs)
        self.fc1 = nnx.Linear(16 * 5 * 5, 120, dtype=dtype, rngs=rngs)
        self.fc2 = nnx.Linear(120, 84, dtype=dtype, rngs=rngs)
        self.fc3 = nnx.Linear(84, 10, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        x = nnx.max_pool(nnx.relu(self.conv1(x)), (2, 2), strides=(2, 2))
        x = nnx.max_pool(nnx.relu(self.conv2(x)), (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)  # NHWC flatten: fc1's inputs are (row, column, channel)
        x = nnx.relu(self.fc1(x))
        x = nnx.relu(self.fc2(x))
        return _loss_dtype(self.fc3(x))


class TorchBatchNorm(nnx.BatchNorm):
    """BatchNorm as PyTorch computes it. Flax moves `var` towards the biased batch variance,
    PyTorch towards the unbiased one (n / (n - 1) larger); both normalise by the biased one.
    Momentum and epsilon are PyTorch's, restated in Flax's terms (weight of the old value)."""

    def __init__(self, num_features: int, *, dtype, rngs: nnx.Rngs):
        super().__init__(num_features, momentum=1.0 - BATCHNORM_MOMENTUM, epsilon=BATCHNORM_EPSILON, dtype=dtype,
                         rngs=rngs)

    def __call__(self, x):
        if self.use_running_average:
            return super().__call__(x)
        x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))  # statistics in float32, as Flax keeps them
        mean, var = x32.mean(axis=(0, 1, 2)), x32.var(axis=(0, 1, 2))
        count = x.size // x.shape[-1]
        self.mean.value = self.momentum * self.mean.value + (1.0 - self.momentum) * mean
        self.var.value = self.momentum * self.var.value + (1.0 - self.momentum) * var * count / (count - 1)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.epsilon) * self.scale.value + self.bias.value
        return y.astype(x.dtype)


class ConvBN(nnx.Module):
    def __init__(self, channels_in: int, channels_out: int, rngs: nnx.Rngs, dtype):
        self.conv = nnx.Conv(channels_in, channels_out, (3, 3), padding=1, use_bias=False, dtype=dtype, rngs=rngs)
        self.bn = TorchBatchNorm(channels_out, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        return nnx.relu(self.bn(self.conv(x)))


class Residual(nnx.Module):
    def __init__(self, channels: int, rngs: nnx.Rngs, dtype):
        self.a = ConvBN(channels, channels, rngs, dtype)
        self.b = ConvBN(channels, channels, rngs, dtype)

    def __call__(self, x):
        return x + self.b(self.a(x))


class ResNet9(nnx.Module):
    def __init__(self, rngs: nnx.Rngs, dtype=jnp.float32):
        self.prep = ConvBN(3, 64, rngs, dtype)
        self.layer1 = ConvBN(64, 128, rngs, dtype)
        self.res1 = Residual(128, rngs, dtype)
        self.layer2 = ConvBN(128, 256, rngs, dtype)
        self.layer3 = ConvBN(256, 512, rngs, dtype)
        self.res3 = Residual(512, rngs, dtype)
        self.fc = nnx.Linear(512, 10, use_bias=False, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        x = self.prep(x)
        x = self.res1(nnx.max_pool(self.layer1(x), (2, 2), strides=(2, 2)))
        x = nnx.max_pool(self.layer2(x), (2, 2), strides=(2, 2))
        x = self.res3(nnx.max_pool(self.layer3(x), (2, 2), strides=(2, 2)))
        x = x.max(axis=(1, 2))  # global max-pool
        return _loss_dtype(self.fc(x)) * RESNET9_LOGIT_SCALE


MODELS = {"lenet": LeNet, "resnet9": ResNet9}
# Canonical (PyTorch) leaf names -> each Flax module type's attribute, so a model maps by rule.
VARIABLE_NAMES = {
    nnx.Conv: {"weight": "kernel", "bias": "bias"},
    nnx.Linear: {"weight": "kernel", "bias": "bias"},
    nnx.BatchNorm: {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"},
}


def lookup(tree, path: tuple[str, ...]):
    for part in path:
        tree = getattr(tree, part) if isinstance(tree, nnx.Module) else tree[part]
    return tree

# --- Optimizer ----------------------------------------------------------------------------------


def make_schedule(config: TrainConfig) -> optax.ScalarOrSchedule:
    if config.lr_schedule == "cosine":
        return optax.cosine_decay_schedule(config.learning_rate, config.total_steps)
    if config.lr_schedule == "onecycle":  # piecewise linear: 0 -> peak at the warm-up's end -> 0
        warmup = config.warmup_steps
        return optax.join_schedules([optax.linear_schedule(0.0, config.learning_rate, warmup),
                                     optax.linear_schedule(config.learning_rate, 0.0, config.total_steps - warmup)],
                                    [warmup])
    return config.learning_rate


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """PyTorch's SGD: L2 decay added to the gradient, then `trace` (buf = m*buf + g; Nesterov:
    g + m*buf), then -lr."""
    return optax.chain(
        optax.add_decayed_weights(config.weight_decay),
        optax.sgd(make_schedule(config), momentum=config.momentum, nesterov=config.nesterov),
    )


# --- Compiled functions -------------------------------------------------------------------------

_traces = {"train_step": 0}  # incremented while tracing, so it counts compilations


def loss_fn(model, images, labels, label_smoothing: float = 0.0):
    """The training loss: batch-mean cross-entropy, label-smoothed as configured."""
    logits = model(images)
    if label_smoothing:
        targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype), label_smoothing)
        return optax.softmax_cross_entropy(logits, targets).mean()
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


@partial(jax.jit, static_argnums=(0, 4), donate_argnums=1)
def train_step(graphdef, state, images, labels, label_smoothing):
    _traces["train_step"] += 1
    model, optimizer = nnx.merge(graphdef, state)
    loss, grads = nnx.value_and_grad(loss_fn)(model, images, labels, label_smoothing)
    optimizer.update(model, grads)
    return nnx.state((model, optimizer)), loss


@partial(jax.jit, static_argnums=(0, 4))
def loss_and_grads(graphdef, state, images, labels, label_smoothing):
    model, _ = nnx.merge(graphdef, state)
    return nnx.value_and_grad(loss_fn)(model, images, labels, label_smoothing)


@partial(jax.jit, static_argnums=0)
def forward(graphdef, state, images):
    model, _ = nnx.merge(graphdef, state)
    model.eval()  # BatchNorm normalises by its running statistics
    return model(images)


@partial(jax.jit, static_argnums=0)
def evaluate(graphdef, state, images, labels):
    logits = forward(graphdef, state, images)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).sum()
    return loss, logits.argmax(1)


def profile_jitted_step(run: Callable[[], None], compiled_hlo: Callable[[], str], folder: Path,
                        device: bool) -> list[dict]:
    """`run` under jax.profiler (a TensorBoard profile and a Perfetto trace in `folder`), then each XLA
    thunk of the jitted function named `train_step` as a row, its instruction described from the step's
    optimised HLO module (`compiled_hlo()`, saved beside the trace as `train_step.hlo.txt`); on a GPU
    (`device`), the device's own events (`xla_thunk_events`)."""
    with jax.profiler.trace(str(folder), create_perfetto_trace=True):
        run()
    hlo = compiled_hlo()
    (folder / "train_step.hlo.txt").write_text(hlo)
    described = hlo_descriptions(hlo)
    rows = []
    for path in folder.glob("plugins/profile/*/*.trace.json.gz"):
        with gzip.open(path) as f:
            rows += [{**row, "detail": described.get(row["op"], "")}
                     for row in xla_thunk_events(json.load(f), "train_step", device=device)]
    return rows


# --- Native input -------------------------------------------------------------------------------


class ArraySource:
    """Grain's random-access data source over the arrays the suite's verified loader read."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.images[index], self.labels[index]


class CropFlip:
    """Reflect-pad, cut a random window of the image's size, mirror with probability 1/2: Grain's
    random map, drawing from the generator Grain seeds for each record."""

    def __init__(self, pad: int):
        self.pad = pad

    def __call__(self, example, rng: np.random.Generator):
        image, label = example
        height, width = image.shape[:2]
        padded = np.pad(image, ((self.pad, self.pad), (self.pad, self.pad), (0, 0)), mode="reflect")
        top, left = rng.integers(0, 2 * self.pad + 1, 2)
        image = padded[top:top + height, left:left + width]
        return (image[:, ::-1] if rng.random() < 0.5 else image), label


class Normalise:
    """Scale and normalise per channel, in float32 as the suite does."""

    def __init__(self, scale: float, mean, std):
        self.scale, self.mean, self.std = scale, np.asarray(mean, np.float32), np.asarray(std, np.float32)

    def __call__(self, example):
        image, label = example
        return ((image.astype(np.float32) / self.scale - self.mean) / self.std).astype(np.float32), label


def native_dataset(source: NativeInput):
    """The recipe in Grain's dataset API: the records shuffled, then repeated for every epoch (a
    shuffle under a repeat draws a fresh permutation per epoch), each epoch cut to whole batches so that
    none straddles two, then the per-record random map (seeded by the record's place in the
    stream), normalisation and batching. A `grain.MapDataset`."""
    import grain

    records = grain.MapDataset.source(ArraySource(source.images, source.labels))
    shuffled = records.shuffle(seed=source.seed).repeat(source.epochs)  # repeated, the shuffle draws anew each epoch
    whole = source.steps_per_epoch * source.batch_size  # the part of each epoch that fills whole batches
    dataset = grain.MapDataset.concatenate([shuffled[epoch * len(records):epoch * len(records) + whole]
                                            for epoch in range(source.epochs)])
    if source.augment:
        dataset = dataset.random_map(CropFlip(source.pad), seed=source.seed)
    return dataset.map(Normalise(source.scale, source.mean, source.std)).batch(source.batch_size, drop_remainder=True)


def native_pipeline(source: NativeInput, device) -> NativePipeline:
    """`native_dataset` run by Grain's worker processes (`mp_prefetch`; none with 0 workers: then
    in this process), and placed on `device` ahead of the step by `grain.experimental.device_put`.
    By default a worker per core this process may use."""
    try:
        import grain
        from absl import flags
    except ImportError as error:
        raise PipelineUnavailable(f"grain is not installed ({error})") from None
    if not flags.FLAGS.is_parsed():  # Grain reads its absl flags, which a program outside `absl.app` never parses
        flags.FLAGS.mark_as_parsed()
    workers = len(os.sched_getaffinity(0)) if source.workers is None else source.workers
    how = (f"{workers} (num_workers: the cores this process may use)" if source.workers is None
           else f"{workers} (num_workers)")
    dataset = native_dataset(source).to_iter_dataset()
    if workers:
        dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    dataset = grain.experimental.device_put(dataset, device)
    return NativePipeline(iter(dataset), how)


# --- Adapter ------------------------------------------------------------------------------------


def data_parallel_mesh(parallel: DataParallel, device: str) -> Mesh:
    """The data-parallel mesh: `parallel.devices` devices of each process, in process order. Must
    run before JAX starts its runtime: CPUs become that many host devices, and several processes
    meet at the coordinator (their CPU collectives through gloo)."""
    if device == "cpu":
        jax.config.update("jax_num_cpu_devices", parallel.devices)
    if parallel.processes > 1 and not jax.distributed.is_initialized():
        jax.distributed.initialize(parallel.coordinator, parallel.processes, parallel.rank,
                                   local_device_ids=list(range(parallel.devices)) if device == "cuda" else None)
    platform = "gpu" if device == "cuda" else "cpu"
    devices = [d for process in range(parallel.processes)
               for d in [d for d in jax.devices(platform) if d.process_index == process][:parallel.devices]]
    if len(devices) < parallel.replicas:
        raise DeviceUnavailable(f"JAX sees {len(devices)} {platform} devices, not the {parallel.replicas} asked for")
    return Mesh(np.array(devices), ("batch",))


def _plugins() -> dict[str, str]:
    """The PJRT plugins JAX may load (`jax_plugins` entry points, e.g. jax-cuda12-plugin's) and the
    CUDA or ROCm plugin distributions installed beside it, each with its distribution's version."""
    plugins = {point.name: f"{point.dist.name} {point.dist.version}" if point.dist else point.value
               for point in importlib.metadata.entry_points(group="jax_plugins")}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] or ""
        if re.fullmatch(r"jax[-_](cuda|rocm)\d*[-_](plugin|pjrt)", name, re.IGNORECASE):
            plugins.setdefault(name, f"{name} {dist.version}")
    return plugins


class FlaxAdapter(Adapter):
    framework = "jax"

    # --- Runtime, before a model is built -------------------------------------------------------

    @classmethod
    def configure_threads(cls, threads: int) -> None:
        """Nothing to set: the process is pinned to `threads` cores, which bounds XLA's CPU pool."""

    @classmethod
    def version(cls) -> str:
        return jax.__version__

    @classmethod
    def build_info(cls):
        backend = jax.extend.backend.get_backend()  # the default backend, as jit places on it
        plugins = _plugins()
        parts = [f"jaxlib {jaxlib.__version__}", f"{backend.platform} backend ({backend.platform_version})",
                 *([f"plugins {', '.join(plugins.values())}"] if plugins else [])]
        return {
            "summary": ", ".join(parts),
            "version": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "flax": flax.__version__,
            "plugins": plugins,
            "platform": backend.platform,
            "platform_version": backend.platform_version,  # e.g. "cuda 12080"; "cpu" on the CPU
            "devices": [f"{device.platform}:{device.id} {device.device_kind}" for device in jax.devices()],
            "flags": {"jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
                      "XLA_FLAGS": os.environ.get("XLA_FLAGS")},
        }

    @classmethod
    def device_matmul(cls, precision, size):
        bf16 = precision == "bf16"
        dtype = jnp.bfloat16 if bf16 else jnp.float32
        a, b = (jax.random.normal(jax.random.key(seed), (size, size), dtype) for seed in (0, 1))
        matmul = jax.jit(lambda x, y: jnp.matmul(x, y, precision="highest" if not bf16 else None))
        return (lambda: matmul(a, b)), jax.block_until_ready, f"JAX {jax.__version__} {jnp.dtype(dtype).name}"

    def __init__(self, model: str, device: str, variant: str, config: TrainConfig,
                 parallel: DataParallel = SINGLE):
        super().__init__(model, device, variant, config, parallel)
        self.mesh = data_parallel_mesh(parallel, device) if parallel.active else None
        self._stepped = None  # the last batch trained on: its shapes are the compiled step's (peak_device_memory)
        self._step_peaks: dict[tuple, int | None] = {}  # the compiled step's peak bytes, by its batch's shapes
        if device == "cuda" and jax.default_backend() != "gpu":
            raise DeviceUnavailable(f"JAX {jax.__version__} sees no GPU (backend {jax.default_backend()!r})")
        self.jax_device = jax.local_devices(backend="gpu" if device == "cuda" else "cpu")[0]
        jax.config.update("jax_default_matmul_precision", "tensorfloat32" if config.precision == "tf32" else "highest")
        if config.precision == "fp64":  # process-wide, so parity computes fp64 last
            jax.config.update("jax_enable_x64", True)
        dtype = {"bf16": jnp.bfloat16, "fp64": jnp.float64}.get(config.precision, jnp.float32)
        self.model = MODELS[model](nnx.Rngs(0), dtype)
        if config.precision == "fp64":  # float64 weights as well as compute
            weights = nnx.state(self.model, nnx.Any(nnx.Param, nnx.BatchStat))
            nnx.update(self.model, jax.tree.map(lambda value: value.astype(jnp.float64), weights))
        self._build_optimizer()

    def _build_optimizer(self) -> None:
        optimizer = nnx.Optimizer(self.model, make_optimizer(self.config), wrt=nnx.Param)
        self.graphdef, self.state = nnx.split((self.model, optimizer))
        self.paths = variable_paths(self.model_name, self.model, VARIABLE_NAMES)
        self._replicate()

    def _replicate(self) -> None:
        """Over several devices, a copy of the whole state on each (the same on every process)."""
        if self.mesh is not None:
            replicated = NamedSharding(self.mesh, PartitionSpec())
            self.state = jax.tree.map(
                lambda x: jax.make_array_from_callback(x.shape, replicated, lambda index: np.asarray(x)[index]),
                self.state)

    def _host(self, value) -> np.ndarray:
        """A replicated or single-device value on the host, from this process's own copy."""
        return np.asarray(value if self.mesh is None else value.addressable_data(0))

    def _local_state(self):
        """The state on this process's first device (evaluation runs there, as on one device)."""
        return self.state if self.mesh is None else jax.tree.map(lambda x: x.addressable_data(0), self.state)

    def _merged(self):
        return nnx.merge(self.graphdef, self.state)

    # --- State ----------------------------------------------------------------------------------

    def set_state(self, state: TrainingState) -> None:
        model, optimizer = self._merged()
        params, momentum = to_nhwc(self.model_name, state.params), to_nhwc(self.model_name, state.momentum)
        trace = optax.tree_utils.tree_get(optimizer.opt_state, "trace")  # the momentum buffers
        for name, path in self.paths.items():
            variable = lookup(model, path)
            variable.value = jnp.asarray(params[name], variable.value.dtype)
            if name in momentum:
                lookup(trace, path).value = jnp.asarray(momentum[name], variable.value.dtype)
        schedule_count = optax.tree_utils.tree_get(optimizer.opt_state, "count")  # absent without a schedule
        for counter in (optimizer.step, schedule_count):
            if counter is not None:
                counter.value = jnp.asarray(state.step, counter.value.dtype)
        self.graphdef, self.state = nnx.split((model, optimizer))
        self._replicate()

    def get_state(self) -> TrainingState:
        model, optimizer = nnx.merge(self.graphdef, self._local_state())
        trace = optax.tree_utils.tree_get(optimizer.opt_state, "trace")
        spec, step = SPECS[self.model_name], int(optimizer.step.value)
        params = {name: np.asarray(lookup(model, self.paths[name]).value) if name in self.paths
                  else np.int64(step) for name in spec.shapes}  # batches tracked: steps
        momentum = {name: np.asarray(lookup(trace, self.paths[name]).value) for name in spec.trainable}
        return TrainingState(from_nhwc(self.model_name, params), from_nhwc(self.model_name, momentum), step)

    # --- Training -------------------------------------------------------------------------------

    def place(self, images, labels):
        if self.mesh is None:
            return jax.device_put((images, labels), self.jax_device)
        # This process's part of the global batch, split over its devices along the batch axis.
        batch = NamedSharding(self.mesh, PartitionSpec("batch"))
        return (jax.make_array_from_process_local_data(batch, images),
                jax.make_array_from_process_local_data(batch, labels))

    def wait(self, placed):
        jax.block_until_ready(placed)

    def native_input(self, source: NativeInput) -> NativePipeline:
        return native_pipeline(source, self.jax_device)

    def train_step(self, images, labels):
        if self.mesh is not None and isinstance(images, np.ndarray):
            images, labels = self.place(images, labels)
        self.state, loss = train_step(self.graphdef, self.state, images, labels, self.config.label_smoothing)
        self._stepped = images, labels
        return loss

    def synchronize(self) -> None:
        jax.block_until_ready(self.state)

    def losses_to_numpy(self, losses):
        return self._host(jnp.stack(losses))  # in the weights' dtype

    def loss_and_grads(self, images, labels):
        loss, grads = loss_and_grads(self.graphdef, self._local_state(), images, labels, self.config.label_smoothing)
        grads = nnx.to_pure_dict(grads)
        return float(loss), from_nhwc(self.model_name, {name: np.asarray(lookup(grads, self.paths[name]))
                                                        for name in SPECS[self.model_name].trainable})

    # --- Evaluation -----------------------------------------------------------------------------

    def logits(self, images):
        return np.asarray(forward(self.graphdef, self._local_state(), images))

    def evaluate(self, images, labels):
        loss, predicted = evaluate(self.graphdef, self._local_state(), images, labels)
        return float(loss), np.asarray(predicted)

    # --- Built-in equivalents ------------------------------------------------------------------

    def builtin_equivalents(self):
        """The suite's step (one `jax.jit` of `nnx.split` state, donated) against the step of
        Flax's own examples (`nnx.jit` over the model and `nnx.Optimizer` objects), on a copy of
        this adapter's model and optimizer. Optimizer, loss and schedule are Optax's on both sides."""
        model, optimizer = nnx.merge(self.graphdef, jax.tree.map(jnp.copy, self._local_state()))

        @nnx.jit
        def plain(model, optimizer, images, labels):
            loss, grads = nnx.value_and_grad(loss_fn)(model, images, labels, self.config.label_smoothing)
            optimizer.update(model, grads)
            return loss

        return {"step": (self.train_step, lambda images, labels: plain(model, optimizer, images, labels))}

    # --- Introspection --------------------------------------------------------------------------

    def compile_count(self) -> int:
        return _traces["train_step"]

    def peak_device_memory(self):
        """The training step's peak as XLA compiled it (`memory_analysis()`: its arguments, outputs
        and temporaries, cuDNN workspaces included, at their largest together). The device's own
        `peak_bytes_in_use` cannot be reset in JAX and holds what XLA's autotuner allocated while
        compiling. None where the backend gives no analysis (NotImplementedError) or no peak (0)."""
        if self.device != "cuda" or self._stepped is None:
            return None
        shapes = tuple(array.shape for array in self._stepped)
        if shapes not in self._step_peaks:  # asked before every evaluation: compile (and autotune) once per shape
            lowered = train_step.lower(self.graphdef, self.state, *self._stepped, self.config.label_smoothing)
            compiled = lowered.compile()
            try:
                self._step_peaks[shapes] = int(compiled.memory_analysis().peak_memory_in_bytes) or None
            except NotImplementedError:
                self._step_peaks[shapes] = None
        return self._step_peaks[shapes]

    # --- Profiling ------------------------------------------------------------------------------

    def profile(self, batches, folder: Path) -> list[dict]:
        """jax.profiler: a TensorBoard profile (`plugins/profile/<run>/<host>.xplane.pb` and
        `.trace.json.gz`) and a Perfetto trace; each XLA thunk's event (on a GPU, each kernel's:
        `xla_thunk_events`) names its HLO instruction, looked up in the step's optimised HLO module
        (saved beside it as `train_step.hlo.txt`).
        On more than one thread XLA's own convolutions run asynchronously on its intra-op pool and
        their events end when they are dispatched: only a one-thread profile counts them whole."""
        def compiled_hlo() -> str:
            images, labels = self.place(*batches[0])
            return train_step.lower(self.graphdef, self.state, images, labels,
                                    self.config.label_smoothing).compile().as_text()
        return profile_jitted_step(lambda: self.run_steps(batches), compiled_hlo, folder, self.device == "cuda")

    op_category = staticmethod(flax_category)


ADAPTER = FlaxAdapter
