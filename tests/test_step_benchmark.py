"""pytest-benchmark's timing of one LeNet training step (batch 128, CPU) per framework, set up and fed as
the runner's worker does it (`benchmarks.stepbench` holds the job), one framework per process. The timing
is in no tier: `python -m benchmarks.stepbench` runs each framework in a pytest process of its own
(docs/testing.md). The guard and the helpers it relies on are tested in the default tier."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import stepbench
from benchmarks.harness import data as datasets
from benchmarks.harness.spawn import framework_env
from benchmarks.harness.training import tune
from benchmarks.harness.worker import pin
from frameworks import REGISTRY, load_adapter, registry
from frameworks.base import init_params
from tests.conftest import ROOT, SHELL_ENV


def foreign_frameworks(framework: str, modules=sys.modules) -> list[str]:
    """The registered frameworks other than `framework` whose adapter this process has imported. Not
    their packages: Keras imports JAX wherever it is installed, without being JAX's adapter."""
    return [name for name, entry in registry().items() if name != framework and entry.module in modules]


def start_worker_like(framework: str) -> None:
    """This process as the runner's worker for the job: its environment (from the user's shell, not the
    one conftest adds for in-process parity tests), pinned to the job's cores."""
    job = stepbench.job(framework)
    for name, value in SHELL_ENV.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    os.environ.update(framework_env([REGISTRY[framework]], job.placement.device, job.placement.threads,
                                    job.what.tuning))
    pin(job)


@pytest.mark.benchmarks
@pytest.mark.parametrize("framework", [pytest.param(name, marks=pytest.mark.benchmark(group=stepbench.save_name(name)))
                                       for name in REGISTRY], ids=str)
def test_training_step(benchmark, framework):
    others = foreign_frameworks(framework)
    if others:
        pytest.fail(f"this process has imported {', '.join(others)} already: a process times one framework, as the "
                    f"runner's workers do. Select one (python -m pytest -m benchmarks '{stepbench.TEST}[{framework}]') "
                    f"or run python -m benchmarks.stepbench, which starts a process per framework", pytrace=False)
    job = stepbench.job(framework)
    start_worker_like(framework)
    try:
        adapter_cls = load_adapter(framework)
    except ImportError as error:
        pytest.skip(f"{framework} is not installed: {error}")
    adapter_cls.configure_threads(job.process_threads)
    tune(adapter_cls, job)
    adapter = adapter_cls(job.what.model, job.placement.device, job.what.variant,
                          job.train_config(job.timing.steps + job.timing.warmup_steps + 1))
    adapter.set_params(init_params(job.what.model, job.seed))
    # The job's first epoch, drawn before the clock as the runner draws a window's batches, then again.
    batches = itertools.cycle(list(datasets.train_batches(datasets.synthetic(), job.what.batch_size, job.seed, 0)))
    placed = adapter.place(*next(batches))
    adapter.wait(placed)
    losses = []

    def step():
        nonlocal placed
        losses.append(adapter.train_step(*placed))
        placed = adapter.place(*next(batches))  # the next batch's copy while the step runs: the prefetch input path
        if len(losses) % stepbench.WINDOW == 0:  # a round's last step: its time includes the queued work
            adapter.synchronize()

    benchmark.extra_info.update(framework=framework, variant=job.what.variant, model=job.what.model,
                                batch_size=job.what.batch_size, tuning=job.what.tuning,
                                threads=job.placement.threads, steps_per_round=stepbench.WINDOW,
                                framework_version=adapter_cls.version())
    benchmark.pedantic(step, rounds=stepbench.ROUNDS, iterations=stepbench.WINDOW,
                       warmup_rounds=stepbench.WARMUP_ROUNDS)
    values = adapter.losses_to_numpy(losses)
    assert np.isfinite(values).all(), f"the loss became {values[~np.isfinite(values)][0]}"
    if not benchmark.disabled:  # every round had its WINDOW steps (so its sync), and pedantic one more, untimed
        assert len(losses) == (stepbench.WARMUP_ROUNDS + stepbench.ROUNDS) * stepbench.WINDOW + 1


def test_the_guard_names_another_frameworks_adapter_not_packages_a_framework_shares():
    keras_and_jax = {"frameworks.tensorflow_keras": None, "tensorflow": None, "keras": None, "jax": None}
    assert foreign_frameworks("tensorflow", keras_and_jax) == []
    assert foreign_frameworks("jax", keras_and_jax) == ["tensorflow"]
    assert foreign_frameworks("jax", {"frameworks.pytorch": None, "frameworks.jax_flax": None}) == ["pytorch"]


def test_each_framework_compares_with_its_own_newest_baseline(tmp_path):
    machine = tmp_path / "Linux-CPython-3.12-64bit"
    machine.mkdir()
    for name in ("0001_lenet-pytorch", "0002_lenet-jax", "0003_lenet-pytorch", "0004_lenet-tensorflow"):
        (machine / f"{name}.json").write_text("{}")
    assert [stepbench.baseline_number(tmp_path, name) for name in ("pytorch", "jax", "tensorflow")] == \
        ["0003", "0002", "0004"]
    assert stepbench.baseline_number(tmp_path / "absent", "pytorch") is None


def test_the_timers_agree_within_the_margin_and_not_beyond():
    assert stepbench.agreement(10.0, 10.0 * (1 + stepbench.MARGIN) - 1e-9)[1] == "agree"
    assert stepbench.agreement(10.0, 10.0 * (1 - stepbench.MARGIN) + 1e-9)[1] == "agree"
    assert stepbench.agreement(10.0, 10.0 * (1 + stepbench.MARGIN) + 1e-6)[1] == "disagree"
    assert stepbench.agreement(10.0, 10.0 * (1 - stepbench.MARGIN) - 1e-6)[1] == "disagree"


@pytest.mark.parametrize("options, message", [
    (["--framework", "mxnet"], "unknown framework 'mxnet'"),
    (["--compare", "--out", "runs"], "argument --out: only with --against-runner"),
    (["--save", "--compare"], "not allowed with argument"),
],
                         ids=["an unknown framework", "a folder for a table not written", "two modes"])
def test_bad_input_gets_one_line_and_exit_2(options, message):
    completed = subprocess.run([sys.executable, "-m", "benchmarks.stepbench", *options], cwd=ROOT, capture_output=True,
                               text=True)
    assert completed.returncode == 2
    assert message in completed.stderr and "Traceback" not in completed.stderr
