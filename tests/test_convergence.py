"""The runner's convergence verdict catches a framework whose training really differs: PyTorch's adapter
with its learning rate cut to a tenth (`tests/skewed_framework.py`), run beside PyTorch and the NumPy
stand-in (`tests/standin_framework.py`, the float64 reference model: no framework to import, so each of
the eighteen jobs starts in a moment) over several seeds, is flagged, and neither of the two that train
alike is."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from frameworks import EXTRA_ENV
from tests.conftest import ROOT, require_installed
from tests.skewed_framework import EXTRA_FRAMEWORKS as SKEWED
from tests.standin_framework import EXTRA_FRAMEWORKS as STANDIN

# Six seeds: the steps-to-target permutation test reaches p = 2 / C(12, 6) when every seed of one side
# misses the target and every seed of the other reaches it, which passes Holm's and the two measures'
# corrections; at four seeds it could not (2 / C(8, 4) = 0.029, doubled).
SEEDS = 6


@pytest.mark.slow
def test_a_framework_trained_at_another_learning_rate_is_flagged_and_it_alone(tmp_path):
    require_installed("pytorch")
    command = [sys.executable, "-m", "benchmarks.run", "--framework", "pytorch,standin,skewed", "--data", "synthetic",
               "--train-size", "1024", "--test-size", "256", "--batch-size", "32", "--epochs", "3",
               "--target-accuracy", "0.2", "--seeds", str(SEEDS), "--threads", "1", "--no-parity", "--out",
               str(tmp_path)]
    completed = subprocess.run(command, cwd=ROOT, env={**os.environ, EXTRA_ENV: f"{STANDIN};{SKEWED}"},
                               capture_output=True, text=True, timeout=1200)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    (run_dir,) = tmp_path.iterdir()
    verdicts = pd.read_csv(run_dir / "convergence.csv").set_index("label")
    assert set(verdicts.index) == {"pytorch:eager", "standin:numpy", "skewed:eager"}
    expected = {"pytorch:eager": False, "standin:numpy": False, "skewed:eager": True}
    assert verdicts["flagged"].to_dict() == expected, verdicts
    report = (run_dir / "report.md").read_text()
    assert "skewed:eager" in report and "Do they converge alike?" in report
