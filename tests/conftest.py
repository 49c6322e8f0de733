"""Shared fixtures: framework selection that skips what is not installed, and the real CIFAR-10
copy built from ../shared when this checkout has it."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import pytest

from frameworks import REGISTRY, load_adapter

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
FRAMEWORKS = list(REGISTRY)
VARIANTS = [f"{name}:{variant}" for name, entry in REGISTRY.items() for variant in entry.variants]


@functools.cache
def import_error(framework: str) -> str | None:
    try:
        load_adapter(framework)
    except ImportError as error:
        return f"{framework} is not installed: {error}"
    return None


def require(framework: str):
    """The adapter class of `framework`, or skip the test with the import error."""
    reason = import_error(framework)
    if reason:
        pytest.skip(reason)
    return load_adapter(framework)


@pytest.fixture(params=FRAMEWORKS, ids=str)
def framework(request) -> str:
    require(request.param)
    return request.param


@pytest.fixture(scope="session")
def cifar10_dir(tmp_path_factory) -> Path:
    """cifar-10-batches-py/ rebuilt from the JPEG copy in ../shared (about 10 s, once)."""
    tool = SHARED / "tools" / "cifar10_from_jpeg.py"
    if not tool.exists():
        pytest.skip(f"{tool} is absent: no real CIFAR-10 copy on this machine")
    target = tmp_path_factory.mktemp("cifar10")
    subprocess.run([sys.executable, str(tool), str(target)], check=True, capture_output=True)
    return target / "cifar-10-batches-py"
