"""pytest-benchmark timings of one training step per framework and variant (batch 128, CPU).
Not part of the default run: `pytest -m benchmarks --benchmark-only`; compare two machines or
versions with `--benchmark-save NAME` and `--benchmark-compare`."""

import numpy as np
import pytest

from frameworks.base import TrainConfig, init_params
from tests.conftest import VARIANTS, require

pytestmark = pytest.mark.benchmarks
BATCH_SIZE = 128


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_training_step(benchmark, variant):
    framework, name = variant.split(":")
    adapter = require(framework)("lenet", "cpu", name, TrainConfig())
    adapter.set_params(init_params("lenet", seed=0))
    rng = np.random.default_rng(0)
    images = rng.standard_normal((BATCH_SIZE, 32, 32, 3)).astype(np.float32)
    labels = rng.integers(0, 10, BATCH_SIZE).astype(np.int32)
    for _ in range(5):  # compile and warm up outside the measurement
        adapter.train_step(images, labels)
    adapter.synchronize()
    losses = []

    def step():
        losses.append(adapter.train_step(images, labels))
        adapter.synchronize()  # each round is one complete step

    benchmark.extra_info.update(framework=framework, variant=name, batch_size=BATCH_SIZE)
    benchmark(step)
    assert np.isfinite(adapter.losses_to_numpy(losses)).all()
