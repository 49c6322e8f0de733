"""What env.json records of the machine without importing a framework: every installed distribution,
each GPU's fields as nvidia-smi reports them (none without the tool, never an error), and what the
report's Run section shows of them and of each framework's build."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.harness import environment
from report.sections import machine_section
from tests.conftest import ROOT

H100 = "NVIDIA H100 80GB HBM3, 550.54.15, 81559, 1980, 2619, 700.00"  # as --format=csv,noheader,nounits prints it
H100_FIELDS = {"name": "NVIDIA H100 80GB HBM3", "driver": "550.54.15", "memory_mib": 81559.0,
               "sm_clock_max_mhz": 1980.0, "memory_clock_max_mhz": 2619.0, "power_limit_w": 700.0}


def fake_nvidia_smi(folder: Path, monkeypatch, script: str) -> None:
    """An `nvidia-smi` that runs `script` (sh), first on PATH."""
    folder.mkdir()
    tool = folder / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\n{script}\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


def without_nvidia_smi(monkeypatch) -> None:
    """PATH without any folder that holds an `nvidia-smi`."""
    monkeypatch.setenv("PATH", os.pathsep.join(folder for folder in os.environ["PATH"].split(os.pathsep)
                                               if not (Path(folder) / "nvidia-smi").exists()))


def test_env_lists_every_installed_distribution_with_its_version():
    env = environment.collect(ROOT, {})
    installed = {dist.metadata["Name"]: dist.version for dist in importlib.metadata.distributions()}
    assert set(env["distributions"]) == set(installed)
    assert env["distributions"]["numpy"] == importlib.metadata.version("numpy")
    assert all(version for version in env["distributions"].values())


def test_gpu_fields_come_from_nvidia_smi_where_it_is_present(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path / "bin", monkeypatch, f'echo "{H100}"\necho "{H100.replace("H100", "H200")}"')
    env = environment.collect(ROOT, {})
    assert env["gpu_details"] == [H100_FIELDS, {**H100_FIELDS, "name": "NVIDIA H200 80GB HBM3"}]
    assert env["gpus"][0] == "NVIDIA H100 80GB HBM3, 550.54.15, 81559 MiB"


def test_a_gpu_field_nvidia_smi_lacks_is_none(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path / "bin", monkeypatch, f'echo "{H100.replace("700.00", "[N/A]")}"')
    assert environment.gpu_details() == [{**H100_FIELDS, "power_limit_w": None}]


@pytest.mark.parametrize("script", ["exit 9", "sleep 30"], ids=["fails", "hangs"])
def test_nvidia_smi_that_fails_or_hangs_gives_no_gpu_fields(script, tmp_path, monkeypatch):
    monkeypatch.setattr(environment, "GPU_TIMEOUT_S", 0.5)
    fake_nvidia_smi(tmp_path / "bin", monkeypatch, script)
    assert environment.gpu_details() == []


def test_without_nvidia_smi_there_are_no_gpu_fields(monkeypatch):
    without_nvidia_smi(monkeypatch)
    env = environment.collect(ROOT, {})
    assert env["gpu_details"] == [] and env["gpus"] == []


def test_the_run_section_shows_the_gpu_the_governor_and_each_frameworks_build_in_one_line():
    env = {**environment.collect(ROOT, {}), "gpu_details": [H100_FIELDS], "cpu_governor": "performance",
           "builds": {"pytorch": {"version": "2.14.1", "summary": "CUDA 13.0, cuDNN 92400, oneDNN v3.12.0",
                                  "flags": {"stock": {"cudnn.benchmark": False}}},
                      "jax": {"version": "0.10.2", "summary": "jaxlib 0.10.2, gpu backend (cuda 13000)", "flags": {}}}}
    section = machine_section(env, pd.DataFrame({"device": ["cuda"], "augment": ["none"]}))
    lines = section.splitlines()
    assert ("- GPU: NVIDIA H100 80GB HBM3, driver 550.54.15, 81,559 MiB, max clocks SM 1,980 MHz / memory "
            "2,619 MHz, power limit 700 W") in lines
    assert next(line for line in lines if line.startswith("- CPU:")).endswith("; governor: performance")
    assert "  - pytorch 2.14.1: CUDA 13.0, cuDNN 92400, oneDNN v3.12.0" in lines
    assert "  - jax 0.10.2: jaxlib 0.10.2, gpu backend (cuda 13000)" in lines
    assert "cudnn.benchmark" not in section, "flags stay in env.json"


def test_the_run_section_of_an_older_run_shows_its_gpu_as_listed():
    env = {**environment.collect(ROOT, {}), "gpu_details": None, "gpus": ["NVIDIA A100, 535.104.05, 40960 MiB"]}
    env.pop("builds", None)
    section = machine_section(env, pd.DataFrame({"device": ["cuda"], "augment": ["none"]}))
    assert "- GPU: NVIDIA A100, 535.104.05, 40960 MiB" in section.splitlines()
    assert "- Builds" not in section
