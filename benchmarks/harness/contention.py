"""How busy the machine is besides the benchmark, measured as the kernel accounts it.

`others_cpu` is the share of the worker's cores' time that other processes used while a window
ran: the busy time the kernel counted on those cores (user, nice, system, irq, softirq, from
`/proc/stat` through psutil) minus the worker's own CPU time (its threads and its child
processes, such as a native input pipeline's workers: they are the job's), over the window's wall
time times the number of cores. `steal` is the share a hypervisor gave to other virtual machines. Where
psutil cannot tell (no per-core times, e.g. macOS, or no CPU affinity), the values are None:
"not measured", never a guess."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil

# Windows on which other processes used more than this share of the worker's cores are flagged.
# On an idle machine the runner's own progress display and the system's daemons take well under
# 1% (the machine check before a run prints the share); a single busy process on one of two cores takes 50%.
BUSY_THRESHOLD = 0.10
# A job is marked busy when at least this share of its timed windows was flagged: its median
# step time then rests on a flagged window.
BUSY_SHARE = 0.5
# A sum of times (an epoch, a time to accuracy) has no median to shield it: a few contended windows
# inflate it in full. One is flagged when its busy windows make up more than this share of its
# time. 5%: a sum whose busy part ran even twice as slow as it would have quietly is then off by
# at most 5%, below the gaps that rank frameworks by time to accuracy (docs/method.md, a busy machine).
SUM_BUSY_SHARE = 0.05


def children_cpu_s() -> float:
    """CPU seconds of this process's child processes: those still running (psutil) and those that
    ended and were waited for (the kernel's count, `os.times`)."""
    times = os.times()
    seconds = times.children_user + times.children_system
    for child in psutil.Process().children(recursive=True):
        try:
            spent = child.cpu_times()
        except psutil.Error:  # it ended meanwhile
            continue
        seconds += spent.user + spent.system
    return seconds


@dataclass(frozen=True)
class Contention:
    """A summary row's contention: the median share of the worker's cores that other processes took
    over its windows, the windows above BUSY_THRESHOLD, and whether its median rests on them
    (BUSY_SHARE of its windows); None where not measured."""

    contention: float | None
    busy_windows: int | None
    busy: bool | None


@dataclass(frozen=True)
class Sample:
    wall: float
    busy: float  # seconds the kernel counted busy on the watched cores, every process together
    steal: float
    own: float  # CPU seconds of this process (every thread), and of its child processes with `children`


class CoreMonitor:
    """Samples the cores this process may run on; `between` turns two samples into shares. With
    `children`, this process's child processes count as its own (a worker's: its input pipeline's
    workers); without, they are others (the parent's look at the machine before a run)."""

    def __init__(self, children: bool = False):
        self.process, self.children = psutil.Process(), children
        try:
            self.cores = sorted(self.process.cpu_affinity())
            psutil.cpu_times(percpu=True)
        except (AttributeError, NotImplementedError, psutil.Error):  # macOS has no affinity
            self.cores = None

    def sample(self) -> Sample | None:
        if self.cores is None:
            return None
        per_core = psutil.cpu_times(percpu=True)
        busy = steal = 0.0
        for core in self.cores:
            times = per_core[core]
            busy += times.user + times.nice + times.system + getattr(times, "irq", 0.0) + getattr(times, "softirq", 0.0)
            steal += getattr(times, "steal", 0.0)
        return Sample(time.monotonic(), busy, steal, self._own_cpu())

    def _own_cpu(self) -> float:
        """CPU seconds of this process and, with `children`, of its child processes: those running
        (psutil) and those that ended and were waited for (the kernel's count, in its own times)."""
        own = self.process.cpu_times()
        return own.user + own.system + (children_cpu_s() if self.children else 0.0)

    def between(self, start: Sample | None, end: Sample | None) -> dict:
        """The shares of the cores' time taken by other processes and by the hypervisor between
        two samples, and the one-minute load average at the end."""
        if start is None or end is None or end.wall <= start.wall:
            return {"others_cpu": None, "steal": None, "load": None}
        capacity = (end.wall - start.wall) * len(self.cores)
        others = (end.busy - start.busy) - (end.own - start.own)
        return {"others_cpu": min(max(others / capacity, 0.0), 1.0), "steal": (end.steal - start.steal) / capacity,
                "load": psutil.getloadavg()[0]}


def machine_check(seconds: float = 1.0, top: int = 5) -> dict:
    """A look at the whole machine before a run: the share of its usable cores that other
    processes used over `seconds`, and the busiest processes by CPU."""
    monitor = CoreMonitor()
    processes = list(psutil.process_iter(["pid", "name"]))
    for process in processes:
        try:
            process.cpu_percent(None)  # starts each process's own clock
        except psutil.Error:
            pass
    start = monitor.sample()
    time.sleep(seconds)
    shares = monitor.between(start, monitor.sample())
    busiest = []
    own = psutil.Process().pid
    for process in processes:
        try:
            percent = process.cpu_percent(None)
        except psutil.Error:
            continue
        if process.pid != own and percent > 0:
            busiest.append({"pid": process.pid, "name": process.info["name"], "cpu_percent": percent})
    busiest.sort(key=lambda row: -row["cpu_percent"])
    return {**shares, "cores": monitor.cores, "top": busiest[:top]}
