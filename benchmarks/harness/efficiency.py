"""Efficiency against the machine: the floating-point work of one training step, computed from the
model's definition, and the machine's float32 peak, measured once per run on the run's device and
cores by a large matrix product.

Convention: 2 FLOPs per multiply-add; a training step costs three forward passes (the backward
pass computes gradients for the inputs and for the weights, each as much work as the forward).
Only convolutions and dense layers are counted (BatchNorm, ReLU, pooling and the optimizer add
well under 1% of the work in both models)."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np

from frameworks import load_adapter, reference, registry
from frameworks.base import init_params

FLOPS_PER_MULTIPLY_ADD = 2
FORWARD_PASSES_PER_STEP = 3
CPU_SIZE, GPU_SIZE = 2048, 8192  # matrix sides of the peak's products
ROUNDS = 3  # timed rounds of the peak; the best counts


@functools.cache
def multiply_adds(model: str) -> int:
    """Forward multiply-adds for one 32x32 image."""
    nodes, _, out = reference.forward_graph(model, init_params(model, seed=0), np.zeros((1, 32, 32, 3)))
    kernels = {id(node): node.value.shape for node in nodes.values() if node.value.ndim >= 2}
    return sum(node.value.size * int(np.prod(kernels[id(parent)][1:]))
               for node in reference.graph(out) for parent in node.parents if id(parent) in kernels)


@functools.cache
def step_flops(model: str, batch_size: int) -> int:
    """FLOPs of one training step at `batch_size` (see the module's convention)."""
    return FORWARD_PASSES_PER_STEP * FLOPS_PER_MULTIPLY_ADD * multiply_adds(model) * batch_size


@dataclass(frozen=True)
class Efficiency:
    gflop_per_step: float
    gflops: float | None
    of_peak: float | None


def efficiency(model: str, global_batch: int, step_ms: float | None, device: str, devices: int,
               peak_gflops: float | None) -> Efficiency:
    """A summary row's `gflop_per_step`, `gflops` (achieved, over the median step time) and `of_peak`
    (the share of the peak, measured on one device: GPUs add theirs, CPU host devices share the
    cores); None where there is no step time or no peak."""
    flop = step_flops(model, global_batch) / 1e9
    gflops = flop / (step_ms / 1000) if step_ms else None
    peak = peak_gflops * (devices if device == "cuda" else 1) if peak_gflops else None
    return Efficiency(gflop_per_step=flop, gflops=gflops, of_peak=gflops / peak if gflops and peak else None)


def matmul_peak(device: str, precision: str, seconds: float = 1.0) -> dict:
    """GFLOP/s of repeated square matrix products on this process's cores (NumPy's BLAS) or on the
    GPU (the first registered framework that is installed and offers a device matmul: PyTorch,
    else JAX), in float32, or bfloat16 on a GPU with --precision bf16; the best of three timed
    rounds (`best_rate`)."""
    if device == "cpu":
        size, name = CPU_SIZE, f"NumPy {np.__version__} float32 matmul"
        a, b = (np.random.default_rng(seed).standard_normal((size, size), np.float32) for seed in (0, 1))
        multiply, wait = (lambda: a @ b), (lambda result: None)
    else:
        size = GPU_SIZE
        multiply, wait, name = _device_matmul(precision, size)
    best = best_rate(multiply, wait, 2 * size**3, seconds)
    return {"peak_gflops": best / 1e9, "peak_how": f"{name}, {size}x{size}, best of {ROUNDS} rounds"}


def best_rate(multiply, wait, flop: int, seconds: float, clock=time.perf_counter) -> float:
    """FLOP/s of `multiply` (`flop` each), the best of ROUNDS rounds sharing `seconds`. A device
    queues products without waiting and blocks only when its queue is full (a CUDA stream after
    about a thousand launches), so a round cannot stop on the clock: it queues as many products
    as the previous ones' time says fit in its share, then waits for them. The first estimate is
    one product timed alone after the warm-up."""
    wait(multiply())  # warm-up: libraries load, kernels are chosen
    start = clock()
    wait(multiply())
    each = clock() - start
    best = 0.0
    for _ in range(ROUNDS):
        count = max(1, int(seconds / ROUNDS / each))
        start = clock()
        for _ in range(count):
            result = multiply()
        wait(result)
        elapsed = clock() - start
        each = elapsed / count
        best = max(best, flop * count / elapsed)
    return best


def _device_matmul(precision: str, size: int):
    """The device matmul of the first registered framework that offers one and imports."""
    missing = []
    for entry in registry().values():
        if entry.device_matmul:
            try:
                return load_adapter(entry.name).device_matmul(precision, size)
            except ImportError as error:
                missing.append(f"{entry.name}: {error}")
    raise ImportError(f"no installed framework offers a device matmul ({'; '.join(missing) or 'none registered'})")
