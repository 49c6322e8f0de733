"""A framework added from outside `frameworks/`: the NumPy stand-in (`tests/standin_framework.py`),
registered through BENCHMARKS_EXTRA_FRAMEWORKS, runs end to end with its own version, threads,
profiler and op categories, and the report names it; the registry's extra entries declare which
hooks they offer."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from benchmarks.harness.profiling import CATEGORIES
from frameworks import EXTRA_ENV, REGISTRY, profiled, resolve
from tests.conftest import ROOT
from tests.standin_framework import EXTRA_FRAMEWORKS, RULES, VERSION, standin_category

STEPS, WINDOW = 6, 2
JOB_ID = "lenet-standin-numpy-tuned-bs32-r1"


def test_an_extra_entry_declares_the_hooks_its_adapter_offers(monkeypatch):
    monkeypatch.setenv(EXTRA_ENV, f"{EXTRA_FRAMEWORKS};faulty=tests.faulty_framework:ok")
    standin, faulty = resolve("standin"), resolve("faulty")
    assert (standin.variants, standin.profiler, standin.device_matmul) == (("numpy",), True, False)
    assert (faulty.variants, faulty.profiler, faulty.device_matmul) == (("ok",), False, False)
    assert profiled() == [*(name for name, entry in REGISTRY.items() if entry.profiler), "standin"]
    assert (standin.packages, dict(standin.env), dict(standin.cpu_env)) == ((), {}, {})


def test_an_extra_entry_with_an_unknown_feature_is_refused(monkeypatch):
    monkeypatch.setenv(EXTRA_ENV, "standin=tests.standin_framework:numpy+tracer")
    with pytest.raises(ValueError, match=r"standin asks for tracer \(features: profiler, device_matmul\)"):
        resolve("standin")


def test_the_standin_rules_name_comparable_categories():
    assert {category for _, category in RULES} <= set(CATEGORIES)
    assert standin_category("standin::backward", "") == "convolution backward"


@pytest.fixture(scope="module")
def standin_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    command = [sys.executable, "-m", "benchmarks.run", "--framework", "standin", "--data", "synthetic",
               "--train-size", "256", "--test-size", "64", "--batch-size", "32", "--steps", str(STEPS),
               "--warmup", "1", "--window", str(WINDOW), "--threads", "1", "--profile", "--no-parity",
               "--out", str(out)]
    env = {**os.environ, EXTRA_ENV: EXTRA_FRAMEWORKS}
    completed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    (run_dir,) = out.iterdir()
    return run_dir


@pytest.mark.slow
def test_the_standin_runs_with_its_own_version_and_threads(standin_run):
    summary = pd.read_csv(standin_run / "summary.csv")
    assert list(summary["job_id"]) == [JOB_ID]
    row = summary.iloc[0]
    assert row["status"] == "ok"
    assert row["framework_version"] == VERSION
    assert row["threads"] == 1
    assert (pd.read_csv(standin_run / "steps.csv")["job_id"] == JOB_ID).sum() == STEPS // WINDOW


@pytest.mark.slow
def test_the_standin_profile_is_sorted_by_its_own_rules(standin_run):
    assert json.loads((standin_run / "profiles" / JOB_ID / "trace.json").read_text())["traceEvents"]
    ops = pd.read_csv(standin_run / "profile.csv").query("job_id == @JOB_ID")
    assert dict(zip(ops["op"], ops["category"])) == {"standin::forward": "convolution forward",
                                                     "standin::backward": "convolution backward",
                                                     "standin::sgd": "optimizer"}
    assert ops["share"].sum() == pytest.approx(1.0, abs=1e-6)
    assert (ops["calls"] == 1).all(), "one event per phase and step"


@pytest.mark.slow
def test_the_report_names_the_standin(standin_run):
    report = (standin_run / "report.md").read_text()
    assert "standin:numpy" in report
    assert "## Where the time goes (profile)" in report
