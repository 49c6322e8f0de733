"""`python -m benchmarks.canary [FRAMEWORK] [STEPS]`: does a training step slow down exactly when
the machine does? One process, pinned to one core, alternates one LeNet step at batch 128 (the
framework's default variant, on the CPU, on fixed random batches) with three fixed pieces of work
that no framework runs: a pure-Python loop, a small NumPy matrix product (cache-resident
arithmetic) and a 32 MiB memory copy (memory bandwidth). Each is timed on its own, and the
times are averaged over windows of 20 rounds, as the suite's timed windows are.

It prints, for the step and each canary, the median time, the window-to-window noise (standard
deviation over mean of the window averages) and the correlation of its windows with the step's;
then the step's noise left after dividing each window by the canaries' (each scaled to its mean).
A correlation near 1 and little noise left say that the step's windows scatter because the
machine's speed moves (a shared host's other tenants), not because of anything in the process.
It runs in the framework's worker environment (`GLIBC_TUNABLES`, the framework's own settings such as
`TF_ENABLE_ONEDNN_OPTS`, one thread).
A diagnostic, not a benchmark: the suite's figures come from `benchmarks.run`."""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from benchmarks.harness.spawn import framework_env
from benchmarks.page_faults import BATCH, lenet_on_cpu
from frameworks import REGISTRY, resolve

WINDOW, WARMUP = 20, 20  # rounds per window; untimed rounds first
CANARIES = ("python", "matmul", "memcopy")
CHILD = "BENCHMARKS_CANARY_CHILD"  # set in the process started again in the workers' environment


def canary_work() -> dict:
    """The fixed work, a few milliseconds each on a current CPU."""
    rng = np.random.default_rng(0)
    square = rng.standard_normal((192, 192), dtype=np.float32)
    source = np.ones(2**23, np.float32)  # 32 MiB: beyond the caches
    target = np.empty_like(source)

    def python():
        total = 0
        for i in range(60_000):
            total += i * i % 7
        return total

    def matmul():
        for _ in range(20):
            square @ square

    return {"python": python, "matmul": matmul, "memcopy": lambda: np.copyto(target, source)}


def window_stats(times: dict[str, np.ndarray], window: int = WINDOW) -> tuple[dict, float]:
    """Per series (`times["step"]` and each canary's, one time per round): median, window-to-window
    noise and correlation of its window averages with the step's; and the step's window noise
    left after dividing by the mean of the canaries' windows, each scaled to its mean."""
    windows = {name: series[:len(series) // window * window].reshape(-1, window).mean(axis=1)
               for name, series in times.items()}
    step = windows["step"]
    stats = {name: {"median_ms": float(np.median(times[name])), "window_cv": float(w.std() / w.mean()),
                    "corr_with_step": float(np.corrcoef(step, w)[0, 1])} for name, w in windows.items()}
    machine = np.mean([windows[name] / windows[name].mean() for name in CANARIES], axis=0)
    adjusted = step / machine
    return stats, float(adjusted.std() / adjusted.mean())


def measure(framework: str, rounds: int) -> dict[str, np.ndarray]:
    adapter, (batch,) = lenet_on_cpu(framework, 1)

    def step():
        adapter.train_step(*batch)
        adapter.synchronize()

    work = {"step": step, **canary_work()}
    for _ in range(WARMUP):
        for run in work.values():
            run()
    times = {name: np.empty(rounds) for name in work}
    for index in range(rounds):
        for name, run in work.items():
            start = time.perf_counter()
            run()
            times[name][index] = (time.perf_counter() - start) * 1000
    return times


def main(framework: str = "pytorch", steps: int = 1000) -> None:
    if CHILD not in os.environ:  # start again in the workers' environment
        # malloc settings included, which the C library reads only at start-up
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks.canary", framework, str(steps)],
                  {**framework_env([resolve(framework)], "cpu", 1), CHILD: "1"})
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, before the framework starts threads
    stats, left = window_stats(measure(framework, steps))
    print(f"{framework} (LeNet, batch {BATCH}, one core), {steps // WINDOW} windows of {WINDOW} rounds:")
    for name, row in stats.items():
        print(f"  {name:8s} median {row['median_ms']:7.2f} ms  window noise {row['window_cv']:.3f}  "
              f"correlation with the step {row['corr_with_step']:5.2f}")
    print(f"  step window noise after dividing by the canaries: {left:.3f}")


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.canary", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("framework", nargs="?", default="pytorch", choices=list(REGISTRY))
    parser.add_argument("steps", nargs="?", type=int, default=1000)
    args = parser.parse_args(argv)
    if args.steps < 3 * WINDOW:
        parser.error(f"steps: at least {3 * WINDOW} (three windows of {WINDOW}, for a correlation)")
    return args


if __name__ == "__main__":
    args = parse()
    main(args.framework, args.steps)
