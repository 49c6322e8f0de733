"""The Keras 3 model, BatchNorm, optimizer, learning-rate schedule and loss, written with `keras` and
`keras.ops` only, so that they run on whichever backend `KERAS_BACKEND` chose; what a backend must
supply (how many replicas share a batch's statistics) its adapter passes in. And what the adapters of
the Keras backends share (`KerasAdapter`): the model built and its canonical state read and written
through Keras variables, and Keras's own training step as `Model.fit` runs it."""

from __future__ import annotations

import functools
from collections.abc import Callable

import keras
import numpy as np
from keras import layers, ops

from frameworks.base import (
    BATCHNORM_EPSILON,
    BATCHNORM_MOMENTUM,
    MODELS as SPECS,
    RESNET9_LOGIT_SCALE,
    Adapter,
    TrainConfig,
    TrainingState,
    from_nhwc,
    to_nhwc,
    variable_paths,
)


def one_replica() -> int:
    """On one device, a step's batch is the whole batch."""
    return 1


# --- Model --------------------------------------------------------------------------------------


class LeNet(keras.Model):
    def __init__(self, dtype: str = "float32"):
        super().__init__(dtype=dtype)
        self.conv1 = layers.Conv2D(6, 5, dtype=dtype)
        self.conv2 = layers.Conv2D(16, 5, dtype=dtype)
        self.fc1 = layers.Dense(120, dtype=dtype)
        self.fc2 = layers.Dense(84, dtype=dtype)
        self.fc3 = layers.Dense(10, dtype=dtype)

    def call(self, x, training=False):  # the same in training: no BatchNorm
        x = ops.max_pool(ops.relu(self.conv1(x)), 2, strides=2)
        x = ops.max_pool(ops.relu(self.conv2(x)), 2, strides=2)
        x = ops.reshape(x, (ops.shape(x)[0], -1))  # NHWC flatten: fc1's inputs are (row, column, channel)
        x = ops.relu(self.fc1(x))
        x = ops.relu(self.fc2(x))
        return ops.cast(self.fc3(x), self.variable_dtype)  # the loss is computed in the weights' dtype


class TorchBatchNorm(layers.BatchNormalization):
    """BatchNorm as PyTorch computes it. Keras moves `moving_variance` towards the biased batch
    variance, PyTorch towards the unbiased one (n / (n - 1) larger); both normalise by the biased
    one. Momentum and epsilon are PyTorch's, restated in Keras's terms (weight of the old value).
    `replicas` says, when a training step runs, how many replicas compute the statistics of the
    whole global batch together (as PyTorch's SyncBatchNorm does): the backend's distribution knows."""

    def __init__(self, replicas: Callable[[], int] = one_replica, **kwargs):
        super().__init__(momentum=1.0 - BATCHNORM_MOMENTUM, epsilon=BATCHNORM_EPSILON, **kwargs)
        self.replicas = replicas

    def call(self, inputs, training=False):
        if not training:
            return super().call(inputs, training=False)
        x = ops.cast(inputs, self.variable_dtype)  # statistics in float32 (or float64), as Keras keeps them
        replicas = self.replicas()
        mean, variance = ops.moments(x, axes=(0, 1, 2), synchronized=replicas > 1)
        shape = ops.shape(x)
        count = ops.cast(shape[0] * shape[1] * shape[2] * replicas, self.variable_dtype)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum
                                    + variance * count / (count - 1.0) * (1.0 - self.momentum))
        outputs = ops.batch_normalization(x, mean, variance, axis=-1, offset=self.beta, scale=self.gamma,
                                          epsilon=self.epsilon)
        return ops.cast(outputs, self.compute_dtype)


class ConvBN(layers.Layer):
    def __init__(self, channels: int, dtype: str, replicas: Callable[[], int]):
        super().__init__(dtype=dtype)
        self.conv = layers.Conv2D(channels, 3, padding="same", use_bias=False, dtype=dtype)
        self.bn = TorchBatchNorm(replicas, dtype=dtype)

    def call(self, x, training=False):
        return ops.relu(self.bn(self.conv(x), training=training))


class Residual(layers.Layer):
    def __init__(self, channels: int, dtype: str, replicas: Callable[[], int]):
        super().__init__(dtype=dtype)
        self.a = ConvBN(channels, dtype, replicas)
        self.b = ConvBN(channels, dtype, replicas)

    def call(self, x, training=False):
        return x + self.b(self.a(x, training=training), training=training)


class ResNet9(keras.Model):
    def __init__(self, dtype: str = "float32", replicas: Callable[[], int] = one_replica):
        super().__init__(dtype=dtype)
        self.prep = ConvBN(64, dtype, replicas)
        self.layer1 = ConvBN(128, dtype, replicas)
        self.res1 = Residual(128, dtype, replicas)
        self.layer2 = ConvBN(256, dtype, replicas)
        self.layer3 = ConvBN(512, dtype, replicas)
        self.res3 = Residual(512, dtype, replicas)
        self.fc = layers.Dense(10, use_bias=False, dtype=dtype)

    def call(self, x, training=False):
        x = self.prep(x, training=training)
        x = self.res1(ops.max_pool(self.layer1(x, training=training), 2, strides=2), training=training)
        x = ops.max_pool(self.layer2(x, training=training), 2, strides=2)
        x = self.res3(ops.max_pool(self.layer3(x, training=training), 2, strides=2), training=training)
        x = ops.max(x, axis=(1, 2))  # global max-pool
        return ops.cast(self.fc(x), self.variable_dtype) * RESNET9_LOGIT_SCALE


# name -> model(dtype, replicas); LeNet has no BatchNorm, so no replicas to ask.
MODELS: dict[str, Callable[[str, Callable[[], int]], keras.Model]] = {
    "lenet": lambda dtype, replicas: LeNet(dtype), "resnet9": ResNet9}
# Canonical (PyTorch) leaf names -> each Keras layer type's attribute, so a model maps by rule.
VARIABLE_NAMES = {
    layers.Conv2D: {"weight": "kernel", "bias": "bias"},
    layers.Dense: {"weight": "kernel", "bias": "bias"},
    layers.BatchNormalization: {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
                                "running_var": "moving_variance"},  # no num_batches_tracked
}

# --- Optimizer ----------------------------------------------------------------------------------


class TorchSGD(keras.optimizers.Optimizer):
    """SGD with momentum in PyTorch's form. Keras's own SGD keeps `v = m*v - lr*g; w += v` (with
    Nesterov `w += m*v - lr*g`), which differs as soon as the learning rate changes, and its
    `weight_decay` is decoupled; here the buffer holds gradients and L2 decay is added to the
    gradient, as in torch.optim (Nesterov: `w -= lr * (g + m*buf)`). Keras's buffer, scaled by the
    rate, could not carry PyTorch's `momentum_buffer` bit for bit either (nor at all where lr is 0).
    Its update costs no measurable share of the step against Keras's SGD (`python -m
    benchmarks.hotpath`, docs/tuning.md)."""

    def __init__(self, learning_rate, momentum, l2_weight_decay, nesterov=False, name="torch_sgd", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.momentum = momentum
        self.l2_weight_decay = l2_weight_decay
        self.nesterov = nesterov

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = self.add_optimizer_variables(variables, "momentum")

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if self.l2_weight_decay:
            gradient = ops.add(gradient, ops.multiply(variable, self.l2_weight_decay))
        m = self.momentum_of(variable)
        self.assign(m, ops.add(ops.multiply(m, self.momentum), gradient))
        step = ops.add(gradient, ops.multiply(m, self.momentum)) if self.nesterov else m
        self.assign_sub(variable, ops.multiply(step, learning_rate))

    def momentum_of(self, variable):
        """The buffer of `variable`: PyTorch's `momentum_buffer`, in the variable's layout."""
        return self.momentums[self._get_variable_index(variable)]


class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Piecewise linear: 0 at step 0, `peak` at `warmup_steps`, 0 at `total_steps` and after."""

    def __init__(self, peak, warmup_steps: float, total_steps: int):
        self.peak, self.warmup_steps, self.total_steps = peak, warmup_steps, total_steps

    def __call__(self, step):
        step = ops.minimum(ops.cast(step, self.peak.dtype), self.total_steps)
        rising = self.peak * step / self.warmup_steps if self.warmup_steps else self.peak
        falling = self.peak * (self.total_steps - step) / (self.total_steps - self.warmup_steps)
        return ops.where(step < self.warmup_steps, rising, falling)

    def get_config(self):
        return {"peak": float(self.peak), "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}


def learning_rate(config: TrainConfig):
    # A schedule computes in its initial rate's dtype; a Python float would make it float32.
    rate = ops.convert_to_tensor(config.learning_rate, keras.config.floatx())
    if config.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(rate, config.total_steps)
    if config.lr_schedule == "onecycle":
        return OneCycle(rate, config.warmup_steps, config.total_steps)
    return config.learning_rate


class SmoothedCrossentropy(keras.losses.Loss):
    """Cross-entropy from logits and integer labels with label smoothing, which Keras offers only
    for one-hot labels (`CategoricalCrossentropy`): the same targets as PyTorch's."""

    def __init__(self, label_smoothing: float, classes: int = 10, **kwargs):
        super().__init__(**kwargs)
        self.label_smoothing, self.classes = label_smoothing, classes

    def call(self, y_true, y_pred):
        targets = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), self.classes, dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(targets, y_pred, from_logits=True,
                                                     label_smoothing=self.label_smoothing)


def loss_function(config: TrainConfig, dtype: str) -> keras.losses.Loss:
    if config.label_smoothing:
        return SmoothedCrossentropy(config.label_smoothing, dtype=dtype)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=dtype)


# --- What the Keras backends' adapters share ---------------------------------------------------

FIT = "fit"  # the variant that trains as `Model.fit` does, `jit_compile` as Keras resolves "auto"


def require_backend(backend: str, framework: str) -> None:
    """Refuse, at import, a Keras that runs on another backend than `framework`'s: its workers get
    KERAS_BACKEND from the registry; anyone importing the adapter elsewhere gets this one message."""
    if keras.backend.backend() != backend:
        raise ImportError(f"Keras runs on its {keras.backend.backend()} backend: the {framework} adapter needs "
                          f"KERAS_BACKEND={backend} before keras is imported")


class KerasAdapter(Adapter):
    """A model of this module on the backend Keras runs on. `fit_step` is Keras's own training step
    as `Model.fit` runs it: the model compiled with the suite's optimizer and loss, and its train
    function called on one batch. Each subclass says how its variants compile that step
    (`JIT_COMPILE`: variant -> `jit_compile`, "auto" for Keras's own choice, which `jit_compile` then
    holds as the installed Keras resolved it for this model and device)."""

    JIT_COMPILE: dict[str, bool | str] = {FIT: "auto"}

    def build_model(self, replicas: Callable[[], int] = one_replica) -> None:
        """The model in the configured precision, its loss, and a fresh optimizer (`build_optimizer`).
        Before it, the adapter sets what its backend needs for float64 (Keras's floatx follows here)."""
        config = self.config
        if config.precision == "fp64":  # float64 learning rates too; process-wide, so parity computes fp64 last
            keras.config.set_floatx("float64")
        policy = {"bf16": "mixed_bfloat16", "fp64": "float64"}.get(config.precision, "float32")
        self.model = MODELS[self.model_name](policy, replicas)
        self.loss_fn = loss_function(config, self.model.variable_dtype)
        self.model(np.zeros((1, 32, 32, 3), np.float32))  # creates the weights
        self.paths = variable_paths(self.model_name, self.model, VARIABLE_NAMES)

    def new_optimizer(self) -> None:
        """A fresh optimizer (`self.optimizer`) over the model's weights."""
        self.optimizer = TorchSGD(learning_rate(self.config), self.config.momentum, self.config.weight_decay,
                                  self.config.nesterov)
        self.optimizer.build(self.model.trainable_variables)

    def compile_fit(self, optimizer: keras.optimizers.Optimizer | None = None,
                    loss: keras.losses.Loss | None = None) -> None:
        """Compile the model as a Keras user does before `fit`, with this variant's `jit_compile`: with
        the suite's optimizer and loss, or those given."""
        self.model.compile(optimizer=optimizer or self.optimizer, loss=loss or self.loss_fn,
                           jit_compile=self.JIT_COMPILE[self.variant])
        self.jit_compile = bool(self.model.jit_compile)  # "auto" resolved, for this model and device
        self.model.make_train_function()
        self.step_built = False  # Keras builds its compiled loss and metrics on a first batch

    def fit_step(self, images, labels):
        """One batch through the model's train function, as `fit` feeds it one at a time; the loss
        of that batch (Keras's loss tracker, reset as `train_on_batch` resets it), without a host
        sync: `fit` reads it back only where a callback asks. The first batch goes through
        `train_on_batch`, which builds the compiled loss and metrics on it as `fit` does before its
        first step (torch.compile cannot trace that build) and returns the loss on the host."""
        if not self.step_built:
            self.step_built = True
            return np.asarray(self.model.train_on_batch(images, labels), self.model.variable_dtype)
        self.model.reset_metrics()
        return self.model.train_function([(images, labels, None)])["loss"]  # (x, y, sample_weight)

    def builtin_equivalents(self):
        """The suite's step against Keras's own on a copy of this model: compiled with
        `keras.optimizers.SGD` (Keras's form of momentum, the same schedule) and a plain
        `SparseCategoricalCrossentropy`, trained by the same kind of train function."""
        plain = type(self)(self.model_name, self.device, self.variant, self.config, self.parallel)
        plain.model.set_weights(self.model.get_weights())
        sgd = keras.optimizers.SGD(learning_rate(self.config), momentum=self.config.momentum,
                                   nesterov=self.config.nesterov)
        plain.compile_fit(sgd, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return {"step": (self.train_step, plain.train_step)}

    # --- State ----------------------------------------------------------------------------------

    def _variables(self) -> dict:
        """Canonical name -> Keras variable."""
        return {name: functools.reduce(getattr, path, self.model) for name, path in self.paths.items()}

    def set_state(self, state: TrainingState) -> None:
        params, momentum = to_nhwc(self.model_name, state.params), to_nhwc(self.model_name, state.momentum)
        for name, variable in self._variables().items():
            variable.assign(params[name])
            if name in momentum:
                self.optimizer.momentum_of(variable).assign(momentum[name])
        self.optimizer.iterations.assign(state.step)  # the schedule reads it

    def get_state(self) -> TrainingState:
        spec, variables = SPECS[self.model_name], self._variables()
        step = int(ops.convert_to_numpy(self.optimizer.iterations.value))
        params = {name: ops.convert_to_numpy(variables[name].value) if name in variables
                  else np.int64(step) for name in spec.shapes}  # batches tracked: steps
        momentum = {name: ops.convert_to_numpy(self.optimizer.momentum_of(variables[name]).value)
                    for name in spec.trainable}
        return TrainingState(from_nhwc(self.model_name, params), from_nhwc(self.model_name, momentum), step)

    def trainable(self) -> dict:
        """Canonical name -> trainable Keras variable, in canonical order."""
        variables = self._variables()
        return {name: variables[name] for name in SPECS[self.model_name].trainable}

    def losses_to_numpy(self, losses):
        return np.array([ops.convert_to_numpy(loss) for loss in losses])  # in the weights' dtype

    # --- Evaluation -----------------------------------------------------------------------------

    def forward(self, images):
        """The model in evaluation mode, on the backend's tensors."""
        return self.model(images, training=False)

    def logits(self, images):
        return ops.convert_to_numpy(self.forward(images))

    def evaluate(self, images, labels):
        logits = self.forward(images)
        loss = ops.sum(ops.sparse_categorical_crossentropy(labels, logits, from_logits=True))
        return float(ops.convert_to_numpy(loss)), ops.convert_to_numpy(ops.argmax(logits, axis=1))

