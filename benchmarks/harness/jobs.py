"""What a run is made of: the frozen job description a worker receives, built from named parts
(what runs, how it trains, how it is timed, what feeds it, where it runs), never by position.
It travels to the worker as JSON and is kept in the run's plan.json."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from frameworks import registry
from frameworks.base import DataParallel, TrainConfig
from frameworks.tuning import DEFAULT_PROFILE

# What a worker does with a job: train and time it (benchmark), compute the parity outputs of one
# variant on one device (parity) or on several (parallel parity), check that the framework builds
# on the device (probe), time the harness against a bare loop (overhead), time the suite's own code on
# the step's hot path against the framework's built-in equivalent (hot path), or measure the machine's
# matrix-product peak (peak).
KINDS = ("benchmark", "parity", "parallel parity", "probe", "overhead", "hot path", "peak")
# Input paths: the suite's NumPy pipeline, its batches placed as `benchmarks.harness.training.Trainer`
# says (prefetch, resident, step), or each framework's own pipeline, timed with the steps (native).
SUITE_INPUTS = ("prefetch", "resident", "step")
INPUTS = (*SUITE_INPUTS, "native")


@dataclass(frozen=True)
class Workload:
    """What runs: one framework's variant of one model, at a batch size per device, under a tuning
    profile (`frameworks.tuning.PROFILES`)."""

    framework: str
    variant: str
    model: str
    batch_size: int
    tuning: str = DEFAULT_PROFILE


@dataclass(frozen=True)
class Timing:
    """How the job is timed: the first step alone (it compiles), `warmup_steps` untimed, then
    windows of `window` steps, each ending with a device sync."""

    epochs: int = 0  # full passes with evaluation after each; 0 in timing-only runs
    steps: int = 0  # timed steps of a timing-only run; 0 when timing the epochs themselves
    warmup_steps: int = 5  # untimed steps after the first (compile) step
    window: int = 20  # steps per timed window
    eval_every: int = 0  # evaluate after every this many steps (and the last); 0: after every epoch
    target_accuracy: float | None = None  # stop after the first evaluation that reaches it
    pairs: int = 0  # overhead and hot path jobs: windows of the two sides, alternating
    profile: bool = False  # profile a few steps after the timed ones (see benchmarks.harness.profiling)


@dataclass(frozen=True)
class Data:
    """What feeds the job: the data set, its augmentation, and its input path (`input`, one of
    INPUTS): the suite's pipeline, with where each batch's host-to-device copy falls, or the
    framework's own pipeline with `input_workers` workers (None: the framework's default)."""

    name: str = "synthetic"  # "cifar10" or "synthetic"
    folder: str | None = None  # the cifar-10-batches-py folder
    train_size: int | None = None  # leading subset of the training set, for quick runs
    test_size: int | None = None
    augment: str = "none"  # one of data.AUGMENTATIONS, drawn from the job's seed and the epoch
    input: str = "prefetch"
    eval_batch_size: int = 1000
    input_workers: int | None = None


@dataclass(frozen=True)
class Placement:
    """Where the job runs: the device, the CPU cores its workers are pinned to (each framework's
    intra-op threads), and the data-parallel layout: `devices` per node (the batch size is per
    device), over `nodes` machines that meet at `coordinator` (HOST:PORT; chosen on 127.0.0.1 for
    a one-machine group), this node's rank, every node's host where an engine needs them, and
    which of the job's processes on this node a worker is (`member`, set when they start). Jobs
    that run side by side each take their own `threads` cores, from `first_core` on."""

    device: str = "cpu"
    threads: int = 1
    first_core: int = 0
    devices: int = 1
    nodes: int = 1
    node_rank: int = 0
    coordinator: str | None = None
    node_hosts: tuple[str, ...] = ()
    member: int = 0


@dataclass(frozen=True)
class ParityFiles:
    """Parity jobs: where the worker writes its outputs, and the float64 reference's (.npz)."""

    output: str
    reference: str


@dataclass(frozen=True)
class Job:
    kind: str  # one of KINDS
    what: Workload
    training: TrainConfig  # its `total_steps` is set by the worker, which knows the data set's size
    timing: Timing = Timing()
    data: Data = Data()
    placement: Placement = Placement()
    repeat: int = 1  # 1..--repeats, each in its own process, of one seed
    seed: int = 0  # initial weights, batch order and augmentation (one of --seeds)
    files: ParityFiles | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown job kind {self.kind!r} (choose from: {', '.join(KINDS)})")

    @property
    def job_id(self) -> str:
        what = self.what
        on = f"-x{self.replicas}" if self.replicas > 1 else ""
        fed = "" if self.data.input == "prefetch" else f"-{self.data.input}"  # one run may compare input paths
        seeded = f"-s{self.seed}" if self.seed else ""  # seed 0's ids are those of runs before --seeds
        return (f"{what.model}-{what.framework}-{what.variant}-{what.tuning}-bs{what.batch_size}{on}{fed}{seeded}"
                f"-r{self.repeat}")

    @property
    def label(self) -> str:
        what = self.what
        on = f" on {self.replicas} devices" if self.replicas > 1 else ""
        profile = "" if what.tuning == DEFAULT_PROFILE else f" {what.tuning}"
        fed = "" if self.data.input == "prefetch" else f", {self.data.input} input"
        seeded = f", seed {self.seed}" if self.seed else ""
        return (f"{what.model} {what.framework}:{what.variant}{profile} batch {what.batch_size}{on}{fed}{seeded}, "
                f"repeat {self.repeat}")

    @property
    def replicas(self) -> int:
        return self.placement.devices * self.placement.nodes

    @property
    def global_batch(self) -> int:
        return self.what.batch_size * self.replicas

    @property
    def processes_per_node(self) -> int:
        """DDP runs a process per device; the other engines one per machine, driving all of its devices."""
        entry = registry().get(self.what.framework)
        return self.placement.devices if entry is not None and entry.process_per_device else 1

    @property
    def process_threads(self) -> int:
        """The cores of each of this node's processes: `threads` shared among them."""
        return max(1, self.placement.threads // self.processes_per_node)

    @property
    def parallel(self) -> DataParallel:
        place, per_node = self.placement, self.processes_per_node
        return DataParallel(place.devices // per_node, per_node * place.nodes,
                            place.node_rank * per_node + place.member, place.coordinator,
                            tuple(host for host in place.node_hosts for _ in range(per_node)))

    @property
    def leads(self) -> bool:
        """The process that takes turns, streams the job's progress and speaks for the group."""
        return self.placement.node_rank == 0 and self.placement.member == 0

    def train_config(self, total_steps: int) -> TrainConfig:
        return dataclasses.replace(self.training, total_steps=max(total_steps, 1))

    def as_member(self, member: int, coordinator: str | None) -> Job:
        """The description of one of the job's processes on this node."""
        return dataclasses.replace(self, placement=dataclasses.replace(self.placement, member=member,
                                                                       coordinator=coordinator))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields: dict) -> Job:
        placement = fields["placement"]
        return cls(kind=fields["kind"], what=Workload(**fields["what"]), training=TrainConfig(**fields["training"]),
                   timing=Timing(**fields["timing"]), data=Data(**fields["data"]),
                   placement=Placement(**{**placement, "node_hosts": tuple(placement["node_hosts"])}),
                   repeat=fields["repeat"], seed=fields["seed"],
                   files=ParityFiles(**fields["files"]) if fields["files"] else None)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Job:
        return cls.from_dict(json.loads(text))
