"""Keras 3 on its JAX backend: the model of `frameworks.keras_common` trained by Keras's own training
step as `Model.fit` runs it, jit-compiled (`fit`, Keras's choice for this backend) or run op by op
(`eager`, `jit_compile=False`). As in `fit`, the variables' values travel through the compiled step
as one state, donated to it, and return to the Keras variables only when something reads them. Over
several devices, Keras's own data parallelism (`keras.distribution.DataParallel`: the variables
replicated, each batch split along its first axis, one program for the mesh). Its native input:
JAX's (Grain), as `frameworks.jax_flax` builds it."""

from __future__ import annotations

import contextlib
from pathlib import Path

import jax
import keras
import numpy as np

from frameworks import REGISTRY
from frameworks.base import SINGLE, DataParallel, DeviceUnavailable, NativeInput, NativePipeline, TrainConfig, from_nhwc
from frameworks.jax_flax import FlaxAdapter, data_parallel_mesh, native_pipeline, profile_jitted_step
from frameworks.keras_common import FIT, KerasAdapter, require_backend
from frameworks.profiles import keras_category

require_backend("jax", "keras_jax")
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"  # jax._src.dispatch's name for it


# XLA compilations of Keras's train step in this process, as JAX reports each (its monitoring
# events): the step is jitted inside Keras, out of reach of a trace counter.
_compiles = {"train_step": 0}


def _count_compile(event: str, duration: float, **metadata) -> None:
    if event == BACKEND_COMPILE_EVENT and metadata.get("fun_name") == "jit(train_step)":
        _compiles["train_step"] += 1


jax.monitoring.register_event_duration_secs_listener(_count_compile)


def _jitted(function):
    """The `jax.jit` function that Keras's train function closes over (`make_train_function` wraps it
    in a plain function that takes the state and an iterator), or None where the step is not jitted."""
    for cell in function.__closure__ or ():
        inner = cell.cell_contents
        if hasattr(inner, "lower") and hasattr(inner, "eval_shape"):
            return inner
        if callable(inner) and getattr(inner, "__closure__", None):
            found = _jitted(inner)
            if found is not None:
                return found
    return None


class KerasJaxAdapter(KerasAdapter):
    framework = "keras_jax"
    JIT_COMPILE = {FIT: "auto", "eager": False}

    # --- Runtime, before a model is built -------------------------------------------------------

    @classmethod
    def configure_threads(cls, threads: int) -> None:
        """Nothing to set: the process is pinned to `threads` cores, which bounds XLA's CPU pool."""

    @classmethod
    def version(cls) -> str:
        return keras.__version__  # JAX's: env.json's builds and distributions

    @classmethod
    def build_info(cls):
        info = FlaxAdapter.build_info()
        return {**info, "summary": f"Keras {keras.__version__} on JAX {jax.__version__}: {info['summary']}",
                "keras": keras.__version__, "jax": jax.__version__}

    def __init__(self, model: str, device: str, variant: str, config: TrainConfig,
                 parallel: DataParallel = SINGLE):
        super().__init__(model, device, variant, config, parallel)
        self.distribution = None  # Keras's data parallelism, over several devices
        if parallel.processes > 1:
            raise DeviceUnavailable(REGISTRY["keras_jax"].no_multi_node)
        if parallel.active:  # the mesh of the JAX adapter, in Keras's terms: its one axis splits the batch
            mesh = data_parallel_mesh(parallel, device)
            self.distribution = keras.distribution.DataParallel(
                keras.distribution.DeviceMesh((parallel.replicas,), list(mesh.axis_names), mesh.devices))
        if device == "cuda" and jax.default_backend() != "gpu":
            raise DeviceUnavailable(f"JAX {jax.__version__} sees no GPU (backend {jax.default_backend()!r})")
        self.jax_device = jax.local_devices(backend="gpu" if device == "cuda" else "cpu")[0]
        jax.config.update("jax_default_matmul_precision", "tensorfloat32" if config.precision == "tf32" else "highest")
        if config.precision == "fp64":  # process-wide, so parity computes fp64 last
            jax.config.update("jax_enable_x64", True)
        with self._scope():  # over several devices, every variable replicated on each
            self.build_model()
            self._build_optimizer()
        self._forward = jax.jit(lambda trainable, non_trainable, images: self.model.stateless_call(
            trainable, non_trainable, images, training=False)[0])
        self._step_peaks: dict[tuple, int | None] = {}

    def _build_optimizer(self) -> None:
        self.new_optimizer()
        self.compile_fit()

    def _scope(self):
        """Keras's distribution, where the adapter trains on several devices: Keras reads it as it
        creates variables, builds the train function and places `train_on_batch`'s batch. Scoped,
        not set for the process: parity trains on one device after several in the same process."""
        return self.distribution.scope() if self.distribution is not None else contextlib.nullcontext()

    def compile_fit(self, optimizer=None, loss=None) -> None:
        with self._scope():  # the train function's output shardings: the variables' own
            super().compile_fit(optimizer, loss)
        # Keras's metric variables as `reset_metrics` leaves them (uncommitted zeros), passed to every step so
        # that it reports its own batch's loss: NumPy arrays, copied in by each call, never donated away.
        self._zero_metrics = [np.zeros(variable.shape, variable.dtype) for variable in self.model.metrics_variables]
        self._commit()
        self._state = None  # the training state while it travels through the step; None: in the variables
        self._stepped = None  # the last batch trained on: its shapes are the compiled step's

    # --- The training state, as `fit` carries it ------------------------------------------------

    def _groups(self) -> tuple[list, list, list, list]:
        """The variables `fit` carries through its step, in its order."""
        model = self.model
        return model.trainable_variables, model.non_trainable_variables, model.optimizer.variables, \
            model.metrics_variables

    def _carried(self) -> tuple:
        if self._state is None:  # `fit` takes the values out of the variables before its first step
            trainable, non_trainable, optimizer, _ = self._groups()
            self._state = ([v.value for v in trainable], [v.value for v in non_trainable],
                           [v.value for v in optimizer], self._zero_metrics)
        return self._state

    def _commit(self) -> None:
        """Every variable's value committed to the adapter's device. Keras creates and assigns them
        uncommitted, while the step's outputs are committed: `fit` compiles its step a second time
        at its second step (the same program, for other argument placements). Committed first, the
        step compiles once, at the first step, where the suite times compilation."""
        if self.distribution is not None:  # Keras placed them on the mesh, committed
            return
        for variables in self._groups()[:3]:  # the metrics are reset to uncommitted zeros before every step
            for variable in variables:
                variable.assign(jax.device_put(variable.value, self.jax_device))

    def _sync(self) -> None:
        """The state back into the Keras variables, as `fit` does at an epoch's end."""
        if self._state is None:
            return
        for variables, values in zip(self._groups(), self._state):
            for variable, value in zip(variables, values):
                variable.assign(value)
        self._state = None

    # --- State ----------------------------------------------------------------------------------

    def set_state(self, state):
        self._sync()
        super().set_state(state)
        self._commit()

    def get_state(self):
        self._sync()
        return super().get_state()

    # --- Training -------------------------------------------------------------------------------

    def place(self, images, labels):
        if self.distribution is None:
            return jax.device_put((images, labels), self.jax_device)
        # This process's part of the global batch, split over its devices as Keras's data adapter splits it.
        layout = self.distribution.get_data_layout
        return tuple(jax.make_array_from_process_local_data(layout(part.shape).backend_layout, part)
                     for part in (images, labels))

    def wait(self, placed):
        jax.block_until_ready(placed)

    def native_input(self, source: NativeInput) -> NativePipeline:
        """JAX's own pipeline (`frameworks.jax_flax.native_pipeline`: Grain), placed on this device."""
        return native_pipeline(source, self.jax_device)

    def train_step(self, images, labels):
        if isinstance(images, np.ndarray):  # on the device first, as fit's data adapter puts each batch
            images, labels = self.place(images, labels)
        if not self.step_built:  # through `train_on_batch`, which carries the variables' own values
            self._sync()
            self._stepped = images, labels
            with self._scope():  # it places the batch on the mesh itself
                return self.fit_step(images, labels)
        trainable, non_trainable, optimizer, _ = self._carried()
        state = (trainable, non_trainable, optimizer, self._zero_metrics)
        logs, self._state = self.model.train_function(state, iter([(images, labels, None)]))
        self._stepped = images, labels
        return logs["loss"]

    def synchronize(self) -> None:
        jax.block_until_ready(self._state if self._state is not None else
                              [variable.value for variable in self.model.variables])

    def loss_and_grads(self, images, labels):
        self._sync()
        trainable = self.trainable()
        order = {id(variable): index for index, variable in enumerate(self.model.trainable_variables)}
        values = [variable.value for variable in self.model.trainable_variables]
        non_trainable = [variable.value for variable in self.model.non_trainable_variables]

        def loss_of(values):  # stateless: BatchNorm's statistics stay as they are
            logits, _ = self.model.stateless_call(values, non_trainable, images, training=True)
            return self.loss_fn(labels, logits)

        loss, grads = jax.value_and_grad(loss_of)(values)
        return float(loss), from_nhwc(self.model_name, {name: np.asarray(grads[order[id(variable)]])
                                                        for name, variable in trainable.items()})

    # --- Evaluation -----------------------------------------------------------------------------

    def forward(self, images):
        self._sync()
        return self._forward([v.value for v in self.model.trainable_variables],
                             [v.value for v in self.model.non_trainable_variables], images)

    # --- Introspection --------------------------------------------------------------------------

    def compile_count(self) -> int:
        return _compiles["train_step"]

    def _compiled_step(self):
        """The train function's step as XLA compiled it for the last batch trained on: compiled again
        to be read, which is not the step recompiling."""
        counted = _compiles["train_step"]
        compiled = _jitted(self.model.train_function).lower(self._carried(), self._stepped).compile()
        _compiles["train_step"] = counted
        return compiled

    def peak_device_memory(self):
        """The train function's peak as XLA compiled it (`memory_analysis()`), as for the JAX adapter:
        the device's own peak cannot be reset in JAX and holds what the autotuner allocated."""
        jitted = _jitted(self.model.train_function)
        if self.device != "cuda" or self._stepped is None or jitted is None:
            return None
        shapes = tuple(array.shape for array in self._stepped)
        if shapes not in self._step_peaks:
            compiled = self._compiled_step()
            try:
                self._step_peaks[shapes] = int(compiled.memory_analysis().peak_memory_in_bytes) or None
            except NotImplementedError:
                self._step_peaks[shapes] = None
        return self._step_peaks[shapes]

    # --- Profiling ------------------------------------------------------------------------------

    def profile(self, batches, folder: Path) -> list[dict]:
        """jax.profiler, as for the JAX adapter (`FlaxAdapter.profile`): a TensorBoard profile and a
        Perfetto trace, each XLA thunk of Keras's jitted `train_step` named by its HLO instruction,
        looked up in the step's optimised HLO module (saved beside it as `train_step.hlo.txt`)."""
        if _jitted(self.model.train_function) is None:
            raise ValueError(f"keras_jax:{self.variant} runs op by op: no compiled step to profile")
        return profile_jitted_step(lambda: self.run_steps(batches), lambda: self._compiled_step().as_text(), folder,
                                   self.device == "cuda")

    op_category = staticmethod(keras_category)


ADAPTER = KerasJaxAdapter
