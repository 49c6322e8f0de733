"""JAX adapter: Flax NNX model, Optax SGD, one `jax.jit`-compiled step with donated state."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from frameworks.base import Adapter, DeviceUnavailable, Params, TrainConfig, TrainingState, from_nhwc_params, to_nhwc_params

# --- Model --------------------------------------------------------------------------------------


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
        return self.fc3(x).astype(jnp.float32)  # the loss is computed in float32


MODELS = {"lenet": LeNet}
LAYERS = ("conv1", "conv2", "fc1", "fc2", "fc3")

# --- Optimizer ----------------------------------------------------------------------------------


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """PyTorch's SGD: L2 decay added to the gradient, then `trace` (buf = m*buf + g), then -lr."""
    learning_rate = config.learning_rate
    if config.lr_schedule == "cosine":
        learning_rate = optax.cosine_decay_schedule(config.learning_rate, config.total_steps)
    return optax.chain(
        optax.add_decayed_weights(config.weight_decay),
        optax.sgd(learning_rate, momentum=config.momentum),
    )


# --- Compiled functions -------------------------------------------------------------------------

_traces = {"train_step": 0}  # incremented while tracing, so it counts compilations


def loss_fn(model, images, labels):
    logits = model(images)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


@partial(jax.jit, static_argnums=0, donate_argnums=1)
def train_step(graphdef, state, images, labels):
    _traces["train_step"] += 1
    model, optimizer = nnx.merge(graphdef, state)
    loss, grads = nnx.value_and_grad(loss_fn)(model, images, labels)
    optimizer.update(model, grads)
    return nnx.state((model, optimizer)), loss


@partial(jax.jit, static_argnums=0)
def loss_and_grads(graphdef, state, images, labels):
    model, _ = nnx.merge(graphdef, state)
    return nnx.value_and_grad(loss_fn)(model, images, labels)


@partial(jax.jit, static_argnums=0)
def forward(graphdef, state, images):
    model, _ = nnx.merge(graphdef, state)
    return model(images)


@partial(jax.jit, static_argnums=0)
def evaluate(graphdef, state, images, labels):
    logits = forward(graphdef, state, images)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).sum()
    return loss, (logits.argmax(1) == labels).sum()


# --- Adapter ------------------------------------------------------------------------------------


class FlaxAdapter(Adapter):
    framework = "jax"

    def __init__(self, model: str, device: str, variant: str, config: TrainConfig):
        super().__init__(model, device, variant, config)
        if device == "cuda" and jax.default_backend() != "gpu":
            raise DeviceUnavailable(f"JAX {jax.__version__} sees no GPU (backend {jax.default_backend()!r})")
        jax.config.update("jax_default_matmul_precision", "tensorfloat32" if config.precision == "tf32" else "highest")
        self.model = MODELS[model](nnx.Rngs(0), jnp.bfloat16 if config.precision == "bf16" else jnp.float32)
        self._build_optimizer()

    def _build_optimizer(self) -> None:
        optimizer = nnx.Optimizer(self.model, make_optimizer(self.config), wrt=nnx.Param)
        self.graphdef, self.state = nnx.split((self.model, optimizer))

    def _merged(self):
        return nnx.merge(self.graphdef, self.state)

    # --- State ----------------------------------------------------------------------------------

    def set_state(self, state: TrainingState) -> None:
        model, optimizer = self._merged()
        nnx.update(model, _flax_state(model, state.params))
        trace = optax.tree_utils.tree_get(optimizer.opt_state, "trace")  # the momentum buffers
        nnx.replace_by_pure_dict(trace, _flax_pure(state.momentum))
        schedule_count = optax.tree_utils.tree_get(optimizer.opt_state, "count")  # absent without a schedule
        for counter in (optimizer.step, schedule_count):
            if counter is not None:
                counter.value = jnp.asarray(state.step, counter.value.dtype)
        self.graphdef, self.state = nnx.split((model, optimizer))

    def get_state(self) -> TrainingState:
        model, optimizer = self._merged()
        trace = optax.tree_utils.tree_get(optimizer.opt_state, "trace")
        return TrainingState(_canonical(nnx.to_pure_dict(nnx.state(model, nnx.Param))),
                             _canonical(nnx.to_pure_dict(trace)), int(optimizer.step.value))

    # --- Training -------------------------------------------------------------------------------

    def train_step(self, images, labels):
        self.state, loss = train_step(self.graphdef, self.state, images, labels)
        return loss

    def synchronize(self) -> None:
        jax.block_until_ready(self.state)

    def losses_to_numpy(self, losses):
        return np.asarray(jnp.stack(losses), dtype=np.float32)

    def loss_and_grads(self, images, labels):
        loss, grads = loss_and_grads(self.graphdef, self.state, images, labels)
        return float(loss), _canonical(nnx.to_pure_dict(grads))

    # --- Evaluation -----------------------------------------------------------------------------

    def logits(self, images):
        return np.asarray(forward(self.graphdef, self.state, images))

    def evaluate(self, images, labels):
        loss, correct = evaluate(self.graphdef, self.state, images, labels)
        return float(loss), int(correct)

    # --- Introspection --------------------------------------------------------------------------

    def compile_count(self) -> int:
        return _traces["train_step"]

    def peak_device_memory(self):
        if self.device != "cuda":
            return None
        return int(jax.devices()[0].memory_stats()["peak_bytes_in_use"])


def _flax_pure(params: Params) -> dict:
    """Canonical arrays -> Flax's nested {layer: {"kernel", "bias"}} in NHWC layout."""
    converted = to_nhwc_params(params)
    return {layer: {"kernel": jnp.asarray(converted[f"{layer}.weight"]), "bias": jnp.asarray(converted[f"{layer}.bias"])}
            for layer in LAYERS}


def _flax_state(model: nnx.Module, params: Params) -> nnx.State:
    state = nnx.state(model, nnx.Param)
    nnx.replace_by_pure_dict(state, _flax_pure(params))
    return state


def _canonical(pure: dict) -> Params:
    flat = {f"{layer}.{torch_name}": np.asarray(pure[layer][flax_name])
            for layer in LAYERS for torch_name, flax_name in (("weight", "kernel"), ("bias", "bias"))}
    return from_nhwc_params(flat)


ADAPTER = FlaxAdapter
