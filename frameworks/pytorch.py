"""PyTorch adapter: `torch.nn` model, `torch.optim.SGD`, eager or `torch.compile`d step; over
several devices, one process per device under `DistributedDataParallel`. Its native input: a
`torch.utils.data.Dataset` over the verified arrays, `torchvision.transforms.v2`, a `DataLoader`."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import torch.profiler
from torch import nn
from torch.autograd import DeviceType
from torch.nn.parallel import DistributedDataParallel

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
)
from frameworks.profiles import TorchEvent, torch_category, torch_device_time
from frameworks.tuning import Setting

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

# --- Native input -------------------------------------------------------------------------------


class ArrayDataset(torch.utils.data.Dataset):
    """CIFAR-10 served as `torchvision.datasets.CIFAR10` serves it, (transformed image, label),
    but over the arrays the suite's verified loader read: torchvision's class would open the batch
    files with plain `pickle`, which runs whatever a crafted file asks."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.transform(self.images[index]), int(self.labels[index])


def native_transform(source: NativeInput):
    """The recipe in `torchvision.transforms.v2`: augment the stored pixels, then scale and normalise."""
    from torchvision.transforms import v2

    augment = [v2.RandomCrop(32, padding=source.pad, padding_mode="reflect"), v2.RandomHorizontalFlip(0.5)]
    return v2.Compose([v2.ToImage(), *(augment if source.augment else []),  # HWC array -> CHW image
                       v2.ToDtype(torch.float32, scale=True),  # uint8 / 255; float32 as it is
                       v2.Normalize(list(source.mean), list(source.std))])


def native_pipeline(source: NativeInput, device: torch.device, dtype: torch.dtype,
                    channels_first: bool) -> NativePipeline:
    """A `DataLoader` as PyTorch's Performance Tuning Guide has it: worker processes kept across
    epochs, pinned host memory on a GPU, a few batches prefetched per worker; each batch copied
    to `device` in `dtype` without blocking, NCHW (`channels_first`, as torchvision's transforms
    give it) or NHWC. By default a worker per core this process may use, the ceiling past which
    the `DataLoader` itself warns."""
    try:
        transform = native_transform(source)
    except ImportError as error:
        raise PipelineUnavailable(f"torchvision is not installed ({error})") from None
    workers = len(os.sched_getaffinity(0)) if source.workers is None else source.workers
    how = (f"{workers} (num_workers: the cores this process may use)" if source.workers is None
           else f"{workers} (num_workers)")
    generator = torch.Generator().manual_seed(source.seed)  # the shuffle, and each worker's base seed
    if workers == 0:  # the transforms then draw from the global generator, in this process
        torch.manual_seed(source.seed)
    loader = torch.utils.data.DataLoader(
        ArrayDataset(source.images, source.labels, transform), batch_size=source.batch_size, shuffle=True,
        drop_last=True, num_workers=workers, persistent_workers=workers > 0,
        pin_memory=device.type == "cuda", prefetch_factor=2 if workers > 0 else None,
        generator=generator)

    def batches():
        for _ in range(source.epochs):
            for images, labels in loader:
                images = images if channels_first else images.permute(0, 2, 3, 1)
                yield images.to(device, dtype, non_blocking=True), labels.to(device, non_blocking=True)

    return NativePipeline(batches(), how)


# --- Adapter ------------------------------------------------------------------------------------


def _allow_tf32(allowed: bool) -> None:
    """TF32 in CUDA matmuls and cuDNN convolutions (which default to it), or IEEE float32, set
    through both of PyTorch's APIs so that every reader of either agrees. Since 2.9 the kernels read
    the per-backend flags, while torch.compile's own caches still read the legacy state
    (`torch.get_float32_matmul_precision()` in inductor's autotune cache, 2.11 to 2.14 at least):
    with only the per-backend flags set to TF32, that read raises "mix of the legacy and new APIs"
    and compiling a step with a matmul fails on a GPU (pytorch/pytorch#166387); with only cuDNN's
    convolution flag set, reading `torch.backends.cudnn.allow_tf32` raises. So the legacy flags
    first, then the per-backend ones to the same value, cuDNN's recurrent flag too. CPU (oneDNN)
    kernels are left as they are."""
    torch.backends.cuda.matmul.allow_tf32 = allowed
    torch.backends.cudnn.allow_tf32 = allowed
    if hasattr(torch.backends.cudnn, "conv"):  # PyTorch >= 2.9
        precision = "tf32" if allowed else "ieee"
        torch.backends.cuda.matmul.fp32_precision = precision
        torch.backends.cudnn.conv.fp32_precision = precision
        torch.backends.cudnn.rnn.fp32_precision = precision


def _configure_numerics(config: TrainConfig) -> None:
    """fp32 means IEEE float32 in matmuls and cuDNN convolutions, which default to TF32."""
    _allow_tf32(config.precision == "tf32")


# torch.__config__.show()'s lines that name the CPU math libraries and how the build uses them.
LIBRARY_LINES = ("Math Kernel Library", "MKL-DNN", "oneDNN", "BLAS", "LAPACK", "NNPACK", "OpenMP")


def _built_with() -> dict[str, str]:
    """The BLAS, LAPACK and oneDNN (MKL-DNN) this build links, from `torch.__config__.show()`: its
    library lines ("Intel(R) MKL-DNN v3.12.0 ..."), its build settings' BLAS_INFO and LAPACK_INFO,
    and oneDNN's version."""
    shown = torch.__config__.show()
    lines = [line.strip()[2:] for line in shown.splitlines() if line.strip().startswith("- ")]
    libraries = {"lines": [line for line in lines if any(name in line for name in LIBRARY_LINES)
                           and not line.startswith("Build settings")]}
    for setting in ("BLAS_INFO", "LAPACK_INFO"):
        match = re.search(rf"\b{setting}=([^,\s]+)", shown)
        libraries[setting.lower()] = match.group(1) if match else None
    onednn = re.search(r"MKL-DNN (v[\d.]+)", shown)
    libraries["onednn"] = onednn.group(1) if onednn else None
    return libraries


def _numerics_flags() -> dict[str, str | bool | None]:
    """The `torch.backends` flags that change numerics or speed, as this process holds them. The
    float32 precisions are read through the per-backend API where the build has it (2.9 and later),
    as `_allow_tf32` sets them: reading the legacy flags after a per-backend one was set raises."""
    backends, matmul = torch.backends, torch.backends.cuda.matmul
    flags = {
        "cudnn.enabled": backends.cudnn.enabled,
        "cudnn.benchmark": backends.cudnn.benchmark,
        "cudnn.deterministic": backends.cudnn.deterministic,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "mkldnn.enabled": backends.mkldnn.enabled,
        "cuda.matmul.allow_bf16_reduced_precision_reduction": matmul.allow_bf16_reduced_precision_reduction,
        "cuda.matmul.allow_fp16_reduced_precision_reduction": matmul.allow_fp16_reduced_precision_reduction,
    }
    if hasattr(backends.cudnn, "conv"):  # PyTorch >= 2.9
        flags.update({"cuda.matmul.fp32_precision": matmul.fp32_precision,
                      "cudnn.conv.fp32_precision": backends.cudnn.conv.fp32_precision,
                      "mkldnn.matmul.fp32_precision": backends.mkldnn.matmul.fp32_precision,
                      "mkldnn.conv.fp32_precision": backends.mkldnn.conv.fp32_precision})
    else:
        flags.update({"cuda.matmul.allow_tf32": matmul.allow_tf32,
                      "cudnn.allow_tf32": backends.cudnn.allow_tf32,
                      "float32_matmul_precision": torch.get_float32_matmul_precision()})
    return flags


def _join_group(parallel: DataParallel, device: str) -> None:
    """The process group DDP communicates through: NCCL between GPUs, gloo between CPU processes,
    meeting at the coordinator (what torchrun passes as MASTER_ADDR:MASTER_PORT)."""
    host, port = parallel.address()
    dist.init_process_group("nccl" if device == "cuda" else "gloo", init_method=f"tcp://{host}:{port}",
                            rank=parallel.rank, world_size=parallel.processes)


def _attribute_path(path: str):
    """The object at a dotted path under torch (e.g. torch.backends.cudnn), or None."""
    owner = torch
    for part in path.split(".")[1:]:
        owner = getattr(owner, part, None)
    return owner if path.split(".")[0] == "torch" else None


def apply_state(setting: Setting) -> str:
    """Set a state setting, an attribute path under torch (e.g. torch.backends.cudnn.benchmark); why
    this torch cannot ("" when it did)."""
    owner, _, attribute = setting.name.rpartition(".")
    module = _attribute_path(owner)
    if module is None or not hasattr(module, attribute):
        return f"torch {torch.__version__} has no {setting.name}"
    setattr(module, attribute, setting.value == "True" if setting.value in ("True", "False") else setting.value)
    return ""


def held_state(settings) -> dict[str, str | None]:
    """The value torch holds for each state setting of `settings` (None where it has no such thing)."""
    held = {}
    for setting in settings:
        if setting.kind == "state":
            owner, _, attribute = setting.name.rpartition(".")
            module = _attribute_path(owner)
            held[setting.name] = str(getattr(module, attribute)) if hasattr(module, attribute) else None
    return held


def _unbuildable(name: str, value: str) -> str:
    """Why this torch cannot build the structural setting `name`=`value` ("" when it can)."""
    if name == "torch.compile mode":
        from torch._inductor import list_mode_options  # loaded by the first compilation otherwise

        modes = list_mode_options()
        return "" if value in modes else f"torch {torch.__version__}'s torch.compile has no mode {value!r}"
    if name == "memory_format":
        return "" if hasattr(torch, value) else f"torch {torch.__version__} has no memory format {value!r}"
    return f"the PyTorch adapter builds nothing called {name!r}"


CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # torch.compile modes that replay CUDA graphs
INDUCTOR_GRAPH = ("kernels torch.compile generated, timed as one (TORCHINDUCTOR_CPP_ENABLE_KERNEL_PROFILE=1 "
                  "names each, at a cost to every step)")


def profiled_events(events) -> list[TorchEvent]:
    """torch.profiler's `FunctionEvent`s as `torch_device_time` reads them."""
    return [TorchEvent(event.name, event.id, event.device_type != DeviceType.CPU, bool(event.is_user_annotation),
                       event.linked_correlation_id, event.time_range.elapsed_us()) for event in events]


class PyTorchAdapter(Adapter):
    framework = "pytorch"

    # --- Runtime, before a model is built -------------------------------------------------------

    @classmethod
    def configure_threads(cls, threads: int) -> None:
        torch.set_num_threads(threads)

    @classmethod
    def version(cls) -> str:
        return torch.__version__

    @classmethod
    def build_info(cls):
        cuda = torch.cuda.is_available()
        cudnn = torch.backends.cudnn.version()  # e.g. 92400 for 9.24.0; None where cuDNN is not in the build
        nccl = ".".join(map(str, torch.cuda.nccl.version())) if cuda else None  # read through a CUDA device
        libraries = _built_with()
        capability = torch.backends.cpu.get_cpu_capability()
        parts = [f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU build",
                 *([f"cuDNN {cudnn}"] if cudnn else []), *([f"NCCL {nccl}"] if nccl else []),
                 f"oneDNN {libraries['onednn'] or 'absent'}", f"BLAS {libraries['blas_info'] or 'unknown'}",
                 f"CPU kernels {capability}",
                 *([f"{torch.cuda.device_count()} GPU{'s' * (torch.cuda.device_count() != 1)} seen"] if cuda else [])]
        return {
            "summary": ", ".join(parts),
            "version": torch.__version__,
            "git_version": torch.version.git_version,
            "cuda": torch.version.cuda,  # None in a CPU build
            "cudnn": cudnn,
            "nccl": nccl,
            "cuda_available": cuda,
            "gpus": [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())] if cuda else [],
            "mkldnn": torch.backends.mkldnn.is_available(),
            "mkl": torch.backends.mkl.is_available(),
            "openmp": torch.backends.openmp.is_available(),
            "cpu_capability": capability,
            "libraries": libraries,
            "flags": _numerics_flags(),
        }

    @classmethod
    def apply_tuning(cls, settings):
        refused, structure = {}, dict(cls.structure)
        for setting in settings:
            if setting.kind == "state":
                reason = apply_state(setting)
                if reason:
                    refused[setting.name] = reason
            elif setting.kind == "build":
                reason = _unbuildable(setting.name, setting.value)
                if reason:
                    refused[setting.name] = reason
                else:
                    structure[setting.name] = setting.value
        cls.structure = structure
        return refused

    @classmethod
    def tuning_state(cls, settings):
        state = super().tuning_state(settings)
        return {**state, **held_state(settings)}

    @classmethod
    def device_matmul(cls, precision, size):
        _allow_tf32(precision == "tf32")
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        a, b = (torch.randn(size, size, device="cuda", dtype=dtype) for _ in range(2))
        return (lambda: a @ b), (lambda result: torch.cuda.synchronize()), f"PyTorch {torch.__version__} {dtype}"

    def __init__(self, model: str, device: str, variant: str, config: TrainConfig,
                 parallel: DataParallel = SINGLE):
        super().__init__(model, device, variant, config, parallel)
        if device == "cuda" and not torch.cuda.is_available():
            raise DeviceUnavailable(f"PyTorch {torch.__version__} sees no CUDA device")
        if parallel.active and SPECS[model].buffers and device != "cuda":
            raise DeviceUnavailable("PyTorch synchronises BatchNorm across replicas (SyncBatchNorm) on GPUs only, "
                                    "so a BatchNorm model trains data-parallel on CPU in the other frameworks only")
        _configure_numerics(config)
        self.torch_device = torch.device(device)
        self.dtype = torch.float64 if config.precision == "fp64" else torch.float32  # of weights and loss
        self.model = MODELS[model]().to(self.torch_device, self.dtype)
        if self.structure.get("memory_format") == "channels_last":  # inputs arrive NHWC, so already channels-last
            self.model = self.model.to(memory_format=torch.channels_last)
        self.network = self.model  # what the training step runs: the model, or its DDP wrapper
        if parallel.active:  # one device per process: the launcher shows each process its own GPU
            if not dist.is_initialized():
                _join_group(parallel, device)
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            self.network = DistributedDataParallel(self.model)
        self._compiles = 0
        self._build_optimizer()
        step = self._step
        self._mode = self.structure.get("torch.compile mode") if variant == "compile" else None
        if variant == "compile":
            # Every adapter's step is one code object to dynamo, whose cache runs it eagerly past
            # `recompile_limit` entries: each adapter compiles afresh, as in a process of its own.
            torch.compiler.reset()
            step = torch.compile(step, mode=self._mode)
        self._compiled_step = step

    def _build_optimizer(self) -> None:
        # A compiled step guards on a float learning rate and compiles again whenever a schedule
        # changes it (until dynamo's recompile limit, then runs that frame eagerly): as PyTorch's
        # "compiled optimizer with an LR scheduler" tutorial prescribes, it gets a tensor, which
        # the scheduler fills in place.
        lr = self.config.learning_rate
        if self.variant == "compile":
            lr = torch.tensor(lr, dtype=self.dtype, device=self.torch_device)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=lr,
            momentum=self.config.momentum,
            weight_decay=self.config.weight_decay,
            nesterov=self.config.nesterov,
        )
        # The scheduler is also PyTorch's step counter (`last_epoch`), constant schedule included.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.config.schedule_factor)

    def _to_device(self, images, labels):
        """NCHW images in the weights' dtype and int64 labels on the device; NumPy arrays are copied,
        a `place`d batch passes through."""
        if isinstance(images, torch.Tensor):
            return images, labels
        images, labels = torch.from_numpy(images), torch.from_numpy(labels)
        if self.torch_device.type == "cuda":  # page-locked host memory: the copy runs asynchronously
            images, labels = images.pin_memory(), labels.pin_memory()
        x = images.to(self.torch_device, self.dtype, non_blocking=True).permute(0, 3, 1, 2)
        return x, labels.to(self.torch_device, non_blocking=True).long()

    def place(self, images, labels):
        return self._to_device(images, labels)

    def native_input(self, source: NativeInput) -> NativePipeline:
        """`native_pipeline`: NCHW batches, as the model takes them."""
        return native_pipeline(source, self.torch_device, self.dtype, channels_first=True)

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
            lr = base_lr * lr_lambda(state.step)
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr

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

    def _loss(self, x, y):
        """The training loss: batch-mean cross-entropy, label-smoothed as configured."""
        with self._autocast():
            return F.cross_entropy(self.network(x), y, label_smoothing=self.config.label_smoothing)

    def _step(self, x, y):
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._loss(x, y)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def train_step(self, images, labels):
        self.model.train()
        graphs = self._mode in CUDA_GRAPH_MODES and self.torch_device.type == "cuda"
        if graphs:  # a new iteration: the graph may overwrite its previous outputs
            torch.compiler.cudagraph_mark_step_begin()
        loss = self._compiled_step(*self._to_device(images, labels))
        self.scheduler.step()
        return loss.clone() if graphs else loss  # kept past the next replay, which reuses the graph's output

    def synchronize(self) -> None:
        if self.torch_device.type == "cuda":
            torch.cuda.synchronize(self.torch_device)
        if self.parallel.active:  # the group's time: until the slowest replica is done
            dist.barrier()

    def losses_to_numpy(self, losses):
        losses = torch.stack(losses)  # in the weights' dtype (autocast computes the loss in float32)
        if self.parallel.active:  # each replica's loss is its shard's mean; the global batch's is their mean
            dist.all_reduce(losses)
            losses /= self.parallel.replicas
        return losses.cpu().numpy()

    def loss_and_grads(self, images, labels):
        x, y = self._to_device(images, labels)
        buffers = {name: buffer.clone() for name, buffer in self.model.named_buffers()}
        self.model.train()
        self.model.zero_grad(set_to_none=True)
        loss = self._loss(x, y)
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
        return float(loss), logits.argmax(1).cpu().numpy()

    # --- Built-in equivalents ------------------------------------------------------------------

    def builtin_equivalents(self):
        """The suite's step against the loop of PyTorch's own examples at a constant learning rate,
        on this model and optimizer: no scheduler stepped after each step (the suite's `LambdaLR`,
        which is also its step counter), no autocast context entered unless it computes in bf16, and
        `train()` set once rather than every step."""
        def plain(x, y):
            self.optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(self.network(x), y, label_smoothing=self.config.label_smoothing)
            loss.backward()
            self.optimizer.step()
            return loss.detach()

        if self.config.precision == "bf16":
            plain = self._autocast()(plain)
        if self.variant == "compile":
            plain = torch.compile(plain, mode=self._mode)
        self.model.train()
        return {"step": (self.train_step, plain)}

    # --- Introspection --------------------------------------------------------------------------

    def compile_count(self) -> int:
        if self.variant != "compile":
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

    def profile(self, batches, folder: Path) -> list[dict]:
        """torch.profiler: a Chrome trace (chrome://tracing, Perfetto) and each op's self time: on
        the host, `key_averages`' self CPU time; on a GPU, the time of the kernels, copies and memsets
        each op launched (`torch_device_time`). torch.compile's own kernels run inside one "## Call
        CompiledFxGraph ##" event per graph unless inductor was told to record each."""
        cuda = self.torch_device.type == "cuda"
        activities = [torch.profiler.ProfilerActivity.CPU, *([torch.profiler.ProfilerActivity.CUDA] if cuda else [])]
        with torch.profiler.profile(activities=activities) as prof:
            self.run_steps(batches)
        prof.export_chrome_trace(str(folder / "trace.json"))
        if cuda:
            ops = torch_device_time(profiled_events(prof.events()))
        else:
            ops = [{"op": event.key, "calls": event.count, "self_us": event.self_cpu_time_total}
                   for event in prof.key_averages()]
        return [{**op, "detail": INDUCTOR_GRAPH if "CompiledFxGraph" in op["op"] else ""} for op in ops]

    op_category = staticmethod(torch_category)


ADAPTER = PyTorchAdapter
