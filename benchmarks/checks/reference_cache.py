"""The float64 reference's answers to the parity checks (`reference_outputs`), computed from their
inputs and kept on disk under a hash of everything they depend on, so that each parity step after the
first reads them instead of recomputing minutes of NumPy."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import platform
import sys
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import frameworks.base
from benchmarks.checks import definitions
from benchmarks.checks.definitions import (
    PLANS,
    PROOF,
    _state_arrays,
    _step_outputs,
    key,
    model_batches,
    parity_params,
    training_config,
)
from benchmarks.harness.data import cache_dir
from benchmarks.harness.environment import cpu_model
from frameworks import reference
from frameworks.base import Params, TrainConfig, TrainingState

CACHE_ENV = "BENCHMARKS_REFERENCE_CACHE"  # a folder for the cache, or "off" to compute every time
# Stored beside the outputs (whose "check|setting|step|tensor" names hold "|", so neither is one): the
# key, and the outputs that are NumPy scalars (losses, step counts), which .npz keeps as 0-d arrays.
KEY_ENTRY, SCALARS_ENTRY = "cache key", "cache scalars"
STALE_TEMPORARY_S = 3600.0  # a temporary file this old is a killed writer's, not one being written


@dataclass(frozen=True)
class ReferenceInputs:
    """Every value the reference's outputs are computed from: the computation reads nothing else."""

    model: str
    precision: str  # any precision but PROOF rounds each step's outputs to float32
    configs: tuple[tuple[str, TrainConfig], ...]  # each setting's optimizer, in the plan's order
    params: Params
    batches: list[tuple[np.ndarray, np.ndarray]]

    @classmethod
    def of(cls, model: str, precision: str) -> ReferenceInputs:
        configs = tuple((setting, training_config(model, setting)) for setting in PLANS[model].settings)
        return cls(model, precision, configs, parity_params(model), model_batches(model))


# --- The computation ------------------------------------------------------------------------------


def compute(inputs: ReferenceInputs) -> dict[str, np.ndarray]:
    """The reference's answers to every check in `inputs.precision`, and the common states of the
    per-step check.

    The common states are float64 steps rounded to float32 between steps: states every framework
    can hold exactly, in any precision. For float32 comparisons each step's outputs are the
    correctly rounded float32 answer from that state (an update is new weights rounded, minus the
    old ones), so a framework's error against it is its own error beyond float32's last rounding;
    for float64 comparisons they are not rounded, and the free-running trajectory never is."""
    model, params, batches = inputs.model, inputs.params, inputs.batches
    images, labels = batches[0]
    first = inputs.configs[0][1]  # the untrained checks' loss is the first setting's
    loss, grads = reference.loss_and_grads(model, params, images, labels, first.label_smoothing)
    outputs = {key("forward", "logits"): reference.logits(model, params, images), key("loss", "loss"): np.float64(loss)}
    outputs.update({key("gradients", name): grad for name, grad in grads.items()})
    rounded = inputs.precision != PROOF
    for setting, config in inputs.configs:
        state = free = TrainingState.fresh(params)
        for step, (x, y) in enumerate(batches):
            outputs.update(_state_arrays(setting, step, state))
            margin = reference.decision_margin(model, state.params, x)
            outputs[key("margin", "decision", setting, step)] = np.float64(margin)
            loss, after = reference.train_step(model, state, x, y, config)
            outputs.update(_step_outputs(setting, step, state, loss, after.astype(np.float32) if rounded else after))
            state = after.astype(np.float32)
            loss, free = reference.train_step(model, free, x, y, config)
            free = free.astype(np.float32) if rounded else free
            outputs[key("free-running", "loss", setting, step)] = np.float64(loss)
        outputs.update({key("free-running", name, setting, len(batches)): value for name, value in free.params.items()})
    return outputs


# --- The key --------------------------------------------------------------------------------------

# The modules whose code the computation runs, hashed whole: this one (`compute`), the float64
# models, definitions (the output names, `_step_outputs`, `_state_arrays`, the weights' and batches'
# drawing) and base (the model catalogue, BatchNorm's constants, the schedule, `TrainingState`).
# Whole files, not the functions used: a helper added to any of them and called is then covered
# without anyone remembering to list it; the price is one recomputation when unrelated code in
# them changes. base's own import (the tuning table's `Setting`) runs no code of the computation.
SOURCES = (sys.modules[__name__], reference, definitions, frameworks.base)


def source_digest() -> str:
    """A SHA-256 of the files of `SOURCES` as they are on disk now."""
    digest = hashlib.sha256()
    for module in SOURCES:
        data = Path(module.__file__).read_bytes()
        digest.update(f"{module.__name__}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


# Read once, as the modules are imported: a file edited while this process runs is not the code it
# runs, and its outputs must not be kept under the edited file's key.
SOURCE_DIGEST = source_digest()


def _numerics() -> str:
    """What NumPy's float64 results depend on besides the code: Python's and NumPy's versions, the
    BLAS NumPy calls (OpenBLAS picks its kernels by CPU), the CPU, and the SIMD kernels NumPy
    dispatches to on it (they set the order of a sum's terms)."""
    config = np.show_config(mode="dicts")
    blas = config.get("Build Dependencies", {}).get("blas", {})
    return repr((platform.python_version(), np.__version__, platform.machine(), cpu_model(),
                 blas.get("name"), blas.get("version"), blas.get("openblas configuration"),
                 config.get("SIMD Extensions", {}).get("found")))


def reference_key(inputs: ReferenceInputs) -> str:
    """A SHA-256 of everything `compute(inputs)` depends on: the source of the modules it runs
    (`SOURCE_DIGEST`), NumPy and the CPU (`_numerics`), and every input's value (weights and batches by their bytes,
    dtype and shape; each setting's optimizer, which `TRAINING_CONFIGS` and `PLANS` give, by its
    fields), never by a name alone."""
    digest = hashlib.sha256()

    def add(label: str, data: bytes) -> None:  # each part framed by its label and length, so none can run into the next
        digest.update(f"{label}\0{len(data)}\0".encode())
        digest.update(data)

    def add_array(label: str, value) -> None:
        value = np.ascontiguousarray(value)
        add(f"{label} {value.dtype.str} {value.shape}", value.tobytes())

    add("sources", SOURCE_DIGEST.encode())
    add("numerics", _numerics().encode())
    add("model", inputs.model.encode())
    add("precision", inputs.precision.encode())
    add("configs", repr([(setting, dataclasses.astuple(config)) for setting, config in inputs.configs]).encode())
    for name, value in inputs.params.items():
        add_array(f"params {name}", value)
    for step, (images, labels) in enumerate(inputs.batches):
        add_array(f"images {step}", images)
        add_array(f"labels {step}", labels)
    return digest.hexdigest()


# --- The cache on disk ----------------------------------------------------------------------------


def cache_folder() -> Path | None:
    """Where the outputs are kept: $BENCHMARKS_REFERENCE_CACHE, or the user's cache folder beside
    CIFAR-10's; None when that variable is "off"."""
    setting = os.environ.get(CACHE_ENV, "")
    if setting == "off":
        return None
    return Path(setting) if setting else cache_dir() / "parity-reference"


def _read(path: Path, digest: str) -> dict[str, np.ndarray] | None:
    """The outputs kept in `path`, or None where there are none or the file cannot be trusted: cut
    short, a member whose CRC fails, not an .npz, or written under another key."""
    try:
        with np.load(path) as arrays:  # allow_pickle stays off: a cache file cannot run code
            if str(arrays[KEY_ENTRY]) != digest:
                return None
            scalars = set(arrays[SCALARS_ENTRY].tolist())
            return {name: arrays[name][()] if name in scalars else arrays[name]
                    for name in arrays.files if name not in (KEY_ENTRY, SCALARS_ENTRY)}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return None


def _write(path: Path, digest: str, outputs: dict[str, np.ndarray]) -> None:
    """Keep `outputs` in `path`, whole or not at all: written to a temporary file in the same folder,
    then renamed over `path` (atomic), so a concurrent reader finds the old file, the new one or none.
    The same model and precision's entries under other keys are deleted (each can take hundreds of
    MB, and they describe code or inputs that are gone). A cache that cannot be written warns and
    leaves the outputs to be recomputed next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f"{path.stem}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                scalars = np.array([name for name, value in outputs.items() if isinstance(value, np.generic)], str)
                np.savez(file, **{KEY_ENTRY: np.str_(digest), SCALARS_ENTRY: scalars}, **outputs)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as error:
        warnings.warn(f"the float64 reference's outputs could not be cached in {path.parent}: {error}", stacklevel=3)
        return
    model_precision = path.stem[:-len(digest)]  # "model-precision-"
    for other in path.parent.glob(f"{model_precision}{'?' * len(digest)}.npz"):
        if other != path:
            other.unlink(missing_ok=True)
    for other in path.parent.glob(f"{model_precision}*.tmp"):
        try:
            if time.time() - other.stat().st_mtime > STALE_TEMPORARY_S:
                other.unlink()
        except FileNotFoundError:
            pass


def load_or_compute(inputs: ReferenceInputs) -> dict[str, np.ndarray]:
    """`compute(inputs)`, read from the cache where an entry of the same key is there and whole,
    otherwise computed and kept there."""
    folder = cache_folder()
    if folder is None:
        return compute(inputs)
    digest = reference_key(inputs)
    path = folder / f"{inputs.model}-{inputs.precision}-{digest}.npz"
    outputs = _read(path, digest)
    if outputs is None:
        outputs = compute(inputs)
        _write(path, digest, outputs)
    return outputs


@functools.cache
def reference_outputs(model: str, precision: str = "fp32") -> dict[str, np.ndarray]:
    """The reference's outputs for `model`'s checks in `precision` (see `compute`), kept in this
    process (`__wrapped__` reads the disk cache without keeping them)."""
    return load_or_compute(ReferenceInputs.of(model, precision))
