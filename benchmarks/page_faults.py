"""`python -m benchmarks.page_faults [FRAMEWORK] [STEPS]`: one process training LeNet at batch 128
on fixed random batches (the framework's default variant, on the CPU), timed in windows of 50
steps; prints the median step time after the first four windows, the minor page faults per step
(getrusage) and the transparent huge pages the process holds. Run it several times, with and
without `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (what the tuned profile gives PyTorch's workers), to see
what the setting changes. A diagnostic, not a benchmark: the suite's figures come from `benchmarks.run`."""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np

from frameworks import REGISTRY, load_adapter
from frameworks.base import Adapter, TrainConfig, init_params

WINDOW, BATCH, SKIPPED = 50, 128, 4  # the first SKIPPED windows warm up and are left out


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def huge_pages_kb() -> int | None:
    try:
        with open("/proc/self/smaps_rollup") as smaps:
            return next(int(line.split()[1]) for line in smaps if line.startswith("AnonHugePages"))
    except (OSError, StopIteration):
        return None


def lenet_on_cpu(framework: str, batches: int) -> tuple[Adapter, list]:
    """The framework's default variant of LeNet on the CPU from the seed-0 weights, and `batches`
    fixed random batches of BATCH already placed."""
    adapter = load_adapter(framework)("lenet", "cpu", REGISTRY[framework].default_variant,
                                      TrainConfig(learning_rate=0.01, momentum=0.9))
    adapter.set_params(init_params("lenet", seed=0))
    rng = np.random.default_rng(0)
    return adapter, [adapter.place(rng.standard_normal((BATCH, 32, 32, 3), dtype=np.float32),
                                   rng.integers(0, 10, BATCH).astype(np.int64)) for _ in range(batches)]


def main(framework: str = "pytorch", steps: int = 1000) -> None:
    adapter, batches = lenet_on_cpu(framework, 8)
    times, faults = [], []
    for _ in range(steps // WINDOW):
        before, start = minor_faults(), time.perf_counter()
        for step in range(WINDOW):
            adapter.train_step(*batches[step % len(batches)])
        adapter.synchronize()
        times.append((time.perf_counter() - start) / WINDOW * 1000)
        faults.append((minor_faults() - before) / WINDOW)
    print(f"{framework}: {statistics.median(times[SKIPPED:]):.2f} ms/step, "
          f"{statistics.median(faults[SKIPPED:]):.0f} minor page faults/step, "
          f"{huge_pages_kb()} kB in transparent huge pages")


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.page_faults", description=__doc__)
    parser.add_argument("framework", nargs="?", default="pytorch", choices=list(REGISTRY))
    parser.add_argument("steps", nargs="?", type=int, default=1000)
    args = parser.parse_args(argv)
    if args.steps < (SKIPPED + 1) * WINDOW:
        parser.error(f"steps: at least {(SKIPPED + 1) * WINDOW} ({SKIPPED} warm-up windows of {WINDOW} and one more)")
    return args


if __name__ == "__main__":
    args = parse()
    main(args.framework, args.steps)
