"""The runner's convergence verdict catches a framework whose training really differs: PyTorch's adapter
with its learning rate cut to a tenth (`tests/skewed_framework.py`), run beside PyTorch and JAX over
several seeds, is flagged, and neither of the two that train alike is."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from frameworks import EXTRA_ENV
from tests.conftest import ROOT, require_installed
from tests.skewed_framework import EXTRA_FRAMEWORKS

# Six seeds: the steps-to-target permutation test reaches p = 2 / C(12, 6) when every seed of one side
# misses the target and every seed of the other reaches it, which passes Holm's and the two measures'
# corrections; at four seeds it could not (2 / C(8, 4) = 0.029, doubled).
SEEDS = 6


@pytest.mark.slow
def test_a_framework_trained_at_another_learning_rate_is_flagged_and_it_alone(tmp_path):
    for framework in ("pytorch", "jax"):
        require_installed(framework)
    command = [sys.executable, "-m", "benchmarks.run", "--framework", "pytorch,jax,skewed", "--data", "synthetic",
               "--train-size", "1024", "--test-size", "256", "--batch-size", "32", "--epochs", "3",
               "--target-accuracy", "0.2", "--seeds", str(SEEDS), "--threads", "1", "--no-parity", "--out",
               str(tmp_path)]
    completed = subprocess.run(command, cwd=ROOT, env={**os.environ, EXTRA_ENV: EXTRA_FRAMEWORKS},
                               capture_output=True, text=True, timeout=1200)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    (run_dir,) = tmp_path.iterdir()
    verdicts = pd.read_csv(run_dir / "convergence.csv").set_index("label")
    assert set(verdicts.index) == {"pytorch:eager", "jax:jit", "skewed:eager"}
    assert verdicts["flagged"].to_dict() == {"pytorch:eager": False, "jax:jit": False, "skewed:eager": True}, \
        verdicts
    report = (run_dir / "report.md").read_text()
    assert "skewed:eager" in report and "Do they converge alike?" in report
