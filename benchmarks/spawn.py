"""Runs one job in a fresh worker process and relays its messages: the environment every
framework needs before import, the job timeout, and a readable reason when a worker dies."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.jobs import Job

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def worker_env(job: Job) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONUNBUFFERED="1",
        TF_CPP_MIN_LOG_LEVEL="2",  # TensorFlow's info and warning logs; errors still show
        XLA_PYTHON_CLIENT_PREALLOCATE="false",  # JAX would reserve 75% of GPU memory
        TF_FORCE_GPU_ALLOW_GROWTH="true",  # TensorFlow would reserve all of it
        OMP_NUM_THREADS=str(job.threads),
    )
    if job.device == "cpu":  # hide any GPU, so nothing is placed there behind our back
        env.update(CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    return env


def _death_reason(returncode: int, log_path: Path) -> str:
    if returncode < 0:
        name = signal.Signals(-returncode).name
        reason = f"worker killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    else:
        reason = f"worker exited with status {returncode} without a result"
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    return f"{reason}; last log line: {lines[-1].strip()}" if lines else reason


def _stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def run_worker(job: Job, log_path: Path, timeout: float, on_message: Callable[[dict], None]) -> dict:
    """Run `job`; pass each progress/epoch/windows message to `on_message` and return the
    worker's result fields (status, error, measurements). A worker that dies or runs past
    `timeout` seconds yields an error or timeout result. Ctrl-C stops the worker and propagates."""
    read_fd, write_fd = os.pipe()
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.worker", str(write_fd), str(os.getpid())],
            stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, pass_fds=(write_fd,),
            env=worker_env(job), cwd=PROJECT_ROOT,
            start_new_session=True,  # Ctrl-C reaches the parent, which stops the worker itself
        )
    os.close(write_fd)
    process.stdin.write(job.to_json().encode())
    process.stdin.close()
    deadline = time.monotonic() + timeout
    result = None
    with os.fdopen(read_fd, "r") as messages, selectors.DefaultSelector() as selector:
        selector.register(messages, selectors.EVENT_READ)
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    _stop(process)
                    return {"status": "timeout", "error": f"stopped after --job-timeout {timeout:g} s"}
                if not selector.select(timeout=min(remaining, 1.0)):
                    continue
                line = messages.readline()
                if not line:
                    break
                message = json.loads(line)
                if message["type"] == "result":
                    result = message["result"]
                else:
                    on_message(message)
        except BaseException:
            _stop(process)
            raise
    process.wait()
    if result is None:
        return {"status": "error", "error": _death_reason(process.returncode, log_path)}
    return result
