"""What a run ran on, for `env.json`: versions, CPU and GPU, threads, flags, command and git
commit. Framework versions come from package metadata (the packages each registry entry names),
so nothing heavy is imported here."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

from frameworks import registry
from frameworks.tuning import TABLE

PACKAGES = ("numpy", "pandas")  # besides each framework's own
FLAGS = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "OMP_PROC_BIND", "OMP_PLACES", "OMP_WAIT_POLICY", "GLIBC_TUNABLES",
         "LD_PRELOAD")  # besides each framework's own; LD_PRELOAD: another malloc


def _command(args: list[str], cwd: Path | None = None) -> str | None:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=10, cwd=cwd, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# The vector instruction sets that decide which kernels oneDNN, XLA and Eigen pick, in /proc/cpuinfo's names.
CPU_FEATURES = ("sse4_2", "avx", "avx2", "fma", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_features() -> list[str] | None:
    """The CPU's vector instruction sets, from the flags of /proc/cpuinfo (None where there is none)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return None
    present = set(flags.split(":", 1)[1].split())
    return [feature for feature in CPU_FEATURES if feature in present]


def _transparent_huge_pages() -> str | None:
    """The kernel's transparent huge page mode (the bracketed choice), which decides how large buffers get pages."""
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return None
    return text[text.find("[") + 1:text.find("]")] if "[" in text else text.strip()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect(root: Path, worker_env: dict[str, str], module: str = "benchmarks.run") -> dict:
    """`worker_env`: the environment workers start from (the user's shell), for the flags they
    inherited; what each profile adds is recorded apart (`tuning`). `module`: the command that ran."""
    frameworks = registry().values()
    packages = [*(package for entry in frameworks for package in entry.packages), *PACKAGES]
    flags = dict.fromkeys([*(flag for entry in frameworks for flag in entry.flags), *FLAGS,
                           *(setting.name for setting in TABLE if setting.kind == "env")])
    gpus = _command(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"])
    commit = _command(["git", "rev-parse", "HEAD"], cwd=root)
    dirty = _command(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root)
    return {
        "command": shlex.join([Path(sys.executable).name, "-m", module, *sys.argv[1:]]),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_features": cpu_features(),
        "transparent_hugepages": _transparent_huge_pages(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "gpus": gpus.splitlines() if gpus else [],
        "git_commit": commit and (commit + ("-dirty" if dirty else "")),
        "packages": {package: _version(package) for package in packages},
        "flags": {flag: worker_env[flag] for flag in flags if flag in worker_env},
    }
