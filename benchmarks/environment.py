"""What a run ran on, for `env.json`: versions, CPU and GPU, threads, flags, command and git
commit. Framework versions come from package metadata, so nothing heavy is imported here."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

PACKAGES = ("torch", "tensorflow", "keras", "jax", "jaxlib", "flax", "optax", "numpy", "pandas")
FLAGS = ("XLA_FLAGS", "TF_XLA_FLAGS", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "TF_ENABLE_ONEDNN_OPTS")


def _command(args: list[str], cwd: Path | None = None) -> str | None:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=10, cwd=cwd, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect(root: Path, worker_env: dict[str, str]) -> dict:
    """`worker_env`: the environment workers start from, for the flags they ran with."""
    gpus = _command(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"])
    commit = _command(["git", "rev-parse", "HEAD"], cwd=root)
    dirty = _command(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root)
    return {
        "command": shlex.join([Path(sys.executable).name, "-m", "benchmarks.run", *sys.argv[1:]]),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "gpus": gpus.splitlines() if gpus else [],
        "git_commit": commit and (commit + ("-dirty" if dirty else "")),
        "packages": {package: _version(package) for package in PACKAGES},
        "flags": {flag: worker_env[flag] for flag in FLAGS if flag in worker_env},
    }
