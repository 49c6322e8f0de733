"""PyTorch's adapter with one training difference injected: it trains at a tenth of the learning rate
asked for. Registered through BENCHMARKS_EXTRA_FRAMEWORKS (`EXTRA_FRAMEWORKS`), it stands for a
framework whose training really differs from the others', which the runner's convergence verdict
must flag, and flag alone."""

from __future__ import annotations

import dataclasses

from frameworks.base import SINGLE, DataParallel, TrainConfig
from frameworks.pytorch import PyTorchAdapter

EXTRA_FRAMEWORKS = "skewed=tests.skewed_framework:eager"  # the env variable's value
LEARNING_RATE_SCALE = 0.1


class SkewedAdapter(PyTorchAdapter):
    framework = "skewed"

    def __init__(self, model: str, device: str, variant: str, config: TrainConfig,
                 parallel: DataParallel = SINGLE):
        skewed = dataclasses.replace(config, learning_rate=config.learning_rate * LEARNING_RATE_SCALE)
        super().__init__(model, device, variant, skewed, parallel)


ADAPTER = SkewedAdapter
