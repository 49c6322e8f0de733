"""The framework registry: names, aliases, variants, and lazy imports."""

import os
import subprocess
import sys

import pytest

from benchmarks.harness.jobs import Data, Job, Placement, Timing, Workload
from benchmarks.harness.spawn import framework_env, job_frameworks, run_worker, worker_env
from frameworks import EXTRA_ENV, REGISTRY, UnknownFramework, registry, resolve
from frameworks.base import TrainConfig
from frameworks.tuning import PROFILES
from tests.conftest import ROOT, make_job


@pytest.mark.parametrize("name, expected", [(name, entry.name) for entry in REGISTRY.values()
                                            for name in (entry.name, *entry.aliases)], ids=str)
def test_resolve_accepts_names_and_aliases(name, expected):
    assert resolve(name).name == expected


def test_unknown_framework_is_a_clear_error_naming_the_accepted_ones():
    names = sorted([*REGISTRY, *(alias for entry in REGISTRY.values() for alias in entry.aliases)])
    with pytest.raises(UnknownFramework) as error:
        resolve("mxnet")
    assert str(error.value) == f"unknown framework 'mxnet' (choose from: all, {', '.join(names)})"


@pytest.mark.parametrize("name", ["", "all", "Mx-Net", "tf", "jax"], ids=repr)
def test_an_extra_framework_needs_a_name_of_its_own(name, monkeypatch):
    monkeypatch.setenv(EXTRA_ENV, f"{name}=tests.standin_framework:numpy")
    with pytest.raises(ValueError, match=rf"{EXTRA_ENV}: '{name}' cannot name a framework"):
        registry()


def test_every_framework_has_a_default_variant_first():
    assert {name: entry.default_variant for name, entry in REGISTRY.items()} == {
        "pytorch": "eager", "tensorflow": "function", "jax": "jit", "keras_jax": "fit", "keras_torch": "fit"}


def test_every_framework_carries_what_the_report_shows_of_it():
    colours = [entry.colour for entry in REGISTRY.values()]
    assert all(colours) and len(set(colours)) == len(colours), "a colour of its own"
    markers: dict[str, str] = {}
    for entry in REGISTRY.values():
        assert set(entry.markers) == set(entry.variants), entry.name
        assert bool(entry.trace_viewer) == entry.profiler, entry.name
        assert set(entry.compilers) <= set(entry.variants), entry.name
        for variant, marker in entry.markers.items():
            assert markers.setdefault(variant, marker) == marker, f"{entry.name}:{variant}: another variant's marker"
    assert len(set(markers.values())) == len(markers), "one marker per variant name"


def test_importing_the_harness_imports_no_framework():
    packages = sorted({package for entry in REGISTRY.values() for package in entry.packages})
    code = (f"import sys, benchmarks.run, benchmarks.parity, report.render; "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(packages)!r}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert all(entry.packages for entry in REGISTRY.values()), "each entry names the packages its adapter imports"


def test_the_report_reads_data_and_the_registry_and_the_harness_never_imports_the_report():
    code = ("import sys, report.render, report.readme, report.compare, report.merge, report.noise; "
            "print(sorted(m for m in sys.modules if m.startswith('frameworks')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['frameworks']", \
        "the report reads CSV files, env.json and the registry's entries, never an adapter or the float64 model"
    code = "import sys, benchmarks.run; print(sorted(m for m in sys.modules if m.split('.')[0] == 'report'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", "the runner renders the report in a process of its own"


# What each framework's workers must have before the import, for isolation; every worker also gets
# OMP_NUM_THREADS, PYTHONUNBUFFERED and, on CPU, CUDA_VISIBLE_DEVICES="". Tuned workers add the tuning
# table's environment entries (TUNED).
WORKER_ENV = {
    "pytorch": ({}, {}),
    "tensorflow": ({"TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow", "TF_FORCE_GPU_ALLOW_GROWTH": "true"},
                   {}),
    "jax": ({"TF_CPP_MIN_LOG_LEVEL": "2", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}, {"JAX_PLATFORMS": "cpu"}),
}
TUNED = {
    ("pytorch", "cpu"): {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"},
    ("pytorch", "cuda"): {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"},
    ("tensorflow", "cpu"): {"TF_ENABLE_ONEDNN_OPTS": "1"},
    ("tensorflow", "cuda"): {"TF_XLA_FLAGS": "--tf_xla_auto_jit=2", "TF_GPU_THREAD_MODE": "gpu_private"},
    ("jax", "cpu"): {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"},
    ("jax", "cuda"): {"XLA_FLAGS": "--xla_gpu_triton_gemm_any=true --xla_gpu_enable_latency_hiding_scheduler=true"},
}


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("framework", list(WORKER_ENV), ids=str)
def test_a_worker_gets_its_frameworks_environment_and_its_profiles(framework, device, profile, monkeypatch):
    settings = {name for entry in WORKER_ENV.values() for part in entry for name in part}
    tuned = {name for entry in TUNED.values() for name in entry}
    for name in (*settings, *tuned, "CUDA_VISIBLE_DEVICES"):  # the shell's (or another test's) own
        monkeypatch.delenv(name, raising=False)
    always, on_cpu = WORKER_ENV[framework]
    env = framework_env([resolve(framework)], device, 3, profile)
    expected = {**always, "OMP_NUM_THREADS": "3", "PYTHONUNBUFFERED": "1",
                **({**on_cpu, "CUDA_VISIBLE_DEVICES": ""} if device == "cpu" else {}),
                **(TUNED[framework, device] if profile == "tuned" else {})}
    assert {name: env.get(name) for name in expected} == expected
    assert not ((settings | tuned) - set(expected)) & set(env), "another framework's or profile's settings"


def test_a_workers_keras_backend_is_its_entrys_whatever_the_shell_exports(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "numpy")
    keras_entries = [entry for entry in REGISTRY.values() if "KERAS_BACKEND" in entry.env]
    assert keras_entries, "the Keras adapter's entry names its backend"
    for entry in keras_entries:
        assert framework_env([entry], "cpu", 1)["KERAS_BACKEND"] == entry.env["KERAS_BACKEND"], entry.name


def test_a_tuned_flag_list_keeps_the_users_flags(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/dump")
    env = framework_env([resolve("jax")], "cpu", 1, "tuned")
    assert env["XLA_FLAGS"] == "--xla_dump_to=/tmp/dump --xla_cpu_experimental_ynn_fusion_type=-individual_convolution"


def test_the_peak_worker_gets_the_environment_of_every_framework_it_may_import():
    job = Job(kind="peak", what=Workload("numpy", "matmul", "", 0), training=TrainConfig(),
              placement=Placement(device="cuda"))
    assert [entry.name for entry in job_frameworks(job)] == ["pytorch", "jax"]
    assert worker_env(job)["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"


@pytest.mark.slow  # a worker that imports its framework and trains
def test_a_foreign_keras_backend_in_the_shell_changes_nothing_a_worker_runs(framework, monkeypatch, tmp_path):
    """A Keras user's shell exports KERAS_BACKEND; each framework's workers train as they would without it."""
    own = REGISTRY[framework].env.get("KERAS_BACKEND")
    monkeypatch.setenv("KERAS_BACKEND", "torch" if own == "jax" else "jax")
    job = make_job(framework, REGISTRY[framework].default_variant, 8, timing=Timing(steps=2, warmup_steps=0, window=2),
                   data=Data(train_size=64, test_size=16), placement=Placement(threads=1))
    result = run_worker(job, tmp_path / "worker.log", 300.0, lambda message: None)
    assert result["status"] == "ok", result


@pytest.mark.parametrize("framework", [name for name, entry in REGISTRY.items() if "KERAS_BACKEND" in entry.env],
                         ids=str)
def test_a_float64_caveat_is_stated_exactly_where_keras_promotes_float64_to_float32(framework):
    """The caveat holds parity's float64 comparisons of a framework to float32's bounds: it must be
    there while the installed Keras computes float64 in float32 on the entry's backend, and go when
    Keras stops doing so."""
    entry = REGISTRY[framework]
    promoted = subprocess.run([sys.executable, "-c", "import keras; print(keras.backend.result_type('float64', "
                               "'float64'))"], env={**os.environ, **entry.env, **entry.cpu_env}, capture_output=True,
                              text=True, timeout=300, cwd=ROOT)
    assert promoted.returncode == 0, promoted.stderr
    assert (promoted.stdout.strip() == "float32") == bool(entry.float64_caveat), promoted.stdout
