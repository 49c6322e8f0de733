"""What a run is made of: the frozen job description a worker receives."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from frameworks import registry
from frameworks.base import DataParallel, TrainConfig


INPUTS = ("prefetch", "resident", "step")  # input paths, see `benchmarks.harness.training.Trainer`


@dataclass(frozen=True)
class Job:
    kind: str  # "benchmark", or "parity" (compute the parity outputs into `output`)
    framework: str
    variant: str
    model: str
    device: str
    batch_size: int
    repeat: int  # 1..--repeats, each in its own process
    seed: int  # initial weights and batch order
    threads: int  # CPU cores the worker is pinned to, and each framework's intra-op threads
    precision: str
    epochs: int  # full passes with evaluation after each; 0 in timing-only runs
    steps: int  # timed steps of a timing-only run; 0 when timing the epochs themselves (overhead: pairs)
    warmup_steps: int  # untimed steps after the first (compile) step
    window: int  # steps per timed window; each window ends with a device sync
    learning_rate: float
    momentum: float
    weight_decay: float
    lr_schedule: str
    data: str  # "cifar10" or "synthetic"
    data_dir: str | None  # the cifar-10-batches-py folder
    train_size: int | None  # leading subset of the training set, for quick runs
    test_size: int | None
    eval_batch_size: int = 1000
    nesterov: bool = False
    label_smoothing: float = 0.0
    warmup_fraction: float = 0.25  # of the one-cycle schedule
    eval_every: int = 0  # evaluate after every this many steps (and the last); 0: after every epoch
    input: str = "prefetch"  # where the host-to-device copy falls: "prefetch", "resident" or "step" (see Trainer)
    target_accuracy: float | None = None  # stop after the first evaluation that reaches it
    output: str | None = None  # parity jobs: where to write their arrays
    reference: str | None = None  # parity jobs: the float64 reference's outputs and common states (.npz)
    augment: str = "none"  # one of data.AUGMENTATIONS, drawn from `seed` and the epoch
    profile: bool = False  # profile a few steps after the timed ones (see benchmarks.harness.profiling)
    # Data parallelism: `devices` per node (`batch_size` is per device), over `nodes` machines that
    # meet at `coordinator` (HOST:PORT; chosen on 127.0.0.1 for a one-machine group); this node's
    # rank, its host names where an engine needs them ("h0,h1,..."), and which of the job's
    # processes on this node a worker is (`member`, set when the processes start).
    devices: int = 1
    nodes: int = 1
    node_rank: int = 0
    coordinator: str | None = None
    node_hosts: str | None = None
    member: int = 0

    @property
    def job_id(self) -> str:
        on = f"-x{self.replicas}" if self.replicas > 1 else ""
        return f"{self.model}-{self.framework}-{self.variant}-bs{self.batch_size}{on}-r{self.repeat}"

    @property
    def label(self) -> str:
        on = f" on {self.replicas} devices" if self.replicas > 1 else ""
        return f"{self.model} {self.framework}:{self.variant} batch {self.batch_size}{on}, repeat {self.repeat}"

    @property
    def replicas(self) -> int:
        return self.devices * self.nodes

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.replicas

    @property
    def processes_per_node(self) -> int:
        """DDP runs a process per device; the other engines one per machine, driving all of its devices."""
        entry = registry().get(self.framework)
        return self.devices if entry is not None and entry.process_per_device else 1

    @property
    def process_threads(self) -> int:
        """The cores of each of this node's processes: `threads` shared among them."""
        return max(1, self.threads // self.processes_per_node)

    @property
    def parallel(self) -> DataParallel:
        per_node = self.processes_per_node
        hosts = tuple(self.node_hosts.split(",")) if self.node_hosts else ()
        return DataParallel(self.devices // per_node, per_node * self.nodes, self.node_rank * per_node + self.member,
                            self.coordinator, tuple(host for host in hosts for _ in range(per_node)))

    @property
    def leads(self) -> bool:
        """The process that takes turns, streams the job's progress and speaks for the group."""
        return self.node_rank == 0 and self.member == 0

    def train_config(self, total_steps: int) -> TrainConfig:
        return TrainConfig(self.learning_rate, self.momentum, self.weight_decay, self.lr_schedule,
                           max(total_steps, 1), self.precision, self.nesterov, self.label_smoothing,
                           self.warmup_fraction)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Job:
        return cls(**json.loads(text))
