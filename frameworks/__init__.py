"""Registry of framework adapters: CLI names, aliases and variants, and what the rest of the code
must know of a framework without importing it (its profiler, device peak, packages, workers'
environment for isolation, and the report's colour, markers, trace viewer and compiler families),
importing a framework only when a job asks for it (so `--framework jax` never pays for importing
TensorFlow, and the report imports none)."""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from frameworks.base import Adapter


@dataclass(frozen=True)
class FrameworkEntry:
    name: str
    module: str  # imported lazily by `load_adapter`
    variants: tuple[str, ...]  # the first is the default
    aliases: tuple[str, ...] = ()
    # Data parallelism: one process per device (PyTorch DDP), or one process per machine driving
    # all its devices (tf.distribute, JAX sharding).
    process_per_device: bool = False
    no_data_parallel: str = ""  # why it trains on one device only ("" where it has a data-parallel path)
    no_multi_node: str = ""  # why it trains on one machine's devices only, where it has a data-parallel path
    profiler: bool = False  # offers `Adapter.profile` (--profile is refused up front otherwise)
    device_matmul: bool = False  # offers `Adapter.device_matmul`, for the machine's GPU peak
    packages: tuple[str, ...] = ()  # distributions whose versions env.json records
    # Its workers' environment, set before the framework is imported, for isolation (performance
    # settings live in `frameworks.tuning`): `env` is always set, `cpu_env` too when the job runs on
    # CPU; `flags`: variables it reads from the user's shell, recorded in env.json.
    env: Mapping[str, str] = field(default_factory=dict, hash=False)
    cpu_env: Mapping[str, str] = field(default_factory=dict, hash=False)
    flags: tuple[str, ...] = ()
    # Python that makes the framework parse its flag variables, run in a child process on the CPU
    # before the tuning table's flags reach a worker: XLA ends a process at a flag it does not know
    # (flags come and go between versions), so each one it names is left out and reported instead.
    flag_check: str = ""
    # What the report shows of it: its colour in every chart ("": one drawn from its name), each
    # variant's marker (absent: one drawn from the variant's name), where its profiler writes traces
    # and what opens them, and each variant's compiler family where one compiles the step ("xla",
    # "inductor"), for what the report says of that compiler's profiles.
    colour: str = ""
    markers: Mapping[str, str] = field(default_factory=dict, hash=False)
    trace_viewer: str = ""
    compilers: Mapping[str, str] = field(default_factory=dict, hash=False)
    # The variants that train through a front end over the framework (Keras 3 on one of its backends),
    # which the report draws as a family apart from the native ones: the front end's name ("keras"), and
    # each such variant's native counterpart, the "framework:variant" that computes the same step without
    # the front end (what the report's cost of that front end compares against; "" where none does).
    front_end: str = ""
    counterparts: Mapping[str, str] = field(default_factory=dict, hash=False)
    # Why its float64 ("fp64", parity's proof) computes part of the step in float32 ("" where it is all
    # float64): parity then holds its fp64 comparisons to float32's bounds and says why.
    float64_caveat: str = ""

    @property
    def default_variant(self) -> str:
        return self.variants[0]


QUIET_TSL = {"TF_CPP_MIN_LOG_LEVEL": "2"}
# Keras's type promotion (keras.backend.result_type) gives 32-bit types for 64-bit ones on every backend but
# TensorFlow ("to be aligned with JAX's default behavior": keras/src/backend/common/dtypes.py,
# BIT64_TO_BIT32_DTYPE), so ops that promote through it run a float64 model's step partly in float32.
KERAS_FLOAT64 = ("Keras's type promotion gives float32 for float64 on this backend (keras.backend.result_type; "
                 "keras-team/keras#23704)")  # TensorFlow's and XLA's info and warning logs; errors still show

REGISTRY: dict[str, FrameworkEntry] = {
    "pytorch": FrameworkEntry(
        "pytorch", "frameworks.pytorch", ("eager", "compile"), ("torch",),
        process_per_device=True, profiler=True, device_matmul=True, packages=("torch",),
        colour="#d62728", markers={"eager": "o", "compile": "s"},  # matplotlib's red
        trace_viewer="`trace.json`: chrome://tracing or ui.perfetto.dev",
        compilers={"compile": "inductor"},
    ),
    "tensorflow": FrameworkEntry(
        "tensorflow", "frameworks.tensorflow_keras", ("function", "eager", "xla", "fit"), ("tf",),
        profiler=True, packages=("tensorflow", "keras"),
        # Keras takes its backend from KERAS_BACKEND at import, which a user's shell may set to another;
        # without memory growth, TensorFlow would reserve all GPU memory.
        env={**QUIET_TSL, "KERAS_BACKEND": "tensorflow", "TF_FORCE_GPU_ALLOW_GROWTH": "true"},
        flags=("XLA_FLAGS", "TF_XLA_FLAGS"),
        colour="#ff7f0e", markers={"function": "D", "eager": "o", "xla": "^", "fit": "v"},  # matplotlib's orange
        trace_viewer="`plugins/profile/*/*.xplane.pb`: TensorBoard's profile plugin or xprof; "
                     "`train_step.hlo.txt` (tensorflow:xla): the compiled step",
        compilers={"xla": "xla"},
        front_end="keras", counterparts={"fit": "tensorflow:function"},  # Keras's step against a tf.function
    ),
    "jax": FrameworkEntry(
        "jax", "frameworks.jax_flax", ("jit",), profiler=True, device_matmul=True,
        packages=("jax", "jaxlib", "flax", "optax"),
        env={**QUIET_TSL, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"},  # it would reserve 75% of GPU memory
        cpu_env={"JAX_PLATFORMS": "cpu"},  # starts on the CPU without probing for a GPU
        flags=("XLA_FLAGS",), flag_check="import jax; jax.devices()",
        colour="#1f77b4", markers={"jit": "P"},  # matplotlib's blue
        trace_viewer="`plugins/profile/*/perfetto_trace.json.gz`: ui.perfetto.dev; `*.xplane.pb`: TensorBoard or "
                     "xprof; `train_step.hlo.txt`: the compiled step the op names refer to",
        compilers={"jit": "xla"},
    ),
    # Keras 3 on its other backends: the model, optimizer and loss of frameworks.keras_common, trained by
    # Keras's own step; `fit` is Keras's own default (jit_compile="auto"), the second variant the other setting.
    "keras_jax": FrameworkEntry(
        "keras_jax", "frameworks.keras_jax", ("fit", "eager"), profiler=True,
        no_multi_node="keras_jax trains data-parallel on one machine's devices: across processes, Keras 3's JAX "
                      "backend fails to build the model's variables under keras.distribution (its symbolic build "
                      "finds them 'already initialized')",
        packages=("keras", "jax", "jaxlib"),
        env={**QUIET_TSL, "KERAS_BACKEND": "jax", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"},
        cpu_env={"JAX_PLATFORMS": "cpu"},
        flags=("XLA_FLAGS",), flag_check="import jax; jax.devices()",
        colour="#17becf", markers={"fit": "v", "eager": "o"},  # matplotlib's cyan, beside JAX's blue
        trace_viewer="`plugins/profile/*/perfetto_trace.json.gz`: ui.perfetto.dev; `train_step.hlo.txt`: the "
                     "compiled step the op names refer to",
        compilers={"fit": "xla"}, front_end="keras", counterparts={"fit": "jax:jit", "eager": ""},
        float64_caveat=f"{KERAS_FLOAT64}: the cosine schedule's rate",
    ),
    "keras_torch": FrameworkEntry(
        "keras_torch", "frameworks.keras_torch", ("fit", "compile"), profiler=True,
        no_data_parallel="Keras 3 distributes training through keras.distribution, which its torch backend "
                         "does not implement",
        packages=("keras", "torch"),
        env={"KERAS_BACKEND": "torch"},
        cpu_env={"KERAS_TORCH_DEVICE": "cpu"},  # Keras puts its tensors on a GPU wherever it sees one
        colour="#e377c2", markers={"fit": "v", "compile": "s"},  # matplotlib's pink, beside PyTorch's red
        trace_viewer="`trace.json`: chrome://tracing or ui.perfetto.dev",
        compilers={"compile": "inductor"}, front_end="keras",
        counterparts={"fit": "pytorch:eager", "compile": "pytorch:compile"},
        float64_caveat=f"{KERAS_FLOAT64}: every matmul, the dense layers'",
    ),
}

# Extra adapters, e.g. a third-party framework or the test suite's stand-ins:
# "name=package.module[:variant,variant...][+profiler][+device_matmul]" entries separated by ";".
# An extra entry has no aliases, packages or environment of its own; "+profiler" and
# "+device_matmul" say that its adapter offers those hooks.
EXTRA_ENV = "BENCHMARKS_EXTRA_FRAMEWORKS"
EXTRA_FEATURES = ("profiler", "device_matmul")
# A name that reads as one word in --framework and --variant lists ("name:variant,..."), in job ids and file names.
NAME = re.compile(r"[a-z][a-z0-9_]*")
RESERVED = ("all", "default")  # --framework and --variant words


def _extra_entries() -> dict[str, FrameworkEntry]:
    entries = {}
    for spec in filter(None, os.environ.get(EXTRA_ENV, "").split(";")):
        name, _, rest = spec.partition("=")
        rest, *features = rest.split("+")
        module, _, variants = rest.partition(":")
        taken = {*REGISTRY, *(alias for entry in REGISTRY.values() for alias in entry.aliases), *RESERVED, *entries}
        if not NAME.fullmatch(name) or name in taken:
            raise ValueError(f"{EXTRA_ENV}: {name!r} cannot name a framework (lower-case letters, digits and _, "
                             f"and none of: {', '.join(sorted(taken))})")
        unknown = set(features) - set(EXTRA_FEATURES)
        if unknown:
            raise ValueError(f"{EXTRA_ENV}: {name} asks for {', '.join(sorted(unknown))} "
                             f"(features: {', '.join(EXTRA_FEATURES)})")
        entries[name] = FrameworkEntry(name, module, tuple(variants.split(",")) if variants else ("default",),
                                       **{feature: True for feature in features})
    return entries


def registry() -> dict[str, FrameworkEntry]:
    return {**REGISTRY, **_extra_entries()}


def compiler_family(framework: str, variant: str) -> str:
    """The compiler family that compiles `framework:variant`'s step ("xla", "inductor"); "" where
    none does, or for a framework registered from outside, which states none."""
    entry = REGISTRY.get(framework)
    return entry.compilers.get(variant, "") if entry else ""


def front_end(framework: str, variant: str) -> str:
    """The front end `framework:variant` trains through ("keras"), "" for a native step."""
    entry = REGISTRY.get(framework)
    return entry.front_end if entry and variant in entry.counterparts else ""


def counterpart(framework: str, variant: str) -> str:
    """The native "framework:variant" computing the same step as a front end's `framework:variant`; ""
    where none does or the step is native."""
    entry = REGISTRY.get(framework)
    return entry.counterparts.get(variant, "") if entry else ""


def float64_caveat(framework: str) -> str:
    """Why `framework`'s float64 computes part of the step in float32 ("" where it does not)."""
    entry = REGISTRY.get(framework)
    return entry.float64_caveat if entry else ""


def profiled() -> list[str]:
    """The frameworks that offer a profiler, in registry order."""
    return [name for name, entry in registry().items() if entry.profiler]


class UnknownFramework(ValueError):
    pass


def resolve(name: str) -> FrameworkEntry:
    """The entry for a CLI name or alias; UnknownFramework names the accepted ones."""
    entries = registry()
    for entry in entries.values():
        if name == entry.name or name in entry.aliases:
            return entry
    accepted = ", ".join(sorted([*entries, *(a for e in entries.values() for a in e.aliases)]))
    raise UnknownFramework(f"unknown framework {name!r} (choose from: all, {accepted})")


def load_adapter(name: str) -> type[Adapter]:
    """Import the framework's module (and so the framework) and return its adapter class."""
    return importlib.import_module(resolve(name).module).ADAPTER
