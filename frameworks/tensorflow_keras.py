"""TensorFlow adapter: Keras 3 model on the TensorFlow backend, trained eagerly, in a
`tf.function`, XLA-compiled, or through Keras's own `train_on_batch`."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import keras
from keras import layers, ops

from frameworks.base import Adapter, DeviceUnavailable, TrainConfig, TrainingState, from_nhwc_params, to_nhwc_params

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
        return ops.cast(self.fc3(x), "float32")  # the loss is computed in float32


MODELS = {"lenet": LeNet}

# --- Optimizer ----------------------------------------------------------------------------------


class TorchSGD(keras.optimizers.Optimizer):
    """SGD with momentum in PyTorch's form. Keras's own SGD keeps `v = m*v - lr*g; w += v`,
    which differs as soon as the learning rate changes, and its `weight_decay` is decoupled;
    here the buffer holds gradients and L2 decay is added to the gradient, as in torch.optim."""

    def __init__(self, learning_rate, momentum, l2_weight_decay, name="torch_sgd", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.momentum = momentum
        self.l2_weight_decay = l2_weight_decay

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
        self.assign_sub(variable, ops.multiply(m, learning_rate))

    def momentum_of(self, variable):
        """The buffer of `variable`: PyTorch's `momentum_buffer`, in the variable's layout."""
        return self.momentums[self._get_variable_index(variable)]


def _learning_rate(config: TrainConfig):
    if config.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(config.learning_rate, config.total_steps)
    return config.learning_rate


# --- Adapter ------------------------------------------------------------------------------------

loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


class KerasAdapter(Adapter):
    framework = "tensorflow"

    def __init__(self, model: str, device: str, variant: str, config: TrainConfig):
        super().__init__(model, device, variant, config)
        if device == "cuda" and not tf.config.list_physical_devices("GPU"):
            raise DeviceUnavailable(f"TensorFlow {tf.__version__} sees no GPU (is its CUDA build installed?)")
        tf.config.experimental.enable_tensor_float_32_execution(config.precision == "tf32")
        self.model = MODELS[model]("mixed_bfloat16" if config.precision == "bf16" else "float32")
        self.model(np.zeros((1, 32, 32, 3), np.float32))  # creates the weights
        self._build_optimizer()

    def _build_optimizer(self) -> None:
        """A fresh optimizer, and the step that closes over its variables."""
        self.optimizer = TorchSGD(_learning_rate(self.config), self.config.momentum, self.config.weight_decay)
        self.optimizer.build(self.model.trainable_variables)
        if self.variant == "fit":
            self.model.compile(optimizer=self.optimizer, loss=loss_fn)
        elif self.variant == "eager":
            self._compiled_step = self._step
        else:
            self._compiled_step = tf.function(self._step, jit_compile=self.variant == "xla")

    # --- State ----------------------------------------------------------------------------------

    def _named_variables(self):
        for layer_name in ("conv1", "conv2", "fc1", "fc2", "fc3"):
            layer = getattr(self.model, layer_name)
            yield f"{layer_name}.weight", layer.kernel
            yield f"{layer_name}.bias", layer.bias

    def set_state(self, state: TrainingState) -> None:
        params, momentum = to_nhwc_params(state.params), to_nhwc_params(state.momentum)
        for name, variable in self._named_variables():
            variable.assign(params[name])
            self.optimizer.momentum_of(variable).assign(momentum[name])
        self.optimizer.iterations.assign(state.step)  # the schedule reads it

    def get_state(self) -> TrainingState:
        variables = dict(self._named_variables())
        return TrainingState(
            from_nhwc_params({name: variable.numpy() for name, variable in variables.items()}),
            from_nhwc_params({name: self.optimizer.momentum_of(variable).numpy() for name, variable in variables.items()}),
            int(self.optimizer.iterations.numpy()),
        )

    # --- Training -------------------------------------------------------------------------------

    def _step(self, images, labels):
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, self.model(images, training=True))
        grads = tape.gradient(loss, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
        return loss

    def train_step(self, images, labels):
        if self.variant == "fit":
            return self.model.train_on_batch(images, labels)
        return self._compiled_step(images, labels)

    def synchronize(self) -> None:
        # Reading a value back waits for everything queued before it on the device.
        self.optimizer.iterations.numpy()

    def losses_to_numpy(self, losses):
        return np.array([float(loss) for loss in losses], dtype=np.float32)

    def loss_and_grads(self, images, labels):
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, self.model(images, training=True))
        grads = tape.gradient(loss, [variable for _, variable in self._named_variables()])
        names = [name for name, _ in self._named_variables()]
        return float(loss), from_nhwc_params({name: g.numpy() for name, g in zip(names, grads)})

    # --- Evaluation -----------------------------------------------------------------------------

    def logits(self, images):
        return self.model(images, training=False).numpy()

    def evaluate(self, images, labels):
        logits = self.model(images, training=False)
        loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        correct = tf.reduce_sum(tf.cast(tf.argmax(logits, 1, output_type=tf.int32) == labels, tf.int32))
        return float(loss), int(correct)

    # --- Introspection --------------------------------------------------------------------------

    def compile_count(self):
        if self.variant in ("function", "xla"):
            return self._compiled_step.experimental_get_tracing_count()
        return 0

    def peak_device_memory(self):
        if self.device != "cuda":
            return None
        return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])

    def applied_threads(self):
        return tf.config.threading.get_intra_op_parallelism_threads()


ADAPTER = KerasAdapter
