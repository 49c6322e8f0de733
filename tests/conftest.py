"""Shared fixtures: framework selection that skips what is not installed, and the real CIFAR-10
copy built from ../shared when this checkout has it."""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.harness.jobs import Data, Job, Placement, Timing, Workload
from frameworks import EXTRA_ENV, REGISTRY, load_adapter, tuning
from frameworks.base import TrainConfig
from tests.faulty_framework import EXTRA_FRAMEWORKS

# In-process tests run the frameworks with the environment of the default profile's CPU workers
# (oneDNN for TensorFlow, XLA's own convolutions for JAX), so parity covers the kernels that are
# benchmarked by default (`tuning.DEFAULT_PROFILE`). No framework is imported yet.
TUNED_CPU_ENV = tuning.environment([setting for name in REGISTRY
                                    for setting in tuning.settings_for(name, "cpu", "fp32", "")], os.environ)
SHELL_ENV = {name: os.environ.get(name) for name in TUNED_CPU_ENV}  # what `untuned` restores
os.environ.update(TUNED_CPU_ENV)

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
FRAMEWORKS = list(REGISTRY)
VARIANTS = [f"{name}:{variant}" for name, entry in REGISTRY.items() for variant in entry.variants]
DEFAULT_VARIANTS = [f"{name}:{entry.default_variant}" for name, entry in REGISTRY.items()]


def tiered(*values, id: str) -> pytest.param:
    """A test case, in the slow tier (`pytest -m slow`) when it involves a variant other than a
    framework's default: the default tier checks every framework's default variant."""
    slow = any(value in VARIANTS and value not in DEFAULT_VARIANTS for value in values)
    return pytest.param(*values, id=id, marks=[pytest.mark.slow] if slow else [])


@functools.cache
def _torch_compiler_first() -> None:
    """TensorFlow's native libraries and Triton's (loaded by torch._dynamo, which torch.optim and
    torch.compile import lazily) clash when TensorFlow is loaded first: the process segfaults.
    The suite never mixes frameworks in one process; tests that do load PyTorch's compiler first."""
    if importlib.util.find_spec("torch") is not None:
        import torch._dynamo  # noqa: F401


# Keras loads one backend per process, the one KERAS_BACKEND names at its import: this process's
# (TensorFlow's unless the shell says otherwise). A framework on another Keras backend is imported,
# and its in-process tests run, only in a process of its own: `KERAS_BACKEND=<backend> pytest -m
# <framework>` runs them (the marker is added below; `python -m tests.apart` runs them all); its workers
# (parity, the runner) run anywhere.
IN_PROCESS_KERAS = os.environ.get("KERAS_BACKEND", "tensorflow")


def keras_backend(framework: str) -> str | None:
    """The Keras backend `framework` runs on (its workers' KERAS_BACKEND), None for a native one."""
    entry = REGISTRY.get(framework)
    return entry.env.get("KERAS_BACKEND") if entry else None


def foreign(framework: str) -> bool:
    """Whether `framework` needs another Keras backend than this process holds."""
    return keras_backend(framework) not in (None, IN_PROCESS_KERAS)


# The frameworks whose in-process tests the default run (Keras's default backend) cannot run.
APART = [name for name in FRAMEWORKS if keras_backend(name) not in (None, "tensorflow")]


@functools.cache
def import_error(framework: str) -> str | None:
    if foreign(framework):  # asked of a process with its workers' environment
        entry = REGISTRY[framework]
        done = subprocess.run([sys.executable, "-c", f"import {entry.module}"], cwd=ROOT, capture_output=True,
                              text=True, env={**os.environ, **entry.env, **entry.cpu_env}, timeout=300)
        lines = done.stderr.strip().splitlines()
        return f"{framework} is not installed: {lines[-1] if lines else done.returncode}" if done.returncode else None
    _torch_compiler_first()
    try:
        load_adapter(framework)
    except ImportError as error:
        return f"{framework} is not installed: {error}"
    return None


def require_installed(framework: str) -> None:
    """Skip the test unless `framework` can be imported (in a process of its own, if need be)."""
    reason = import_error(framework)
    if reason:
        pytest.skip(reason)


def require(framework: str):
    """The adapter class of `framework`, or skip the test with the import error, or where the
    framework needs a process of its own (another Keras backend) with the command that runs it."""
    require_installed(framework)
    if foreign(framework):
        backend = keras_backend(framework)
        pytest.skip(f"{framework} runs on Keras's {backend} backend, which this process (KERAS_BACKEND="
                    f"{IN_PROCESS_KERAS}) cannot load: `KERAS_BACKEND={backend} pytest -m {framework}` runs it")
    return load_adapter(framework)


def pytest_configure(config):
    for name in APART:
        config.addinivalue_line("markers", f"{name}: the in-process tests of {name}, which need Keras's "
                                           f"{keras_backend(name)} backend (run with: KERAS_BACKEND="
                                           f"{keras_backend(name)} pytest -m {name})")


def pytest_collection_modifyitems(config, items):
    """Marks each in-process test (marked `in_process`: it builds adapters in the test's own process)
    parametrized with a framework of another Keras backend than the default with that framework's
    name; tests that start workers run in any process."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or not item.get_closest_marker("in_process"):
            continue
        named = {value.split(":")[0] for value in callspec.params.values() if isinstance(value, str)}
        for name in sorted(named & set(APART)):
            item.add_marker(name)


@pytest.fixture
def faulty(monkeypatch):
    """The fault-injecting stand-in framework (`tests.faulty_framework`), registered for in-process
    runs and the workers they start; test modules that run it throughout name it in `pytestmark`."""
    monkeypatch.setenv(EXTRA_ENV, EXTRA_FRAMEWORKS)


@pytest.fixture
def untuned(monkeypatch):
    """The user's shell as it was before this module added the tuned profile's environment: what a
    stock worker starts from."""
    for name, value in SHELL_ENV.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


def faulty_env() -> dict[str, str]:
    """The environment of a runner started as a subprocess, with the stand-in registered."""
    return {**os.environ, EXTRA_ENV: EXTRA_FRAMEWORKS}


def installed() -> list[str]:
    """The registry's frameworks whose packages are installed."""
    return [name for name in FRAMEWORKS if import_error(name) is None]


AUGMENTED_TRAIN_SIZE, AUGMENTED_BATCH = 256, 32


@pytest.fixture(scope="session")
def augmented_run(tmp_path_factory):
    """A short run with --augment crop-flip, through the ResNet-9 recipe (which also sets Nesterov
    momentum, weight decay and the one-cycle schedule; its cutout is replaced by crop-flip, which the
    native pipelines reproduce, and label smoothing is given on top, as explicit options override a
    recipe) on LeNet, each framework fed twice: by the suite's pipeline and by its own (--input
    native). No parity check: test_runner's run has one, and without it every framework's device
    probe builds with learning rate 0. Its folder and summary.csv, read by test_runner and
    test_native_input."""
    if len(installed()) < 2:
        pytest.skip(f"needs two installed frameworks, found {installed()}")
    out = tmp_path_factory.mktemp("augmented")
    command = [sys.executable, "-m", "benchmarks.run", "--framework", ",".join(installed()), "--recipe", "resnet9-94",
               "--model", "lenet", "--lr", "0.05", "--augment", "crop-flip", "--label-smoothing", "0.2",
               "--input", "native",
               "--data", "synthetic", "--train-size", str(AUGMENTED_TRAIN_SIZE), "--test-size", "200",
               "--batch-size", str(AUGMENTED_BATCH), "--epochs", "2", "--warmup", "1", "--window", "2", "--no-parity",
               "--out", str(out)]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    run_dir = run_folder(out)
    return run_dir, pd.read_csv(run_dir / "summary.csv", dtype={"data_digest": str})


def run_folder(out: Path) -> Path:
    """The one run folder a runner wrote under `out`."""
    (folder,) = out.iterdir()
    return folder


class QuietChannel:
    """A worker's channel to a parent that is not there: a job run in the test's own process sends
    nothing and takes no turns."""
    waited_s = 0.0

    def send(self, *args, **fields):
        pass

    def hand_on_turn(self):
        pass


def make_job(framework: str = "faulty", variant: str = "ok", batch_size: int = 32, *, timing: Timing = Timing(),
             data: Data = Data(), placement: Placement = Placement(), repeat: int = 1) -> Job:
    """A LeNet training job for tests that start a worker or a trainer themselves, by default of
    the fault-injecting stand-in that misbehaves in no way; each test names the parts it needs."""
    return Job(kind="benchmark", what=Workload(framework, variant, "lenet", batch_size), training=TrainConfig(),
               timing=timing, data=data, placement=placement, repeat=repeat)


@pytest.fixture(params=FRAMEWORKS, ids=str)
def framework(request) -> str:
    require_installed(request.param)
    return request.param


@pytest.fixture(scope="session")
def cifar10_dir(tmp_path_factory) -> Path:
    """cifar-10-batches-py/ rebuilt from the JPEG copy in ../shared (about 10 s, once)."""
    tool = SHARED / "tools" / "cifar10_from_jpeg.py"
    if not tool.exists():
        pytest.skip(f"{tool} is absent: no real CIFAR-10 copy on this machine")
    target = tmp_path_factory.mktemp("cifar10")
    subprocess.run([sys.executable, str(tool), str(target)], check=True, capture_output=True)
    return target / "cifar-10-batches-py"
