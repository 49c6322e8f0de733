"""What a run ran on, for `env.json`: every installed distribution, CPU (governor, microcode) and
GPU (driver, memory, clocks, power limit), NumPy's BLAS, threads, flags, command and git commit.
Versions come from package metadata, so no framework is imported here: each framework's build is
read in its own workers (`Adapter.build_info`) and added by the runner."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shlex
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np

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


def _cpu_governor() -> str | None:
    """cpu0's frequency governor ("performance", "powersave"...), which decides how fast a core runs
    while it waits; None where the kernel exposes no cpufreq (virtual machines, containers)."""
    try:
        return Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor").read_text().strip()
    except OSError:
        return None


def _microcode() -> str | None:
    """The CPU's microcode revision (/proc/cpuinfo), which can change its speed (mitigations)."""
    try:
        return next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("microcode")), None)
    except OSError:
        return None


# nvidia-smi's query fields (with nounits: MiB, MHz, W) and env.json's names for them.
GPU_QUERY = {"name": "name", "driver_version": "driver", "memory.total": "memory_mib",
             "clocks.max.sm": "sm_clock_max_mhz", "clocks.max.mem": "memory_clock_max_mhz",
             "power.limit": "power_limit_w"}
GPU_TIMEOUT_S = 10.0


def _reading(field: str, text: str) -> str | float | None:
    """One nvidia-smi value: a number for the numeric fields, None where it says it has none ("[N/A]")."""
    if text.startswith("["):
        return None
    return text if field in ("name", "driver") else float(text)


def gpu_details() -> list[dict]:
    """Each GPU nvidia-smi lists: name, driver, memory, maximum clocks and power limit; none without
    the tool, or where it fails or hangs."""
    try:
        listing = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(GPU_QUERY)}",
                                  "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=GPU_TIMEOUT_S, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in listing.splitlines():
        values = [value.strip() for value in line.split(",")]
        try:
            gpus.append({field: _reading(field, value)
                         for field, value in zip(GPU_QUERY.values(), values, strict=True)})
        except ValueError:  # a line of another form: a message, not a GPU
            continue
    return gpus


def gpu_line(gpu: dict) -> str:
    """A GPU as env.json's `gpus` lists it: "name, driver, memory MiB", nvidia-smi's csv form."""
    memory = "[N/A]" if gpu["memory_mib"] is None else f"{gpu['memory_mib']:.0f} MiB"
    return f"{gpu['name']}, {gpu['driver']}, {memory}"


def distributions() -> dict[str, str]:
    """Every distribution installed into this Python environment (its site-packages, what `pip list` shows)
    and its version, by name; not whatever is on this process's path, where a test runner or setuptools may
    have put vendored copies."""
    paths = list(dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib")))
    if site.ENABLE_USER_SITE:
        paths.append(site.getusersitepackages())
    found = {}
    for dist in importlib.metadata.distributions(path=paths):
        name = dist.metadata["Name"]
        if name:
            found.setdefault(name, dist.version)
    return dict(sorted(found.items(), key=lambda item: item[0].lower()))


def numpy_blas() -> dict[str, str | None]:
    """The BLAS and LAPACK NumPy was built with (NumPy's own build record; it loads no framework)."""
    dependencies = np.show_config(mode="dicts").get("Build Dependencies", {})
    return {kind: " ".join(filter(None, (dependencies[kind].get("name"), dependencies[kind].get("version"))))
            if kind in dependencies else None for kind in ("blas", "lapack")}


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
    gpus = gpu_details()
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
        "cpu_governor": _cpu_governor(),
        "microcode": _microcode(),
        "gpus": [gpu_line(gpu) for gpu in gpus],
        "gpu_details": gpus,
        "git_commit": commit and (commit + ("-dirty" if dirty else "")),
        "packages": {package: _version(package) for package in packages},
        "distributions": distributions(),
        "numpy_blas": numpy_blas(),
        "flags": {flag: worker_env[flag] for flag in flags if flag in worker_env},
    }
