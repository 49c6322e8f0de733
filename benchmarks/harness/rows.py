"""The result tables' rows as frozen dataclasses, whose fields are the tables' columns in order, and
their assembly from the parts their producers return: a field a table lacks is an error, never a
silent drop. Free of pandas, so a worker builds its rows without importing it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar


class UnknownColumn(ValueError):
    """A row named a field that its table has no column for (a misspelled or unregistered key)."""


# --- A job's identity, at the head of every table ------------------------------------------------


@dataclass(frozen=True)
class Identity:
    run_id: str
    job_id: str
    framework: str
    variant: str
    tuning: str  # the profile (frameworks.tuning)
    model: str
    device: str
    precision: str
    batch_size: int  # per device
    devices: int  # all nodes'
    seed: int  # initial weights, batch order and augmentation (--seeds)
    repeat: int  # the process, of --repeats, that ran this seed
    attempt: int  # 1, or the resumed invocation


# --- What a worker measures, one table each -------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """A timed window of steps (steps.csv). others_cpu: the share of the worker's cores' time other
    processes used during the window; steal: the share a hypervisor gave to other machines; load:
    the one-minute load average at its end (benchmarks.harness.contention; None: not measured)."""

    window: int
    epoch: int
    first_step: int
    steps: int
    seconds: float
    step_ms: float
    others_cpu: float | None
    steal: float | None
    load: float | None


@dataclass(frozen=True)
class Evaluation:
    """One evaluation (epochs.csv): after each epoch, or every --eval-every steps (`epoch` then
    fractional). `test_size`: the images the test set holds; `evaluated`: those the evaluation
    scored, the denominator of `test_accuracy` (each image's prediction is in
    predictions/<job_id>-a<attempt>.npz). `train_s`: the training time since the previous
    evaluation (the first includes the compile step). Each sum of times (`train_s`, summary.csv's
    `epoch_s`, `train_s_to_target`, `wall_s_to_target`) comes with the share of it that fell in
    busy windows (`train_busy_share`, `epoch_busy_share`, ...; contention.SUM_BUSY_SHARE flags it);
    empty in runs written before it was measured."""

    epoch: float
    step: int
    train_loss: float
    test_loss: float
    test_accuracy: float
    test_size: int
    evaluated: int
    train_s: float
    eval_s: float
    train_busy_share: float


@dataclass(frozen=True)
class Summary:
    """A job's outcome (summary.csv, after its identity), assembled from its producers' parts; a
    field none of them gave stays empty.

    input: the input path (jobs.INPUTS); native rows time the framework's own pipeline inside every
    clock, so their epoch_s, step times and images_per_s are end to end, while the suite's paths
    prepare each epoch before its clock (augment_s apart). input_workers: the native pipeline's
    workers and where the number came from; input_stall_s: seconds the training loop waited in
    next() for a batch, input_stall_share that over the seconds the pipeline fed training (compile
    step excluded); input_cpu_s: CPU seconds of the pipeline's workers, measured as input_cpu_how
    says. epoch_images_per_s: training images over the median epoch time, for every input path.
    settings: the tuning table's settings the worker found in effect, in its environment and its
    framework's state ("NAME=VALUE; ..."); settings_not_applied: those the tuned profile asked for
    and did not get, each with the reason. Empty in a stock row unless the user's shell set one.
    gflop_per_step: training GFLOPs of one step on the global batch (benchmarks.harness.efficiency's
    convention); gflops: that over the median step time; of_peak: gflops over the machine's measured
    peak (env.json's peak_gflops, once per GPU), empty where the peak was not measured.
    profile_error: why --profile recorded no profile of the job (its timings stand).
    jit_compile: the `jit_compile` of a step Keras trains (its `fit`-style variants), as the installed
    Keras resolved it for the job's model and device; empty for a step the suite writes itself."""

    threads: int | None = None
    global_batch: int | None = None
    nodes: int | None = None
    data: str | None = None
    augment: str | None = None
    status: str | None = None
    error: str | None = None
    framework_version: str | None = None
    jit_compile: bool | None = None
    import_s: float | None = None
    build_s: float | None = None
    compile_s: float | None = None
    warmup_steps: int | None = None
    recompiles: int | None = None
    windows: int | None = None
    contention: float | None = None
    busy_windows: int | None = None
    busy: bool | None = None
    step_ms_median: float | None = None
    step_ms_q1: float | None = None
    step_ms_q3: float | None = None
    step_ms_iqr: float | None = None
    step_ms_p5: float | None = None
    step_ms_p95: float | None = None
    images_per_s: float | None = None
    gflop_per_step: float | None = None
    gflops: float | None = None
    of_peak: float | None = None
    epochs: int | None = None
    epoch_s: float | None = None
    epoch_busy_share: float | None = None
    augment_s: float | None = None
    train_loss: float | None = None
    test_loss: float | None = None
    test_accuracy: float | None = None
    diverged_step: int | None = None
    target_accuracy: float | None = None
    target_reached: bool | None = None
    epochs_to_target: float | None = None
    steps_to_target: int | None = None
    train_s_to_target: float | None = None
    wall_s_to_target: float | None = None
    train_busy_share_to_target: float | None = None
    wall_busy_share_to_target: float | None = None
    best_accuracy: float | None = None
    baseline_rss_mb: float | None = None
    peak_rss_mb: float | None = None
    peak_device_mb: float | None = None
    input: str | None = None
    copy_ms: float | None = None
    data_digest: str | None = None
    settings: str | None = None
    settings_not_applied: str | None = None
    input_workers: str | None = None
    epoch_images_per_s: float | None = None
    input_stall_s: float | None = None
    input_stall_share: float | None = None
    input_cpu_s: float | None = None
    input_cpu_how: str | None = None
    profile_error: str | None = None


@dataclass(frozen=True)
class ProfileOp:
    """With --profile, one operation of the profiled steps: self time per step (summed over the
    threads that ran it), its share of all the ops' self time, and its category
    (benchmarks.harness.profiling)."""

    op: str
    category: str
    calls: int
    self_ms: float
    share: float
    detail: str


# --- The tables' rows: the identity, then what was measured --------------------------------------
# A dataclass lists its bases' fields in reverse order of inheritance: the identity's come first.


@dataclass(frozen=True)
class SummaryRow(Summary, Identity):
    TABLE: ClassVar[str] = "summary"


@dataclass(frozen=True)
class WindowRow(Window, Identity):
    TABLE: ClassVar[str] = "steps"


@dataclass(frozen=True)
class EvaluationRow(Evaluation, Identity):
    TABLE: ClassVar[str] = "epochs"


@dataclass(frozen=True)
class ProfileRow(ProfileOp, Identity):
    TABLE: ClassVar[str] = "profile"


ROWS = {row.TABLE: row for row in (SummaryRow, WindowRow, EvaluationRow, ProfileRow)}

Row = TypeVar("Row")


def columns(row: type) -> list[str]:
    """A row's (or part's) fields, in order: a table's columns."""
    return [field.name for field in dataclasses.fields(row)]


def merged(table: str, *parts: Mapping[str, Any] | Any) -> dict[str, Any]:
    """The fields of `parts` (dataclasses, or mappings such as a row that came over a worker's
    pipe) in one dict, a later part's field replacing an earlier one's; UnknownColumn when one is
    not a column of `table`."""
    fields: dict[str, Any] = {}
    for part in parts:
        fields.update(part if isinstance(part, Mapping) else dataclasses.asdict(part))
    known = set(columns(ROWS[table]))
    unknown = [name for name in fields if name not in known]
    if unknown:
        raise UnknownColumn(f"{table}.csv has no column {', '.join(map(repr, unknown))}")
    return fields


def assemble(row: type[Row], *parts: Mapping[str, Any] | Any) -> Row:
    """The typed row of `row`'s table from `parts` (see `merged`); ValueError when one of its
    required fields is missing."""
    fields = merged(row.TABLE, *parts)
    missing = [field.name for field in dataclasses.fields(row)
               if field.name not in fields and field.default is dataclasses.MISSING]
    if missing:
        raise ValueError(f"a {row.TABLE}.csv row lacks {', '.join(map(repr, missing))}")
    return row(**fields)
