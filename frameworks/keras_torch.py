"""Keras 3 on its PyTorch backend: the model of `frameworks.keras_common` trained by Keras's own
training step as `Model.fit` runs it, eagerly (`fit`, Keras's choice for this backend) or compiled by
`torch.compile` (`compile`, `jit_compile=True`). The variables are torch tensors on the device Keras
chose (KERAS_TORCH_DEVICE, which the registry sets to the job's). Its native input: PyTorch's
(`DataLoader`), as `frameworks.pytorch` builds it."""

from __future__ import annotations

import keras
import torch

from frameworks import REGISTRY
from frameworks.base import SINGLE, DataParallel, DeviceUnavailable, NativeInput, NativePipeline, TrainConfig, from_nhwc
from frameworks.keras_common import FIT, KerasAdapter, require_backend
from frameworks.profiles import torch_category
from frameworks.pytorch import PyTorchAdapter, _configure_numerics, apply_state, held_state, native_pipeline

require_backend("torch", "keras_torch")


class KerasTorchAdapter(KerasAdapter):
    framework = "keras_torch"
    JIT_COMPILE = {FIT: "auto", "compile": True}

    # --- Runtime, before a model is built -------------------------------------------------------

    @classmethod
    def configure_threads(cls, threads: int) -> None:
        torch.set_num_threads(threads)

    @classmethod
    def version(cls) -> str:
        return keras.__version__  # PyTorch's: env.json's builds and distributions

    @classmethod
    def build_info(cls):
        info = PyTorchAdapter.build_info()
        return {**info, "summary": f"Keras {keras.__version__} on PyTorch {torch.__version__}: {info['summary']}",
                "keras": keras.__version__, "torch": torch.__version__}

    @classmethod
    def apply_tuning(cls, settings):
        refused = {}
        for setting in settings:
            if setting.kind == "state":
                reason = apply_state(setting)
                if reason:
                    refused[setting.name] = reason
            elif setting.kind != "env":
                refused[setting.name] = f"the keras_torch adapter applies no {setting.kind} setting {setting.name!r}"
        return refused

    @classmethod
    def tuning_state(cls, settings):
        return {**super().tuning_state(settings), **held_state(settings)}

    def __init__(self, model: str, device: str, variant: str, config: TrainConfig,
                 parallel: DataParallel = SINGLE):
        super().__init__(model, device, variant, config, parallel)
        if parallel.active:
            raise DeviceUnavailable(REGISTRY["keras_torch"].no_data_parallel)
        if device == "cuda" and not torch.cuda.is_available():
            raise DeviceUnavailable(f"PyTorch {torch.__version__} sees no CUDA device")
        self.torch_device = torch.device(device)
        self.dtype = torch.float64 if config.precision == "fp64" else torch.float32  # of weights and inputs
        if keras.src.backend.torch.core.get_device() != device:  # Keras places every variable there
            raise DeviceUnavailable(f"Keras places its torch tensors on {keras.src.backend.torch.core.get_device()}, "
                                    f"not {device} (KERAS_TORCH_DEVICE)")
        _configure_numerics(config)
        self.build_model()
        self._build_optimizer()

    def _build_optimizer(self) -> None:
        self.new_optimizer()
        self.compile_fit()

    def compile_fit(self, optimizer=None, loss=None) -> None:
        """Keras's train step starts by discarding the gradients the previous step left (`zero_grad`),
        and torch.compile specialises on whether there are any: Keras's own `fit` compiles the step at
        its first call and again at its second. Given gradients first (zeros, which `zero_grad`
        discards), the step compiles once, at the first step, where the suite times compilation."""
        super().compile_fit(optimizer, loss)
        if self.jit_compile:
            for variable in self.model.trainable_variables:
                variable.value.grad = torch.zeros_like(variable.value)

    # --- Training -------------------------------------------------------------------------------

    def place(self, images, labels):
        if isinstance(images, torch.Tensor):
            return images, labels
        images, labels = torch.from_numpy(images), torch.from_numpy(labels)  # on a CPU: the batch's own memory
        if self.torch_device.type == "cuda":  # page-locked host memory: the copy runs asynchronously
            images, labels = images.pin_memory(), labels.pin_memory()
        return images.to(self.torch_device, non_blocking=True), labels.to(self.torch_device, non_blocking=True)

    def wait(self, placed):
        self.synchronize()

    def native_input(self, source: NativeInput) -> NativePipeline:
        """PyTorch's own pipeline (`frameworks.pytorch.native_pipeline`: a `DataLoader`), its batches
        NHWC as the Keras model takes them, on this device."""
        return native_pipeline(source, self.torch_device, self.dtype, channels_first=False)

    def train_step(self, images, labels):
        return self.fit_step(*self.place(images, labels))

    def synchronize(self) -> None:
        if self.torch_device.type == "cuda":
            torch.cuda.synchronize(self.torch_device)

    def loss_and_grads(self, images, labels):
        trainable = self.trainable()
        statistics = [variable.value.detach().clone() for variable in self.model.non_trainable_variables]
        loss = self.loss_fn(labels, self.model(images, training=True))
        grads = torch.autograd.grad(loss, [variable.value for variable in trainable.values()])
        for variable, value in zip(self.model.non_trainable_variables, statistics):
            variable.assign(value)  # the forward pass moved BatchNorm's statistics
        return float(loss.detach()), from_nhwc(self.model_name, {name: grad.cpu().numpy()
                                                        for name, grad in zip(trainable, grads)})

    # --- Evaluation -----------------------------------------------------------------------------

    @torch.no_grad()
    def forward(self, images):
        return self.model(images, training=False)

    # --- Introspection --------------------------------------------------------------------------

    def compile_count(self) -> int:
        if not self.jit_compile:
            return 0
        return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])

    def reset_peak_device_memory(self):
        if self.torch_device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.torch_device)

    def peak_device_memory(self):
        if self.torch_device.type != "cuda":
            return None
        return int(torch.cuda.max_memory_allocated(self.torch_device))

    def applied_threads(self):
        return torch.get_num_threads()

    # --- Profiling ------------------------------------------------------------------------------

    profile = PyTorchAdapter.profile  # torch.profiler over the steps: Keras's ops are aten's
    op_category = staticmethod(torch_category)


ADAPTER = KerasTorchAdapter
