"""TensorFlow adapter: Keras 3 model on the TensorFlow backend, trained eagerly, in a
`tf.function`, XLA-compiled, or by Keras's own training step as `Model.fit` runs it; over several devices, under
`tf.distribute` (`MirroredStrategy` in one process, `MultiWorkerMirroredStrategy` across several). Its
native input: a `tf.data` pipeline."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import ops

# Whether oneDNN's kernels are on: TensorFlow's own tests read it here; no public API says.
from tensorflow.python.util import _pywrap_util_port

from frameworks.base import (
    SINGLE,
    DataParallel,
    DeviceUnavailable,
    NativeInput,
    NativePipeline,
    TrainConfig,
    from_nhwc,
)
from frameworks.keras_common import FIT, KerasAdapter, learning_rate, require_backend
from frameworks.profiles import TF_OP, hlo_sources, self_times, tensorflow_category, tensorflow_device_op

require_backend("tensorflow", "TensorFlow")

# Where TensorFlow's CPU kernels need a tensor's data to start (EIGEN_MAX_ALIGN_BYTES in its pip builds).
ALIGNMENT = 64


def _host_tensor(array: np.ndarray) -> tf.Tensor:
    """A CPU tensor over `array`'s own memory, through DLPack (tf.experimental.dlpack.from_dlpack),
    where TensorFlow can use that memory as it is: C-contiguous, writeable (DLPack's older protocol
    cannot say read-only) and aligned as its kernels require (they abort on unaligned data). Any
    other array is copied, as `tf.constant` and a `tf.function` called with NumPy arrays always do."""
    if array.flags.c_contiguous and array.flags.writeable and array.ctypes.data % ALIGNMENT == 0:
        return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
    return tf.constant(array)


# --- Native input -------------------------------------------------------------------------------


def native_dataset(source: NativeInput, workers: int | None) -> tf.data.Dataset:
    """The recipe in `tf.data`, as TensorFlow's "Better performance with the tf.data API" guide
    writes a pipeline: shuffle over the whole set (afresh each epoch), one parallel `map` for the
    augmentation and normalisation, `batch` without the partial last one, `prefetch`. The random
    crop and flip are the stateless ops of the "Data augmentation" tutorial, each image's seeds
    drawn by `Dataset.random` (a fresh stream each epoch), so a run is reproducible whatever the
    parallelism. `workers`: parallel calls of the `map`, None for AUTOTUNE, 0 for one at a time."""
    pad, size = source.pad, source.images.shape[1:]
    mean, std = tf.constant(source.mean, tf.float32), tf.constant(source.std, tf.float32)

    def prepare(example, seeds):
        image, label = example
        if source.augment:
            padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
            image = tf.image.stateless_random_crop(padded, size, seed=seeds[:2])
            image = tf.image.stateless_random_flip_left_right(image, seed=seeds[2:])
        return (tf.cast(image, tf.float32) / source.scale - mean) / std, label

    images = tf.data.Dataset.from_tensor_slices((source.images, source.labels))
    images = images.shuffle(len(source.labels), seed=source.seed, reshuffle_each_iteration=True)
    seeds = tf.data.Dataset.random(seed=source.seed, rerandomize_each_iteration=True).batch(4)
    calls = tf.data.AUTOTUNE if workers is None else workers or None
    return (tf.data.Dataset.zip(images, seeds).map(prepare, num_parallel_calls=calls)
            .batch(source.batch_size, drop_remainder=True).repeat(source.epochs).prefetch(tf.data.AUTOTUNE))


# --- Adapter ------------------------------------------------------------------------------------

DATA_PARALLEL_VARIANTS = ("function", "eager")  # `strategy.run` in a tf.function, or eagerly


def _strategy(parallel: DataParallel, device: str) -> tf.distribute.Strategy:
    """The strategy that replicates the model over `parallel`'s devices; before TensorFlow starts
    its runtime. One process mirrors over its GPUs, or over as many logical CPU devices; several
    processes form a multi-worker cluster, worker i listening at coordinator port + 1 + i on its
    host (or as the environment's own TF_CONFIG says), each with its devices."""
    kind = "GPU" if device == "cuda" else "CPU"
    physical = tf.config.list_physical_devices(kind)
    if device == "cuda":
        if len(physical) < parallel.devices:
            raise DeviceUnavailable(f"TensorFlow sees {len(physical)} GPUs, not the {parallel.devices} asked for")
        tf.config.set_visible_devices(physical[:parallel.devices], "GPU")
    if parallel.processes == 1:
        if device == "cpu" and tf.config.get_logical_device_configuration(physical[0]) is None:
            tf.config.set_logical_device_configuration(physical[0], [tf.config.LogicalDeviceConfiguration()]
                                                       * parallel.devices)
        return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices(kind)][:parallel.devices])
    if device == "cpu" and parallel.devices > 1:
        raise DeviceUnavailable("TensorFlow's multi-worker strategy drives one CPU device per worker")
    if "TF_CONFIG" not in os.environ:
        host, port = parallel.address(1)
        hosts = parallel.hosts or (host,) * parallel.processes
        os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"{h}:{port + i}" for i, h in enumerate(hosts)]},
                                              "task": {"type": "worker", "index": parallel.rank}})
    return tf.distribute.MultiWorkerMirroredStrategy()


def replicas_in_sync() -> int:
    """The replicas that share BatchNorm's statistics, read when a step runs: all of the strategy's
    inside `strategy.run`, one outside it."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def _string_stats(plane, event) -> dict[str, str]:
    """An XPlane event's string stats by name: stored inline or as a reference to one of the
    plane's stat metadata, whose name is the value."""
    stats = {}
    for stat in event.stats:
        kind = stat.WhichOneof("value")
        if kind in ("str_value", "ref_value"):
            value = stat.str_value if kind == "str_value" else plane.stat_metadata[stat.ref_value].name
            stats[plane.stat_metadata[stat.metadata_id].name] = value
    return stats


class TensorFlowAdapter(KerasAdapter):
    framework = "tensorflow"

    # --- Runtime, before a model is built -------------------------------------------------------

    @classmethod
    def configure_threads(cls, threads: int) -> None:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)

    @classmethod
    def version(cls) -> str:
        return tf.__version__

    @classmethod
    def build_info(cls):
        build_info = tf.sysconfig.get_build_info()
        gpus = tf.config.list_physical_devices("GPU")
        onednn = _pywrap_util_port.IsMklEnabled()
        parts = [f"CUDA {build_info['cuda_version']}, cuDNN {build_info['cudnn_version']}"
                 if build_info.get("is_cuda_build") else "CPU build", f"oneDNN {'on' if onednn else 'off'}",
                 *([f"{len(gpus)} GPU{'s' * (len(gpus) != 1)} seen"] if gpus else [])]
        return {
            "summary": ", ".join(parts),
            "version": tf.__version__,
            "keras": keras.__version__,
            "git_version": tf.version.GIT_VERSION,
            "build": dict(build_info),  # cuda_version, cudnn_version, is_cuda_build...
            "xla": _pywrap_util_port.IsBuiltWithXLA(),
            "onednn": onednn,
            "gpus": [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in gpus],
            "flags": {
                # Its default is on for Linux x86 builds; IsMklEnabled above reads the outcome.
                "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
                "tensor_float_32_execution": tf.config.experimental.tensor_float_32_execution_enabled(),
                "jit": tf.config.optimizer.get_jit(),
            },
        }

    @classmethod
    def apply_tuning(cls, settings):
        refused = {}
        for setting in settings:
            if setting.name == "steps_per_execution":
                # Keras reads it in the loops of fit/evaluate/predict only; the suite hands the train function
                # one batch per call, as train_on_batch does, whatever the setting says.
                refused[setting.name] = (f"Keras {keras.__version__} trains one batch per call of its train function "
                                         f"as the suite times it (train_on_batch's way): steps_per_execution applies "
                                         f"to Model.fit's own loop only")
            elif setting.kind != "env":
                refused[setting.name] = f"the TensorFlow adapter applies no {setting.kind} setting {setting.name!r}"
        return refused

    # No `device_matmul`: the machine's GPU peak comes from PyTorch or JAX.

    def __init__(self, model: str, device: str, variant: str, config: TrainConfig,
                 parallel: DataParallel = SINGLE):
        super().__init__(model, device, variant, config, parallel)
        if device == "cuda" and not tf.config.list_physical_devices("GPU"):
            raise DeviceUnavailable(f"TensorFlow {tf.__version__} sees no GPU (is its CUDA build installed?)")
        if parallel.active and variant not in DATA_PARALLEL_VARIANTS:
            raise DeviceUnavailable(f"tensorflow:{variant} trains on one device here; over several, use "
                                    f"{' or '.join(DATA_PARALLEL_VARIANTS)}")
        self.strategy = _strategy(parallel, device) if parallel.active else tf.distribute.get_strategy()
        tf.config.experimental.enable_tensor_float_32_execution(config.precision == "tf32")
        with self.strategy.scope():  # variables mirrored on every replica
            self.build_model(replicas_in_sync)
            self._build_optimizer()

    def _build_optimizer(self) -> None:
        """A fresh optimizer, and the step that closes over its variables."""
        self.new_optimizer()
        step = self._distributed_step if self.parallel.active else self._step
        if self.variant == FIT:
            self.compile_fit()
        elif self.variant == "eager":
            self._compiled_step = step
        else:
            self._compiled_step = tf.function(step, jit_compile=self.variant == "xla")

    # --- Training -------------------------------------------------------------------------------

    def _step(self, images, labels):
        with tf.GradientTape() as tape:
            loss = self.loss_fn(labels, self.model(images, training=True))
        grads = tape.gradient(loss, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
        return loss

    def _distributed_step(self, images, labels):
        """`_step` on every replica's shard. Keras scales each replica's loss by 1 / replicas and
        its optimizer sums the gradients across them: the global batch's mean, and its loss."""
        losses = self.strategy.run(self._step, args=(images, labels))
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    def place(self, images, labels):
        if self.parallel.active:  # this process's part of the global batch, one shard per replica
            local = self.strategy.num_replicas_in_sync // self.parallel.processes
            first = self.parallel.rank * local  # replicas are numbered process by process

            def shards(arrays):
                size = len(arrays) // local
                return self.strategy.experimental_distribute_values_from_function(
                    lambda context: tf.constant(arrays[(context.replica_id_in_sync_group - first) * size:][:size]))
            return shards(images), shards(labels)
        if self.device == "cpu":  # nothing to copy to: tensors over the batch's own memory
            return _host_tensor(images), _host_tensor(labels)
        with tf.device("/GPU:0"):
            return tf.identity(images), tf.identity(labels)

    def native_input(self, source: NativeInput) -> NativePipeline:
        """`native_dataset`, copied to the GPU ahead of the step where there is one. A given worker
        count also sizes the pipeline's private thread pool, so that it uses that many threads."""
        dataset = native_dataset(source, source.workers)
        if source.workers is None:
            how = "AUTOTUNE (tf.data: map's parallel calls; its threads from TensorFlow's shared pool)"
        else:
            options = tf.data.Options()
            options.threading.private_threadpool_size = max(source.workers, 1)
            dataset = dataset.with_options(options)
            how = f"{source.workers} (map's num_parallel_calls and the pipeline's private thread pool)"
        if self.device == "cuda":
            dataset = dataset.apply(tf.data.experimental.prefetch_to_device("/GPU:0"))
        return NativePipeline(iter(dataset), how)

    def wait(self, placed):
        if self.device == "cpu" and not self.parallel.active:  # a tensor over host memory is there when made
            return
        for value in placed:  # reading one element waits for the copy that produces the tensor
            for tensor in self.strategy.experimental_local_results(value):
                tf.reshape(tensor, [-1])[0].numpy()

    def train_step(self, images, labels):
        if isinstance(images, np.ndarray):  # as `place` takes them: on a CPU, without a copy
            images, labels = self.place(images, labels)
        if self.variant == FIT:
            return self.fit_step(images, labels)
        return self._compiled_step(images, labels)

    def synchronize(self) -> None:
        # Reading a value back waits for everything queued before it on the device.
        self.optimizer.iterations.numpy()

    def loss_and_grads(self, images, labels):
        trainable = self.trainable()
        statistics = [variable.numpy() for variable in self.model.non_trainable_variables]
        with tf.GradientTape() as tape:
            loss = self.loss_fn(labels, self.model(images, training=True))
        grads = tape.gradient(loss, list(trainable.values()))
        for variable, value in zip(self.model.non_trainable_variables, statistics):
            variable.assign(value)  # the forward pass moved BatchNorm's statistics
        return float(loss), from_nhwc(self.model_name, {name: g.numpy() for name, g in zip(trainable, grads)})

    # --- Built-in equivalents ------------------------------------------------------------------

    def builtin_equivalents(self):
        """`TorchSGD` against `keras.optimizers.SGD` (the whole step, and its update alone on fixed
        gradients), and the suite's step against a plain Keras one (that SGD, and
        `SparseCategoricalCrossentropy` without the suite's dtype), on this model. The schedule
        is the same on both sides (`_learning_rate`: a float, or Keras's own `CosineDecay`)."""
        variables = self.model.trainable_variables
        sgd = keras.optimizers.SGD(learning_rate(self.config), momentum=self.config.momentum,
                                   nesterov=self.config.nesterov)
        sgd.build(variables)
        plain_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        graph = (lambda f: f) if self.variant == "eager" else functools.partial(
            tf.function, jit_compile=self.variant == "xla")

        def step_with(optimizer, loss_fn):
            def step(images, labels):
                with tf.GradientTape() as tape:
                    loss = loss_fn(labels, self.model(images, training=True))
                optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
                return loss
            return graph(step)

        rng = np.random.default_rng(0)  # small fixed gradients: the update alone, applied again and again
        gradients = [tf.constant(rng.normal(0, 1e-3, v.shape), v.dtype) for v in variables]

        def update_with(optimizer):
            def update():
                optimizer.apply_gradients(zip(gradients, variables))
                return ops.convert_to_tensor(optimizer.iterations)
            update = graph(update)
            return lambda images, labels: update()

        return {"optimizer": (step_with(self.optimizer, self.loss_fn), step_with(sgd, self.loss_fn)),
                "optimizer update": (update_with(self.optimizer), update_with(sgd)),
                "step": (self.train_step, step_with(sgd, plain_loss))}

    # --- Introspection --------------------------------------------------------------------------

    def compile_count(self):
        if self.variant in ("function", "xla"):
            return self._compiled_step.experimental_get_tracing_count()
        return 0

    def reset_peak_device_memory(self):
        if self.device == "cuda":
            tf.config.experimental.reset_memory_stats("GPU:0")

    def peak_device_memory(self):
        if self.device != "cuda":
            return None
        return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])

    def applied_threads(self):
        return tf.config.threading.get_intra_op_parallelism_threads()

    # --- Profiling ------------------------------------------------------------------------------

    def profile(self, batches, folder: Path) -> list[dict]:
        """tf.profiler: an XSpace (`plugins/profile/<run>/<host>.xplane.pb`, opened by TensorBoard's
        profile plugin or xprof), whose op-kernel events carry "op_name:OpType" names; under XLA
        (`xla`), thunks named by the HLO instruction they run, looked up in the step's optimised
        HLO module (saved beside it as `train_step.hlo.txt`). On a GPU, the device's kernels, each
        under the op or instruction its launch was annotated with (`tensorflow_device_op`): the
        host's events of the same ops time their dispatch, not their work."""
        from tensorflow.tsl.profiler.protobuf import xplane_pb2  # the profiler's own format, read only here

        tf.profiler.experimental.start(str(folder))
        try:
            self.run_steps(batches)
        finally:
            tf.profiler.experimental.stop()
        compiled = {}
        if self.variant == "xla":
            hlo = self._compiled_step.experimental_get_compiler_ir(*batches[0])(stage="optimized_hlo")  # placed ones
            (folder / "train_step.hlo.txt").write_text(hlo)
            compiled = hlo_sources(hlo)
        rows = []
        on_device = self.device == "cuda"
        for path in folder.glob("plugins/profile/*/*.xplane.pb"):
            space = xplane_pb2.XSpace.FromString(path.read_bytes())
            for plane in space.planes:
                if not (plane.name.startswith("/device:GPU") if on_device else plane.name == "/host:CPU"):
                    continue
                for line in plane.lines:
                    events = [(event.offset_ps, event.duration_ps, plane.event_metadata[event.metadata_id].name)
                              for event in line.events]
                    for index, own in self_times(events).items():
                        name = events[index][2]
                        if on_device:
                            found = tensorflow_device_op(_string_stats(plane, line.events[index]), compiled)
                        elif name in compiled:  # its TensorFlow op's "op_name:OpType" where it came from one
                            description, source = compiled[name]
                            found = source or name, f"{name}: {description}"
                        else:
                            found = (name, "") if TF_OP.match(name) and not line.name.startswith("python") else None
                        if found:
                            rows.append({"op": found[0], "calls": 1, "self_us": own / 1e6, "detail": found[1]})
        return rows

    op_category = staticmethod(tensorflow_category)


ADAPTER = TensorFlowAdapter
