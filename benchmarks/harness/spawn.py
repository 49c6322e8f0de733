"""Runs one job in fresh worker processes and relays their messages: the environment a worker
needs before it imports its framework (the generic part here, the framework's own from its
registry entry, the tuned profile's from the tuning table), the job timeout, and a readable reason when a worker dies. A
data-parallel job is a group of processes (one per device for DDP); a member that fails ends the
whole group."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from benchmarks.harness.jobs import Job
from frameworks import FrameworkEntry, UnknownFramework, registry, resolve, tuning
from frameworks.tuning import DEFAULT_PROFILE

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the folder holding benchmarks/ and frameworks/

def framework_env(frameworks: Iterable[FrameworkEntry], device: str, threads: int, profile: str = DEFAULT_PROFILE,
                  precision: str = "fp32", variant: str = "") -> dict[str, str]:
    """The environment of a process that imports `frameworks` (one, or any of several it may
    pick) to run `variant` on `device` with `threads`: the user's shell, what isolation needs (the
    registry's), and under the `tuned` profile the tuning table's environment entries."""
    frameworks = list(frameworks)
    env = dict(os.environ)
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(threads))
    for entry in frameworks:
        env.update(entry.env)
    if device == "cpu":  # hide any GPU, so nothing is placed there behind our back
        env.update(CUDA_VISIBLE_DEVICES="")
        for entry in frameworks:
            env.update(entry.cpu_env)
    if profile == "tuned":
        settings, refused = [], {}
        for entry in frameworks:
            wanted = tuning.settings_for(entry.name, device, precision, variant)
            refused.update(refused_flags(entry, wanted))
            settings += [setting for setting in wanted if setting.text not in refused]
        env.update(tuning.environment(settings, env))
        if refused:
            env[tuning.REFUSED] = json.dumps(refused)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    return env


UNKNOWN_FLAG = re.compile(r"Unknown flags? in (\w+): (.+)")  # XLA's last words, e.g. "... in XLA_FLAGS: --x=1"


def refused_flags(entry: FrameworkEntry, settings: Iterable[tuning.Setting]) -> dict[str, str]:
    """The tuning table's flags (`settings` that add to a flag list) that the installed framework
    does not know, each with the reason: found by `entry.flag_check` in a child process on the CPU,
    once per process and set of flags."""
    flags = tuple(setting.text for setting in settings
                  if setting.kind == "env" and setting.name in tuning.FLAG_LISTS and entry.flag_check)
    return dict(_unknown_flags(entry, flags)) if flags else {}


@functools.cache
def _unknown_flags(entry: FrameworkEntry, texts: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Each of `texts` ("XLA_FLAGS=--flag=value") that the framework's check ends at, naming it
    (the user's own flags are left out of the check: they are the user's); the check runs again
    without it until it passes or names none of `texts`."""
    base = {name: value for name, value in {**os.environ, **entry.env, **entry.cpu_env}.items()
            if name not in tuning.FLAG_LISTS}
    left, refused = list(texts), []
    while left:
        env = {**base, "CUDA_VISIBLE_DEVICES": ""}
        for text in left:
            name, value = text.split("=", 1)
            env[name] = " ".join(filter(None, [env.get(name), value]))
        try:
            check = subprocess.run([sys.executable, "-c", entry.flag_check], env=env, capture_output=True, text=True,
                                   timeout=300)
        except subprocess.TimeoutExpired:
            break
        named = {f"{variable}={flag}"
                 for variable, flags in UNKNOWN_FLAG.findall(check.stderr) for flag in flags.split()}
        unknown = [text for text in left if text in named]
        if check.returncode == 0 or not unknown:
            break
        refused += [(text, f"the installed {entry.name} does not know this flag and would end the process at it")
                    for text in unknown]
        left = [text for text in left if text not in unknown]
    return tuple(refused)


def job_frameworks(job: Job) -> list[FrameworkEntry]:
    """The frameworks a job's worker may import: its own (none known: the worker reports that);
    for the machine's peak, each that offers a device matmul (`efficiency.matmul_peak` takes the
    first installed)."""
    if job.kind == "peak":
        return [entry for entry in registry().values() if entry.device_matmul]
    try:
        return [resolve(job.what.framework)]
    except UnknownFramework:
        return []


def worker_env(job: Job) -> dict[str, str]:
    env = framework_env(job_frameworks(job), job.placement.device, job.placement.threads, job.what.tuning,
                        job.training.precision, job.what.variant)
    if job.placement.device != "cpu" and job.processes_per_node > 1:  # one GPU per process: the member's own
        visible = env.get("CUDA_VISIBLE_DEVICES")
        env["CUDA_VISIBLE_DEVICES"] = visible.split(",")[job.placement.member] if visible else str(job.placement.member)
    return env


def _death_reason(returncode: int, log_path: Path) -> str:
    if returncode < 0:
        name = signal.Signals(-returncode).name
        reason = f"worker killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    else:
        reason = f"worker exited with status {returncode} without a result"
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    return f"{reason}; last log line: {lines[-1].strip()}" if lines else reason


class _Worker:
    """One worker process: its job goes down stdin as the first line; each later line there
    gives it the turn. It streams its messages up a pipe and says "yield" to hand the turn back."""

    def __init__(self, job: Job, log_path: Path):
        self.log_path = log_path
        read_fd, write_fd = os.pipe()
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.harness.worker", str(write_fd), str(os.getpid())],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, pass_fds=(write_fd,),
                env=worker_env(job), cwd=PROJECT_ROOT,
                start_new_session=True,  # Ctrl-C reaches the parent, which stops the worker itself
            )
        os.close(write_fd)
        self.messages = read_fd
        self._partial = b""
        self.process.stdin.write(job.to_json().encode() + b"\n")
        self.process.stdin.flush()

    def read_messages(self) -> list[dict] | None:
        """The messages that have arrived (call when its pipe is readable); None at its end."""
        data = os.read(self.messages, 1 << 16)
        if not data:
            return None
        *lines, self._partial = (self._partial + data).split(b"\n")
        return [json.loads(line) for line in lines]

    def give_turn(self) -> None:
        try:
            self.process.stdin.write(b"go\n")
            self.process.stdin.flush()
        except BrokenPipeError:  # it died waiting; its closed message stream says so next
            pass

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.close()

    def close(self) -> None:
        self.process.wait()
        os.close(self.messages)
        try:
            self.process.stdin.close()
        except BrokenPipeError:
            pass


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _Group:
    """The processes of one job on this node: one, or one per device (DDP). The member that
    `leads` takes turns like a lone worker; the others get the group's first turn and then run
    freely, held in step by the engine's collectives. A one-machine group meets on a free local
    port; one spread over machines at the coordinator, offset by the repeat so that repeats,
    which run at once, do not share ports."""

    PORTS_PER_GROUP = 64  # the coordinator's port and those after it that engines open (TF: one per worker)

    def __init__(self, job: Job, log_path: Path):
        count = job.processes_per_node
        if job.placement.nodes > 1:
            host, port = job.placement.coordinator.rsplit(":", 1)
            coordinator = f"{host}:{int(port) + (job.repeat - 1) * self.PORTS_PER_GROUP}"
        else:
            coordinator = f"127.0.0.1:{_free_port()}" if count > 1 else None
        self.jobs = [job.as_member(member, coordinator) for member in range(count)]
        self.paths = [log_path if member == 0 else log_path.with_suffix(f".member{member}.log")
                      for member in range(count)]
        self.workers = [_Worker(member_job, path) for member_job, path in zip(self.jobs, self.paths)]
        self.results: dict[int, dict] = {}
        self.started = False
        self.turn_s = 0.0

    @property
    def leader(self) -> _Worker | None:
        return self.workers[0] if self.jobs[0].leads else None

    def name(self, member: int) -> str:
        job = self.jobs[member]
        return (f"process {job.parallel.rank} of {job.parallel.processes} (node {job.placement.node_rank}, "
                f"log {self.paths[member].name})")

    def give_turn(self) -> None:
        if not self.started:
            self.started = True
            for worker in self.workers:
                worker.give_turn()
        elif self.leader is not None:
            self.leader.give_turn()

    def stop(self) -> None:
        for member, worker in enumerate(self.workers):
            if member not in self.results or worker.process.returncode is None:
                worker.stop()

    def outcome(self) -> dict:
        """The job's result once every member has ended: the first member's (the leader's),
        unless a member failed; then the first failure, an error naming its member."""
        failed = [(member, result) for member, result in sorted(self.results.items())
                  if result["status"] not in ("ok", "stopped")]
        if not failed:
            return self.results[0]
        member, result = failed[0]
        if result["status"] == "error" and (len(self.workers) > 1 or self.jobs[0].placement.nodes > 1):
            return {**result, "error": f"{self.name(member)}: {result.get('error')}"}
        return result


def _relay(group: _Group, member: int, selector: selectors.BaseSelector, index: int,
           on_message: Callable[[int, dict], None]) -> str | None:
    """Read what member `member` of `group` sent (its pipe is readable): relay progress messages,
    keep its result, and unregister it once it has exited. "yield" when it handed the turn back,
    "ended" when every member has ended (or one failed and the others were stopped), else None."""
    worker = group.workers[member]
    messages = worker.read_messages()
    if messages is None:  # the worker has exited
        selector.unregister(worker.messages)
        worker.close()
        group.results.setdefault(member, {"status": "error", "error": _death_reason(
            worker.process.returncode, worker.log_path)})
        if group.results[member]["status"] != "ok":  # the others would wait for it forever
            group.stop()
            for other in range(len(group.workers)):
                if other not in group.results:
                    group.results[other] = {"status": "stopped"}
                    selector.unregister(group.workers[other].messages)
        return "ended" if len(group.results) == len(group.workers) else None
    for message in messages:  # a worker sends nothing after "yield" until its next turn
        if message["type"] == "result":
            group.results[member] = message["result"]
        elif message["type"] == "yield":
            return "yield"
        else:
            on_message(index, message)
    return None


def _take_turn(group: _Group, index: int, timeout: float, on_message: Callable[[int, dict], None]) -> dict | None:
    """Give `group` the turn and relay its leader's messages until it yields (None) or the job
    ends (its result): every member has ended, or one failed and the others were stopped."""
    group.give_turn()
    turn_start = time.monotonic()
    try:
        with selectors.DefaultSelector() as selector:
            for member, worker in enumerate(group.workers):
                if member not in group.results:
                    selector.register(worker.messages, selectors.EVENT_READ, member)
            while True:
                remaining = timeout - group.turn_s - (time.monotonic() - turn_start)
                if remaining <= 0:
                    group.stop()
                    return {"status": "timeout", "error": f"stopped after --job-timeout {timeout:g} s"}
                for selected, _ in selector.select(timeout=min(remaining, 1.0)):
                    state = _relay(group, selected.data, selector, index, on_message)
                    if state == "yield":
                        return None
                    if state == "ended":
                        return group.outcome()
    finally:
        group.turn_s += time.monotonic() - turn_start


def run_workers(jobs: list[Job], log_paths: list[Path], timeout: float,
                on_message: Callable[[int, dict], None], on_result: Callable[[int, dict], None]) -> None:
    """Run `jobs` in one worker process each, all started at once but taking turns: one runs
    while the others wait, and each hands the turn on after every window it times. Jobs run this
    way (the repeats of one, or every job of a comparison) see the same slow and fast spells of a
    shared machine, so what differs between them is the processes, not when each ran.

    `on_message(i, message)` gets job i's progress/epoch/windows messages; `on_result(i, result)`
    its result fields (status, error, measurements) as soon as it ends, so nothing measured is
    lost if a later one fails. A worker that dies, or holds the turn for more than `timeout`
    seconds in all, yields an error or timeout result. Ctrl-C stops every worker and propagates."""
    workers = [_Group(job, path) for job, path in zip(jobs, log_paths)]
    waiting = list(range(len(workers)))  # in turn order; the first holds the turn
    try:
        while waiting:
            index = waiting[0]
            result = _take_turn(workers[index], index, timeout, on_message)
            waiting.pop(0)
            if result is None:
                waiting.append(index)
            else:
                on_result(index, result)
    except BaseException:
        for index in waiting:
            workers[index].stop()
        raise


def run_side_by_side(jobs: list[Job], log_paths: list[Path], timeout: float, at_once: int,
                     on_result: Callable[[int, dict], None]) -> None:
    """Run `jobs` in worker processes, `at_once` jobs at a time, each on its own `threads` cores
    (slot k of `at_once` from core k * threads) and free to run from its start to its end: for jobs
    that time nothing (the parity checks), whose overlap cannot change what they compute.
    `on_result(i, result)` gets job i's result as soon as it ends; a job running past `timeout`
    seconds yields a timeout result. Ctrl-C stops every worker and propagates. A job's slot is
    given to the next job before `on_result` runs, so that a slow `on_result` (a parity table
    compared in this process) leaves no core idle."""
    waiting, running = list(range(len(jobs))), {}  # job index -> (its group, when it started, its slot)
    ended: list[tuple[int, dict]] = []  # results whose slots are refilled before on_result sees them
    try:
        with selectors.DefaultSelector() as selector:
            while waiting or running or ended:
                while waiting and len(running) < at_once:
                    index = waiting.pop(0)
                    slot = min(set(range(at_once)) - {slot for *_, slot in running.values()})
                    job = jobs[index]
                    job = dataclasses.replace(job, placement=dataclasses.replace(
                        job.placement, first_core=slot * job.placement.threads))
                    group = _Group(job, log_paths[index])
                    for member, worker in enumerate(group.workers):
                        selector.register(worker.messages, selectors.EVENT_READ, (index, member))
                    group.give_turn()
                    running[index] = (group, time.monotonic(), slot)
                while ended:
                    on_result(*ended.pop(0))
                for index, (group, started, _) in list(running.items()):
                    if time.monotonic() - started > timeout:
                        for member in range(len(group.workers)):
                            if member not in group.results:
                                selector.unregister(group.workers[member].messages)
                        group.stop()
                        del running[index]
                        ended.append((index, {"status": "timeout",
                                              "error": f"stopped after --job-timeout {timeout:g} s"}))
                if ended:
                    continue  # refill the freed slots first
                for selected, _ in selector.select(timeout=1.0):
                    index, member = selected.data
                    group = running[index][0]
                    state = _relay(group, member, selector, index, lambda _, message: None)
                    if state == "yield":  # a job that takes turns gets its next one at once
                        group.give_turn()
                    elif state == "ended":
                        del running[index]
                        ended.append((index, group.outcome()))
    except BaseException:
        for group, *_ in running.values():
            group.stop()
        raise


def run_worker(job: Job, log_path: Path, timeout: float, on_message: Callable[[dict], None]) -> dict:
    """Run one job in its own worker process and return its result fields (see `run_workers`)."""
    results = {}
    run_workers([job], [log_path], timeout, lambda _, message: on_message(message), results.__setitem__)
    return results[0]
