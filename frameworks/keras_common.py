"""The Keras 3 model, BatchNorm, optimizer, learning-rate schedule and loss, written with `keras` and
`keras.ops` only, so that they run on whichever backend `KERAS_BACKEND` chose; what a backend must
supply (how many replicas share a batch's statistics) its adapter passes in."""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers, ops

from frameworks.base import BATCHNORM_EPSILON, BATCHNORM_MOMENTUM, RESNET9_LOGIT_SCALE, TrainConfig


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

    def call(self, x):
        x = ops.max_pool(ops.relu(self.conv1(x)), 2)
        x = ops.max_pool(ops.relu(self.conv2(x)), 2)
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
        x = self.res1(ops.max_pool(self.layer1(x, training=training), 2), training=training)
        x = ops.max_pool(self.layer2(x, training=training), 2)
        x = self.res3(ops.max_pool(self.layer3(x, training=training), 2), training=training)
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
