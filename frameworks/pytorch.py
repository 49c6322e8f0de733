"""PyTorch adapter: `torch.nn` model, `torch.optim.SGD`, eager or `torch.compile`d step."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from frameworks.base import (BATCHNORM_EPSILON, BATCHNORM_MOMENTUM, RESNET9_LOGIT_SCALE, Adapter, DeviceUnavailable,
                             TrainConfig, TrainingState)

# --- Model --------------------------------------------------------------------------------------


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class ConvBN(nn.Module):
    def __init__(self, channels_in: int, channels_out: int):
        super().__init__()
        self.conv = nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels_out, eps=BATCHNORM_EPSILON, momentum=BATCHNORM_MOMENTUM)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.a = ConvBN(channels, channels)
        self.b = ConvBN(channels, channels)

    def forward(self, x):
        return x + self.b(self.a(x))


class ResNet9(nn.Module):
    def __init__(self):
        super().__init__()
        self.prep = ConvBN(3, 64)
        self.layer1 = ConvBN(64, 128)
        self.res1 = Residual(128)
        self.layer2 = ConvBN(128, 256)
        self.layer3 = ConvBN(256, 512)
        self.res3 = Residual(512)
        self.fc = nn.Linear(512, 10, bias=False)

    def forward(self, x):
        x = self.prep(x)
        x = self.res1(F.max_pool2d(self.layer1(x), 2))
        x = F.max_pool2d(self.layer2(x), 2)
        x = self.res3(F.max_pool2d(self.layer3(x), 2))
        x = torch.flatten(F.adaptive_max_pool2d(x, 1), 1)
        return self.fc(x) * RESNET9_LOGIT_SCALE


MODELS = {"lenet": LeNet, "resnet9": ResNet9}

# --- Adapter ------------------------------------------------------------------------------------


def _configure_numerics(config: TrainConfig) -> None:
    """fp32 means IEEE float32 in matmuls and cuDNN convolutions, which default to TF32."""
    precision = "tf32" if config.precision == "tf32" else "ieee"
    if hasattr(torch.backends.cudnn, "conv"):  # PyTorch >= 2.9: the per-backend API, used alone
        torch.backends.cuda.matmul.fp32_precision = precision
        torch.backends.cudnn.conv.fp32_precision = precision
    else:
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        torch.backends.cudnn.allow_tf32 = precision == "tf32"


class PyTorchAdapter(Adapter):
    framework = "pytorch"

    def __init__(self, model: str, device: str, variant: str, config: TrainConfig):
        super().__init__(model, device, variant, config)
        if device == "cuda" and not torch.cuda.is_available():
            raise DeviceUnavailable(f"PyTorch {torch.__version__} sees no CUDA device")
        _configure_numerics(config)
        self.torch_device = torch.device(device)
        self.dtype = torch.float64 if config.precision == "fp64" else torch.float32  # of weights and loss
        self.model = MODELS[model]().to(self.torch_device, self.dtype)
        self._compiles = 0
        self._build_optimizer()
        step = self._step
        if variant == "compile":
            step = torch.compile(step)
        self._compiled_step = step

    def _build_optimizer(self) -> None:
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=self.config.learning_rate,
            momentum=self.config.momentum,
            weight_decay=self.config.weight_decay,
        )
        # The scheduler is also PyTorch's step counter (`last_epoch`), constant schedule included.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.config.schedule_factor)

    def _to_device(self, images: np.ndarray, labels: np.ndarray):
        x = torch.from_numpy(images).to(self.torch_device, self.dtype, non_blocking=True).permute(0, 3, 1, 2)
        y = torch.from_numpy(labels).to(self.torch_device, non_blocking=True).long()
        return x, y

    # --- State ----------------------------------------------------------------------------------

    @torch.no_grad()
    def set_state(self, state: TrainingState) -> None:
        self.model.load_state_dict({name: torch.as_tensor(np.asarray(value)) for name, value in state.params.items()})
        for name, param in self.model.named_parameters():  # copied in place: a compiled step keeps its graph
            buffer = self.optimizer.state[param].setdefault("momentum_buffer", torch.zeros_like(param))
            buffer.copy_(torch.from_numpy(state.momentum[name]))
        self.scheduler.last_epoch = state.step  # and the rate the scheduler's own lambda gives there
        for group, base_lr, lr_lambda in zip(self.optimizer.param_groups, self.scheduler.base_lrs,
                                             self.scheduler.lr_lambdas):
            group["lr"] = base_lr * lr_lambda(state.step)

    def get_state(self) -> TrainingState:
        params = {name: value.detach().cpu().numpy().copy() for name, value in self.model.state_dict().items()}
        momentum = {}
        for name, param in self.model.named_parameters():
            buffer = self.optimizer.state[param].get("momentum_buffer")
            momentum[name] = np.zeros_like(params[name]) if buffer is None else buffer.cpu().numpy().copy()
        return TrainingState(params, momentum, self.scheduler.last_epoch)

    # --- Training -------------------------------------------------------------------------------

    def _autocast(self):
        return torch.autocast(self.torch_device.type, torch.bfloat16, enabled=self.config.precision == "bf16")

    def _step(self, x, y):
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss = F.cross_entropy(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def train_step(self, images, labels):
        self.model.train()
        loss = self._compiled_step(*self._to_device(images, labels))
        self.scheduler.step()
        return loss

    def synchronize(self) -> None:
        if self.torch_device.type == "cuda":
            torch.cuda.synchronize(self.torch_device)

    def losses_to_numpy(self, losses):
        return torch.stack(losses).cpu().numpy()  # in the weights' dtype (autocast computes the loss in float32)

    def loss_and_grads(self, images, labels):
        x, y = self._to_device(images, labels)
        buffers = {name: buffer.clone() for name, buffer in self.model.named_buffers()}
        self.model.train()
        self.model.zero_grad(set_to_none=True)
        with self._autocast():
            loss = F.cross_entropy(self.model(x), y)
        loss.backward()
        grads = {name: p.grad.detach().cpu().numpy().copy() for name, p in self.model.named_parameters()}
        self.model.zero_grad(set_to_none=True)
        self.model.load_state_dict(buffers, strict=False)  # the forward pass moved BatchNorm's statistics
        return loss.item(), grads

    # --- Evaluation -----------------------------------------------------------------------------

    @torch.no_grad()
    def logits(self, images):
        self.model.eval()
        x, _ = self._to_device(images, np.zeros(len(images), np.int32))
        with self._autocast():
            return self.model(x).to(self.dtype).cpu().numpy()

    @torch.no_grad()
    def evaluate(self, images, labels):
        self.model.eval()
        x, y = self._to_device(images, labels)
        with self._autocast():
            logits = self.model(x).to(self.dtype)
        loss = F.cross_entropy(logits, y, reduction="sum")
        correct = (logits.argmax(1) == y).sum()
        return float(loss), int(correct)

    # --- Introspection --------------------------------------------------------------------------

    def compile_count(self) -> int:
        if self.variant != "compile":
            return 0
        return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])

    def peak_device_memory(self):
        if self.torch_device.type != "cuda":
            return None
        return int(torch.cuda.max_memory_allocated(self.torch_device))

    def applied_threads(self):
        return torch.get_num_threads()


ADAPTER = PyTorchAdapter
