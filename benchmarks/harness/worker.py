"""One job in one fresh process: pin the threads, wait for the turn, run the job's kind and
stream result messages (JSON lines) to the parent through an inherited pipe.

Run by `benchmarks.harness.spawn` as `python -m benchmarks.harness.worker RESULT_FD PARENT_PID`,
the job as the first line of stdin. The worker works only while it holds the turn: a later line on
stdin gives it the turn, and it hands the turn back after each window of steps (see
`spawn.run_workers`). What each kind of job computes lives in `training` and `checks.outputs`."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import traceback

from benchmarks.checks.outputs import run_parallel_parity, run_parity
from benchmarks.harness.channel import Channel
from benchmarks.harness.jobs import Job
from benchmarks.harness.training import run_benchmark, run_hot_path, run_overhead, run_peak, run_probe
from frameworks.base import DeviceUnavailable, PipelineUnavailable

RUNNERS = {"benchmark": run_benchmark, "parity": run_parity, "parallel parity": run_parallel_parity,
           "probe": run_probe, "overhead": run_overhead, "hot path": run_hot_path, "peak": run_peak}


def die_with_parent(parent_pid: int) -> None:
    """Workers run in their own session (so Ctrl-C reaches only the parent): ask Linux to kill
    this one if the parent dies, so that a killed run never leaves a worker holding a GPU."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def pin(job: Job) -> None:
    """Pin the process to its cores: the job's `threads` (from its first core), shared out among
    this node's processes of a data-parallel job, each taking its own slice."""
    place = job.placement
    cores = sorted(os.sched_getaffinity(0))[place.first_core:place.first_core + place.threads]
    first = job.placement.member * job.process_threads % len(cores)
    os.sched_setaffinity(0, cores[first:first + job.process_threads])


def main() -> int:
    die_with_parent(int(sys.argv[2]))
    job = Job.from_json(sys.stdin.readline())
    channel = Channel(int(sys.argv[1]), job.leads)
    pin(job)
    channel.wait_for_turn()
    try:
        result = RUNNERS[job.kind](job, channel)
    except (DeviceUnavailable, PipelineUnavailable) as error:
        result = {"status": "skipped", "error": str(error)}
    except ImportError as error:
        result = {"status": "unavailable", "error": f"cannot import {job.what.framework}: {error}"}
    except Exception as error:
        traceback.print_exc()
        result = {"status": "error", "error": f"{type(error).__name__}: {error}"}
    channel.send("result", result=result)
    return 0 if result["status"] in ("ok", "skipped", "unavailable", "diverged") else 1


if __name__ == "__main__":
    sys.exit(main())
