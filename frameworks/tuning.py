"""The tuning policy in one table: every performance setting a `tuned` worker applies, per framework,
device, precision and variant, with the document that prescribes it, what it changes, and whether
this project measured it. `stock` applies none of them (each framework as `pip install` gives it).
Framework-free: the parent plans with it, workers apply it (environment entries through
`benchmarks.harness.spawn`, the rest through `Adapter.apply_tuning`), docs/tuning.md prints it
(`python -m benchmarks.settings`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

PROFILES = ("stock", "tuned")
DEFAULT_PROFILE = "tuned"  # docs/tuning.md: why
# How a setting reaches the framework: an environment variable set before the import (`env`), a
# switch of the framework's state set before a model is built (`state`), or a choice made while the
# adapter builds the model and its step (`build`).
KINDS = ("env", "state", "build")
# Variables that hold several flags: entries naming one are joined with spaces, after the user's own.
FLAG_LISTS = ("XLA_FLAGS", "TF_XLA_FLAGS")
# The variable through which the parent tells a worker which of its settings the installed framework
# refused before the import (JSON: setting text -> reason), for the worker's record of each setting.
REFUSED = "FRAMEWORK_BENCH_REFUSED_SETTINGS"

PYTORCH_GUIDE = "PyTorch Performance Tuning Guide, https://docs.pytorch.org/tutorials/recipes/recipes/tuning_guide.html"


@dataclass(frozen=True)
class Setting:
    framework: str  # registry name
    kind: str  # one of KINDS
    name: str  # the variable, the state's attribute path, or the build choice
    value: str
    devices: tuple[str, ...]
    source: str  # the document that prescribes it
    effect: str
    measured: bool  # measured on this project's CPU (docs/tuning.md); else prescribed for GPUs, not measured here
    variants: tuple[str, ...] = ()  # empty: every variant
    precisions: tuple[str, ...] = ()  # empty: every precision

    @property
    def text(self) -> str:
        return f"{self.name}={self.value}"

    def applies(self, framework: str, device: str, precision: str, variant: str) -> bool:
        return (self.framework == framework and device in self.devices
                and (not self.variants or variant in self.variants)
                and (not self.precisions or precision in self.precisions))


TABLE: tuple[Setting, ...] = (
    # --- PyTorch ---
    Setting("pytorch", "env", "GLIBC_TUNABLES", "glibc.malloc.hugetlb=1", ("cpu", "cuda"),
            f"{PYTORCH_GUIDE} (\"Switch memory allocator\"); glibc manual, Memory Allocation Tunables, "
            "https://www.gnu.org/software/libc/manual/html_node/Memory-Allocation-Tunables.html",
            "malloc keeps a step's large buffers in transparent huge pages instead of returning them to the kernel "
            "and page-faulting them in again every step", True),
    Setting("pytorch", "state", "torch.backends.cudnn.benchmark", "True", ("cuda",), f"{PYTORCH_GUIDE} "
            "(\"Enable cuDNN auto-tuner\")", "cuDNN times its convolution algorithms for each shape once and keeps "
            "the fastest", False),
    Setting("pytorch", "build", "memory_format", "channels_last", ("cuda",), f"{PYTORCH_GUIDE} (\"Use channels_last "
            "memory format for computer vision models\"); https://docs.pytorch.org/tutorials/intermediate/"
            "memory_format_tutorial.html", "convolution weights in NHWC order, the layout Tensor Core kernels take",
            False),
    Setting("pytorch", "build", "torch.compile mode", "reduce-overhead", ("cuda",), "torch.compile, "
            "https://docs.pytorch.org/docs/stable/generated/torch.compile.html (\"reduce-overhead\": CUDA graphs)",
            "the compiled step replays as one CUDA graph, without a kernel launch from Python per operation", False,
            variants=("compile",)),
    # --- TensorFlow ---
    Setting("tensorflow", "env", "TF_ENABLE_ONEDNN_OPTS", "1", ("cpu",), "Intel, Maximize TensorFlow Performance on "
            "CPU, https://www.intel.com/content/www/us/en/developer/articles/technical/maximize-tensorflow-performance-"
            "on-cpu-considerations-and-recommendations-for-inference.html", "oneDNN CPU kernels, which TensorFlow "
            "turns on by itself only on CPUs with AVX-512 or AMX; elsewhere Eigen kernels", True),
    Setting("tensorflow", "build", "steps_per_execution", "20", ("cpu", "cuda"), "Keras Model.compile, "
            "https://keras.io/api/models/model_training_apis/ (\"can greatly improve performance on TPUs or small "
            "models with a large Python overhead\")", "Keras runs this many batches per call of its compiled "
            "training function", False, variants=("fit",)),
    Setting("tensorflow", "env", "TF_XLA_FLAGS", "--tf_xla_auto_jit=2", ("cuda",), "TensorFlow XLA, auto-clustering, "
            "https://www.tensorflow.org/xla#auto-clustering", "XLA compiles and fuses clusters of each tf.function "
            "graph", False),
    Setting("tensorflow", "env", "TF_GPU_THREAD_MODE", "gpu_private", ("cuda",), "Optimize TensorFlow GPU performance "
            "with the TensorFlow Profiler, https://www.tensorflow.org/guide/gpu_performance_analysis", "the GPU gets "
            "its own host threads to launch kernels", False),
    # --- JAX ---
    Setting("jax", "env", "XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution", ("cpu",),
            "JAX, XLA compiler flags, https://docs.jax.dev/en/latest/xla_flags.html; the flag's definition in "
            "XLA's xla/debug_options_flags.cc; README, profiles", "XLA runs convolutions itself instead of handing "
            "them to YNNPACK, which is slow at their kernel gradients", True),
    Setting("jax", "env", "XLA_FLAGS", "--xla_gpu_triton_gemm_any=true", ("cuda",), "JAX, GPU performance tips, "
            "https://docs.jax.dev/en/latest/gpu_performance_tips.html", "Triton's GEMM emitter for every matrix "
            "product it supports", False),
    Setting("jax", "env", "XLA_FLAGS", "--xla_gpu_enable_latency_hiding_scheduler=true", ("cuda",), "JAX, GPU "
            "performance tips, https://docs.jax.dev/en/latest/gpu_performance_tips.html", "XLA overlaps the "
            "gradient exchange of several devices with computation", False),
)

# Keras on a backend runs that backend's runtime, so the backend's environment and state settings apply
# to it as well (its structural settings build the native model and step, which Keras builds its own way):
# prescribed for Keras by the same documents, not measured through Keras.
KERAS_BACKENDS = {"keras_jax": "jax", "keras_torch": "pytorch"}
TABLE += tuple(replace(setting, framework=keras, variants=(), measured=False,
                       source=f"{setting.source} (the {native} runtime Keras runs on)")
               for keras, native in KERAS_BACKENDS.items() for setting in TABLE
               if setting.framework == native and setting.kind != "build")


def settings_for(framework: str, device: str, precision: str, variant: str,
                 table: Iterable[Setting] = TABLE) -> tuple[Setting, ...]:
    """The entries a tuned worker of this framework, device, precision and variant applies."""
    return tuple(setting for setting in table if setting.applies(framework, device, precision, variant))


def environment(settings: Iterable[Setting], shell: Mapping[str, str]) -> dict[str, str]:
    """The variables `settings` set, given the environment they start from: a flag list keeps the
    shell's flags and gets the table's after them; any other variable takes the table's value."""
    env: dict[str, str] = {}
    for setting in settings:
        if setting.kind != "env":
            continue
        if setting.name in FLAG_LISTS:
            flags = env.get(setting.name, shell.get(setting.name, ""))
            if setting.value not in flags.split():  # one flag asked for twice (a backend and Keras on it) is set once
                env[setting.name] = " ".join(filter(None, [flags, setting.value]))
            else:
                env[setting.name] = flags
        else:
            env[setting.name] = setting.value
    return env


def in_environment(setting: Setting, environ: Mapping[str, str]) -> bool:
    """Whether `environ` carries the setting (one of the flags of a flag list)."""
    value = environ.get(setting.name)
    if value is None:
        return False
    return setting.value in value.split() if setting.name in FLAG_LISTS else value == setting.value


@dataclass(frozen=True)
class Outcome:
    """What a worker found of one setting: in effect or not, and why not."""

    setting: Setting
    in_effect: bool
    reason: str = ""


def observe(settings: Iterable[Setting], environ: Mapping[str, str], state: Mapping[str, str | None],
            refusals: Mapping[str, str]) -> list[Outcome]:
    """Each setting as the worker sees it: environment entries in `environ`, the others in the
    framework's reported `state` (the value it holds, None where it has no such thing); `refusals`:
    the framework's reason for a setting it could not apply, by name (by text for an environment
    entry, which several entries of one flag list share a name with)."""
    outcomes = []
    for setting in settings:
        if setting.kind == "env":
            seen = in_environment(setting, environ)
            reason = "" if seen else refusals.get(setting.text) or (
                f"{setting.name} does not carry it ({environ.get(setting.name, 'unset')})")
        else:
            held = state.get(setting.name)
            seen = held == setting.value
            reason = "" if seen else refusals.get(setting.name) or f"the framework holds {held}"
        outcomes.append(Outcome(setting, seen, reason))
    return outcomes


def summary_fields(profile: str, outcomes: Iterable[Outcome]) -> dict[str, str]:
    """The result row's `tuning`, `settings` (what was in effect) and `settings_not_applied`
    (what the profile asked for and did not get, with the reason), as compact text."""
    outcomes = list(outcomes)
    in_effect = [outcome.setting.text for outcome in outcomes if outcome.in_effect]
    missing = [f"{outcome.setting.text} ({outcome.reason})" for outcome in outcomes
               if not outcome.in_effect and profile == "tuned"]
    return {"tuning": profile, "settings": "; ".join(in_effect), "settings_not_applied": "; ".join(missing)}
