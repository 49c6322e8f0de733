"""Cross-framework parity: every framework variant computes fixed checks from the same random
weights and batches, and each pair, and each variant against a float64 NumPy reference, is
compared tensor by tensor against tight tolerances.

Training is checked twice. The per-step check is the pass/fail criterion: before every step each
framework loads one common training state (weights, momentum buffers, step count) from the float64
reference's trajectory, takes one step on the same batch, and exports the loss, the weight update
and the new momentum buffers; errors cannot compound, so one flipped ReLU or max-pool decision
shows as one step's outlier, which is named and tolerated once per pair and setting. The
free-running check trains 20 steps from the initial state without resets and reports the worst
error and the first step at which two trajectories part; it is reported, not asserted, because
one flipped decision sends a trajectory elsewhere even on CPU in float32.

Data-parallel training is checked the same way: N devices (each framework's own engine, each
replica fed its shard of every batch) must take the training steps one device takes on the whole
batch, per step from the common states, against the same framework on one device, the other
frameworks on N devices and the float64 reference.

`python -m benchmarks.parity --device cuda` runs the checks on any device, one framework per
worker process (a group of them for DDP), and prints the largest error per check and pair;
`--devices 2` adds the data-parallel check."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.stats import relative_error
from frameworks import reference
from frameworks.base import (MODELS, SINGLE, Adapter, DataParallel, Params, TrainConfig, TrainingState, init_params,
                             randomize_batchnorm)

PARITY_SEED = 1234
PARITY_BATCH = 32
TRAIN_STEPS = 20
# Optimizer settings, each exposing a different way the frameworks' forms differ: momentum alone
# (constant lr), L2 weight decay (coupled vs decoupled), a changing learning rate (where Keras's
# `v = m*v - lr*g` form and PyTorch's `buf = m*buf + g; w -= lr*buf` part ways), and ResNet-9's
# recipe: Nesterov momentum (three different spellings of the look-ahead), label smoothing (Keras
# smooths one-hot labels only) and the one-cycle schedule (each framework builds its own), with
# weight decay. A schedule spans the plan's steps.
TRAINING_CONFIGS = {
    "momentum": TrainConfig(learning_rate=0.05, momentum=0.9),
    "weight decay": TrainConfig(learning_rate=0.05, momentum=0.9, weight_decay=5e-3),
    "cosine schedule": TrainConfig(learning_rate=0.05, momentum=0.9, weight_decay=5e-3, lr_schedule="cosine"),
    "recipe": TrainConfig(learning_rate=0.05, momentum=0.9, weight_decay=5e-3, nesterov=True, label_smoothing=0.2,
                          lr_schedule="onecycle", warmup_fraction=0.3),
}
REFERENCE = "float64"  # the reference's name in the outputs and in the pairs
PROOF = "fp64"  # the precision every variant is also checked in, where no decision can flip


@dataclass(frozen=True)
class ParityPlan:
    """How a model is checked: batch, image side, training steps, optimizer settings, and whether
    float32 gradients are asserted or only reported (then float64 alone proves them)."""

    batch_size: int
    side: int
    steps: int
    settings: tuple[str, ...]
    float32_gradients_asserted: bool


PLANS = {
    "lenet": ParityPlan(PARITY_BATCH, 32, TRAIN_STEPS, tuple(TRAINING_CONFIGS), True),
    # ResNet-9 makes 3 M ReLU and max-pool decisions per 32x32 batch of 8: in float32 one of them
    # flips in most steps (gradients 4e-4 to 2e-3 off float64 in 3 of 4 batches; 8e-3 on 16x16
    # images, where each decision weighs more in a 2x2 BatchNorm), so its float32 gradients are
    # reported and float64 proves them. The optimizer's settings one by one are LeNet's business;
    # ResNet-9 takes its recipe (the richest), on 16x16 images that the same network (fully
    # convolutional, global max-pool) maps to 2x2 at its last BatchNorm, and a batch of 4.
    "resnet9": ParityPlan(4, 16, 4, ("recipe",), False),
}


def training_config(model: str, setting: str, precision: str = "fp32") -> TrainConfig:
    """A setting's optimizer, its schedule spanning the model's parity steps."""
    return dataclasses.replace(TRAINING_CONFIGS[setting], total_steps=PLANS[model].steps, precision=precision)


# check -> relative tolerance over each whole tensor (0 = exact), in float32
TOLERANCES = {"round trip": 0.0, "forward": 1e-5, "loss": 1e-4, "gradients": 1e-4,
              "per-step": 1e-4, "step count": 0.0, "free-running": 1e-4}
# Other precisions are held to their own accuracy. fp64: float64 against float64, where every
# variant agrees with the reference to 1e-14 or better. bf16: twice the largest error against
# float64 measured on an AVX-512 CPU (logits 4.6e-3, loss 4.9e-5, gradients and per-step 2.2e-1:
# bfloat16 keeps 8 significant bits). TF32 keeps 11, so its bounds are bf16's divided by 8 (not
# measurable on a CPU, which has no TF32). Round trip and step count stay exact.
PRECISION_TOLERANCES = {
    "fp32": {},
    "fp64": {"forward": 1e-10, "loss": 1e-10, "gradients": 1e-10, "per-step": 1e-10, "free-running": 1e-10},
    "tf32": {"forward": 1.25e-3, "loss": 1e-4, "gradients": 6e-2, "per-step": 6e-2, "free-running": 6e-2},
    "bf16": {"forward": 1e-2, "loss": 1e-4, "gradients": 0.5, "per-step": 0.5, "free-running": 0.5},
}
EXACT_CHECKS = ("round trip", "step count")
# A float32 rounding that flips one ReLU or max-pool decision changes one unit's gradient in that
# step: a few 1e-3 in the weight it feeds (2.2e-3 measured), with the step's loss unchanged. One
# such step per pair and setting is named as an outlier instead of failing, provided the float64
# reference saw a decision within NEAR_TIE (relative) of flipping in that step; a second fails.
FLIP_BOUND = 5e-2
NEAR_TIE = 1e-6
COLUMNS = ["precision", "pair", "check", "setting", "step", "tensor", "error", "tolerance", "asserted", "passed",
           "outlier"]


def parity_batches(count: int, batch_size: int = PARITY_BATCH, side: int = 32) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random normal images (never zeros: a zero input hides layout mistakes) and labels."""
    rng = np.random.default_rng(PARITY_SEED)
    return [(rng.standard_normal((batch_size, side, side, 3)).astype(np.float32),
             rng.integers(0, 10, batch_size).astype(np.int32)) for _ in range(count)]


def model_batches(model: str) -> list[tuple[np.ndarray, np.ndarray]]:
    plan = PLANS[model]
    return parity_batches(plan.steps, plan.batch_size, plan.side)


def parity_params(model: str) -> Params:
    """Random weights, and random, non-trivial BatchNorm scales, shifts and running statistics."""
    return randomize_batchnorm(model, init_params(model, PARITY_SEED), PARITY_SEED + 2)


def round_trip_state(model: str) -> TrainingState:
    """A state every adapter must load and export bit for bit: random weights and BatchNorm
    statistics, random non-zero momentum buffers (a zero buffer would hide a layout mistake) and a
    step count past zero (which is also the batches BatchNorm has tracked)."""
    step = 7
    params = {name: np.int64(step) if name.endswith("num_batches_tracked") else value
              for name, value in parity_params(model).items()}
    rng = np.random.default_rng(PARITY_SEED + 1)
    momentum = {name: rng.standard_normal(params[name].shape).astype(np.float32) for name in MODELS[model].trainable}
    return TrainingState(params, momentum, step)


def key(check: str, tensor: str, setting: str = "", step: int | str = "") -> str:
    return f"{check}|{setting}|{step}|{tensor}"


def parse_key(text: str) -> tuple[str, str, str, str]:
    check, setting, step, tensor = text.split("|")
    return check, setting, step, tensor


def _step_outputs(setting: str, step: int, common: TrainingState, loss: float, after: TrainingState) -> dict:
    """What one training step from `common` produced: loss, weight updates, momentum buffers and
    BatchNorm's running statistics."""
    out = {key("per-step", "loss", setting, step): np.float64(loss),
           key("step count", "step count", setting, step): np.int64(after.step)}
    for name, value in after.params.items():
        if name in after.momentum:  # the difference in float64, stored in the weights' dtype
            update = np.asarray(value, np.float64) - np.asarray(common.params[name], np.float64)
            out[key("per-step", f"update {name}", setting, step)] = update.astype(np.asarray(value).dtype)
            out[key("per-step", f"momentum {name}", setting, step)] = np.asarray(after.momentum[name])
        elif name.endswith("num_batches_tracked"):
            out[key("step count", name, setting, step)] = np.int64(value)
        else:
            out[key("per-step", name, setting, step)] = np.asarray(value)
    return out


# --- The float64 reference ------------------------------------------------------------------------


@functools.cache
def reference_outputs(model: str, precision: str = "fp32") -> dict[str, np.ndarray]:
    """The reference's answers to every check in `precision`, and the common states of the
    per-step check.

    The common states are float64 steps rounded to float32 between steps: states every framework
    can hold exactly, in any precision. For float32 comparisons each step's outputs are the
    correctly rounded float32 answer from that state (an update is new weights rounded, minus the
    old ones), so a framework's error against it is its own error beyond float32's last rounding;
    for float64 comparisons they are not rounded, and the free-running trajectory never is."""
    params = parity_params(model)
    batches = model_batches(model)
    images, labels = batches[0]
    first = training_config(model, PLANS[model].settings[0])  # the untrained checks' loss is its
    loss, grads = reference.loss_and_grads(model, params, images, labels, first.label_smoothing)
    outputs = {key("forward", "logits"): reference.logits(model, params, images), key("loss", "loss"): np.float64(loss)}
    outputs.update({key("gradients", name): grad for name, grad in grads.items()})
    rounded = precision != PROOF
    for setting in PLANS[model].settings:
        config = training_config(model, setting)
        state = free = TrainingState.fresh(params)
        for step, (x, y) in enumerate(batches):
            outputs.update(_state_arrays(setting, step, state))
            margin = reference.decision_margin(model, state.params, x)
            outputs[key("margin", "decision", setting, step)] = np.float64(margin)
            loss, after = reference.train_step(model, state, x, y, config)
            outputs.update(_step_outputs(setting, step, state, loss, after.astype(np.float32) if rounded else after))
            state = after.astype(np.float32)
            loss, free = reference.train_step(model, free, x, y, config)
            free = free.astype(np.float32) if rounded else free
            outputs[key("free-running", "loss", setting, step)] = np.float64(loss)
        outputs.update({key("free-running", name, setting, len(batches)): value for name, value in free.params.items()})
    return outputs


def _state_arrays(setting: str, step: int, state: TrainingState) -> dict[str, np.ndarray]:
    arrays = {key("state", f"params {name}", setting, step): value for name, value in state.params.items()}
    arrays.update({key("state", f"momentum {name}", setting, step): value for name, value in state.momentum.items()})
    arrays[key("state", "step", setting, step)] = np.int64(state.step)
    return arrays


def common_state(outputs: dict[str, np.ndarray], setting: str, step: int) -> TrainingState:
    """The reference's state before `step` of `setting`, which every framework starts that step from."""
    prefix = f"state|{setting}|{step}|"
    part = {name[len(prefix):]: value for name, value in outputs.items() if name.startswith(prefix)}
    pick = lambda kind: {n.split(" ", 1)[1]: v for n, v in part.items() if n.startswith(kind + " ")}  # noqa: E731
    return TrainingState(pick("params"), pick("momentum"), int(part["step"]))


# --- One framework's outputs ----------------------------------------------------------------------


def compute_outputs(adapter_cls: type[Adapter], model: str, device: str, variant: str,
                    precision: str = "fp32", common: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Everything the checks compare in `precision`, as a flat dict of "check|setting|step|tensor"
    -> array (workers save it as .npz). `common` holds the reference's states for the per-step
    check (computed here when not given). Weights and batches are random and non-zero. The round
    trip is checked outside fp64, whose weights are float64 by design. The untrained checks (forward,
    loss, gradients) use the first setting's adapter, and so its loss (label smoothing)."""
    common = reference_outputs(model) if common is None else common
    params = parity_params(model)
    batches = model_batches(model)
    images, labels = batches[0]
    outputs = {}
    for setting in PLANS[model].settings:
        config = training_config(model, setting, precision)
        adapter = adapter_cls(model, device, variant, config)
        if not outputs:  # the untrained checks need only one adapter
            if precision != PROOF:
                adapter.set_state(round_trip_state(model))
                exported = adapter.get_state()
                outputs.update({key("round trip", name): value for name, value in exported.params.items()})
                outputs.update({key("round trip", f"momentum {name}"): value
                                for name, value in exported.momentum.items()})
                outputs[key("round trip", "step count")] = np.int64(exported.step)
            adapter.set_params(params)
            outputs[key("forward", "logits")] = adapter.logits(images)
            loss, grads = adapter.loss_and_grads(images, labels)
            outputs[key("loss", "loss")] = np.float64(loss)
            outputs.update({key("gradients", name): value for name, value in grads.items()})
        for step, (x, y) in enumerate(batches):
            start = common_state(common, setting, step)
            adapter.set_state(start)
            loss = adapter.losses_to_numpy([adapter.train_step(x, y)])[0]
            outputs.update(_step_outputs(setting, step, start, loss, adapter.get_state()))
        adapter.set_params(params)
        losses = adapter.losses_to_numpy([adapter.train_step(x, y) for x, y in batches])
        outputs.update({key("free-running", "loss", setting, step): np.float64(loss)
                        for step, loss in enumerate(losses)})
        outputs.update({key("free-running", name, setting, len(batches)): value
                        for name, value in adapter.get_params().items()})
    return outputs


def training_outputs(adapter_cls: type[Adapter], model: str, device: str, variant: str, common: dict[str, np.ndarray],
                     parallel: DataParallel = SINGLE) -> dict[str, np.ndarray]:
    """The training checks alone (per-step from the common states, and free-running), in float32,
    on one device or on `parallel`'s replicas, where this process feeds its part of every batch."""
    outputs = {}
    for setting in PLANS[model].settings:
        adapter = adapter_cls(model, device, variant, training_config(model, setting), parallel)
        for step, (x, y) in enumerate(model_batches(model)):
            start = common_state(common, setting, step)
            adapter.set_state(start)
            loss = adapter.losses_to_numpy([adapter.train_step(parallel.local(x), parallel.local(y))])[0]
            outputs.update(_step_outputs(setting, step, start, loss, adapter.get_state()))
        adapter.set_params(parity_params(model))
        losses = adapter.losses_to_numpy([adapter.train_step(parallel.local(x), parallel.local(y))
                                          for x, y in model_batches(model)])
        outputs.update({key("free-running", "loss", setting, step): np.float64(loss)
                        for step, loss in enumerate(losses)})
        outputs.update({key("free-running", name, setting, len(losses)): value
                        for name, value in adapter.get_params().items()})
    return outputs


def compute_all(adapter_cls: type[Adapter], model: str, device: str, variant: str, precision: str,
                common: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The outputs in `precision` and in float64, as "precision/check|...": float64 last, because
    JAX's 64-bit mode and Keras's float64 default stay on for the rest of the process."""
    outputs = {}
    for each in dict.fromkeys((precision, PROOF)):
        outputs.update({f"{each}/{name}": value
                        for name, value in compute_outputs(adapter_cls, model, device, variant, each, common).items()})
    return outputs


class PrecisionView(Mapping):
    """One precision's outputs within `compute_all`'s naming, read lazily: a worker's .npz file
    holds every training step's tensors (hundreds of MB for ResNet-9), compared one at a time."""

    def __init__(self, arrays: Mapping[str, np.ndarray], precision: str):
        self.arrays, self.prefix = arrays, f"{precision}/"
        self.names = [name[len(self.prefix):] for name in arrays if name.startswith(self.prefix)]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[self.prefix + name]

    def __iter__(self):
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


# --- Comparing ------------------------------------------------------------------------------------


def tolerance(check: str, precision: str = "fp32") -> float:
    return PRECISION_TOLERANCES[precision].get(check, TOLERANCES[check])


def compare(outputs: dict[str, dict[str, np.ndarray]], model: str = "lenet", precision: str = "fp32") -> pd.DataFrame:
    """One row per (pair, check, setting, step, tensor) of outputs computed in `precision`: its
    relative error, tolerance and verdict. Pairs are every two variants and each variant against
    the float64 reference (named `float64` in `outputs`, added when absent); the round trip is
    checked per variant against the state it was given. Free-running rows are reported, not
    asserted, and so are a model's float32 gradients where its plan says they flip (see PLANS)."""
    outputs = {**outputs, REFERENCE: outputs.get(REFERENCE) or reference_outputs(model, precision)}
    given = round_trip_state(model)
    expected = {key("round trip", name): value for name, value in given.params.items()}
    expected.update({key("round trip", f"momentum {name}"): value for name, value in given.momentum.items()})
    expected[key("round trip", "step count")] = np.int64(given.step)
    rows = []
    for name, result in outputs.items():
        if name == REFERENCE or key("round trip", "step count") not in result:
            continue
        for text, value in expected.items():
            error = float(np.max(np.abs(np.asarray(result[text], np.float64) - value)))
            rows.append((f"{name} vs canonical", *parse_key(text), error))
    variants = [name for name in outputs if name != REFERENCE]
    for name_a, name_b in [*itertools.combinations(variants, 2), *((name, REFERENCE) for name in variants)]:
        a, b = outputs[name_a], outputs[name_b]
        for text in a:
            check = parse_key(text)[0]
            if check not in ("round trip", "state", "margin"):
                rows.append((f"{name_a} vs {name_b}", *parse_key(text), relative_error(a[text], b[text])))
    table = pd.DataFrame(rows, columns=COLUMNS[1:7])
    table.insert(0, "precision", precision)
    table["step"] = pd.to_numeric(table["step"]).astype("Int64")
    table["tolerance"] = [tolerance(check, precision) for check in table["check"]]
    gradient_derived = (table["check"] == "gradients") | table["tensor"].str.match(r"(update|momentum) ")
    flip_prone = precision != PROOF and not PLANS[model].float32_gradients_asserted
    table["asserted"] = (table["check"] != "free-running") & ~(gradient_derived & flip_prone)
    table["passed"] = table["error"] <= table["tolerance"]
    table["outlier"] = False
    if precision != PROOF:
        _mark_flip_outliers(table, outputs[REFERENCE])
    return table


def _mark_flip_outliers(table: pd.DataFrame, reference_arrays: dict[str, np.ndarray]) -> None:
    """Per pair and setting, a single per-step failure that looks like a flipped decision (loss
    within tolerance, every error under FLIP_BOUND, a near-tie in the reference at that step)
    becomes a named, unasserted outlier."""
    per_step = table[(table["check"] == "per-step") & table["asserted"]]
    for (_, setting), rows in per_step.groupby(["pair", "setting"], sort=False):
        failing = rows[~rows["passed"]]
        if failing["step"].nunique() != 1:
            continue
        step = int(failing["step"].iloc[0])
        step_rows = rows[rows["step"] == step]
        loss_ok = bool(step_rows.loc[step_rows["tensor"] == "loss", "passed"].all())
        near_tie = float(reference_arrays[key("margin", "decision", setting, step)]) < NEAR_TIE
        if loss_ok and near_tie and step_rows["error"].max() <= FLIP_BOUND:
            table.loc[step_rows.index, ["asserted", "outlier"]] = [False, True]


def failures(table: pd.DataFrame) -> list[str]:
    """One line per asserted comparison that failed, naming pair, check, setting, step and tensor."""
    lines = []
    for row in table[table["asserted"] & ~table["passed"]].itertuples():
        where = f" [{row.setting}, step {row.step}]" if row.setting else ""
        lines.append(f"{row.pair}, {row.precision}: {row.check}{where} {row.tensor}: relative error "
                     f"{row.error:.2e} > tolerance {row.tolerance:.0e}")
    return lines


def outliers(table: pd.DataFrame) -> list[str]:
    """One line per tolerated one-step outlier: pair, setting, step, worst tensor and error."""
    rows = table[table["outlier"] & ~table["passed"]]
    lines = []
    for (precision, pair, setting, step), group in rows.groupby(["precision", "pair", "setting", "step"], sort=False):
        worst = group.loc[group["error"].idxmax()]
        lines.append(f"{pair}, {precision}: per-step [{setting}, step {step}] {worst['tensor']}: relative error "
                     f"{worst['error']:.2e} in {len(group)} tensors, loss agreeing: one flipped decision")
    return lines


def parting_steps(table: pd.DataFrame) -> pd.Series:
    """For each pair and setting, the first step whose free-running loss differs by more than the
    tolerance (missing where the trajectories never part)."""
    losses = table[(table["check"] == "free-running") & (table["tensor"] == "loss") & ~table["passed"]]
    return losses.groupby(["pair", "setting"], sort=False)["step"].min()


def worst_by_check(table: pd.DataFrame) -> pd.DataFrame:
    """The largest error of each check for each pair, with where it occurred, and for the
    free-running check the first step at which the trajectories part: the table users read."""
    worst = table.loc[table.groupby(["pair", "check"], sort=False)["error"].idxmax()].reset_index(drop=True)
    parts = parting_steps(table).groupby(level="pair").min()
    worst["parts at step"] = [parts.get(row.pair) if row.check == "free-running" else None
                              for row in worst.itertuples()]
    worst["parts at step"] = worst["parts at step"].astype("Int64")
    return worst


def parity_summary(pairs: pd.DataFrame) -> pd.DataFrame:
    """One row per pair, for one precision: the worst error of each check; for the per-step check
    the worst error with its step, and any tolerated outlier apart; for the free-running check the step at which
    the trajectories part ("-" where they never do). Cells are formatted text."""
    worst = worst_by_check(pairs[~pairs["outlier"]]).set_index(["pair", "check"])
    flips = pairs[pairs["outlier"]].groupby("pair")[["step", "error"]].max()
    summary = pd.DataFrame(index=pd.Index(pairs["pair"].unique(), name="pair"))
    for check in ("forward", "loss", "gradients"):  # the data-parallel check trains only
        if check in pairs["check"].values:
            summary[check] = [f"{worst.loc[(pair, check), 'error']:.1e}" for pair in summary.index]
    per_step = worst.xs("per-step", level="check")
    summary["per-step"] = [f"{per_step.loc[pair, 'error']:.1e} (step {per_step.loc[pair, 'step']})"
                           for pair in summary.index]
    summary["outlier"] = [f"step {flips.loc[pair, 'step']}: {flips.loc[pair, 'error']:.1e}" if pair in flips.index
                          else "-" for pair in summary.index]
    summary["free-running"] = [f"{worst.loc[(pair, 'free-running'), 'error']:.1e}" for pair in summary.index]
    parts = [worst.loc[(pair, "free-running"), "parts at step"] for pair in summary.index]
    summary["parts at step"] = ["-" if pd.isna(step) else str(step) for step in parts]
    return summary


# --- Running the checks in worker processes ------------------------------------------------------


@dataclass(frozen=True)
class ParityOutcome:
    table: pd.DataFrame | None  # every comparison; None when fewer than one framework produced outputs
    unusable: dict[str, dict]  # framework -> the status and reason its benchmark rows will carry

    @property
    def passed(self) -> bool:
        return self.table is not None and not failures(self.table)


def print_verdict(console, title: str, table: pd.DataFrame) -> None:
    """One check's verdict, then each failed comparison and each tolerated outlier on its own line."""
    failed = failures(table)
    verdict = "[bold green]passed[/]" if not failed else f"[bold red]FAILED {len(failed)} comparisons[/]"
    console.print(f"{title}: {verdict}")
    for line in failed:
        console.print(f"  {line}", markup=False)
    for line in outliers(table):
        console.print(f"  outlier (tolerated once per pair and setting): {line}", markup=False)


def run_parity_jobs(selection, folder: Path, console, probe_only: bool = False,
                    precision: str = "fp32") -> ParityOutcome:
    """Run the parity computation (or, with `probe_only`, only the device check) for every
    selected model, framework and variant, each in its own worker, and compare the outputs. The
    runner checks in fp32 whatever its own precision: TF32 changes the numerics by design."""
    from rich.markup import escape

    from benchmarks.spawn import run_worker

    (folder / "logs").mkdir(parents=True, exist_ok=True)
    if probe_only:  # one worker per framework, on the first model
        unusable = {}
        for framework, variant in dict(selection.pairs).items():
            job = _parity_job("probe", selection, selection.models[0], framework, variant, precision)
            with console.status(f"probing: {framework}:{variant}"):
                result = run_worker(job, folder / "logs" / f"probe-{framework}.log", selection.job_timeout,
                                    lambda message: None)
            if result["status"] != "ok":
                console.print(f"[bold red]{framework}:{variant}: {result['status']}: {escape(str(result['error']))}[/]")
                unusable.setdefault(framework, {"status": result["status"], "error": result["error"]})
        return ParityOutcome(None, unusable)
    tables, unusable = [], {}
    for model in selection.models:
        table = _model_parity(selection, model, folder, console, precision, unusable)
        if table is not None:
            tables.append(table)
    return ParityOutcome(pd.concat(tables, ignore_index=True) if tables else None, unusable)


def _parity_job(kind: str, selection, model: str, framework: str, variant: str, precision: str, **files):
    from benchmarks.jobs import Job

    plan = PLANS[model]
    return Job(kind, framework, variant, model, selection.device, plan.batch_size, 1, PARITY_SEED, selection.threads,
               precision, 0, plan.steps, 0, 1, 0.0, 0.0, 0.0, "constant", "synthetic", None, None, None, **files)


def _model_parity(selection, model: str, folder: Path, console, precision: str, unusable: dict) -> pd.DataFrame | None:
    """One model's checks: the float64 reference computed once, here, and handed to every worker
    as a file; each variant's outputs read back lazily, compared, then deleted (they are large)."""
    from rich.markup import escape

    from benchmarks.spawn import run_worker

    precisions = list(dict.fromkeys((precision, PROOF)))
    logs = folder / "logs"
    reference_file = logs / f"parity-{model}-reference.npz"
    with console.status(f"float64 reference: {model}"):
        references = {each: reference_outputs.__wrapped__(model, each) for each in precisions}  # not kept
        np.savez(reference_file, **{f"{each}/{name}": value for each, arrays in references.items()
                                    for name, value in arrays.items()})
    files = {}
    for framework, variant in selection.pairs:
        output = logs / f"parity-{model}-{framework}-{variant}.npz"
        job = _parity_job("parity", selection, model, framework, variant, precision, output=str(output),
                          reference=str(reference_file))
        with console.status(f"parity check: {model} {framework}:{variant}"):
            result = run_worker(job, logs / f"parity-{model}-{framework}-{variant}.log", selection.job_timeout,
                                lambda message: None)
        if result["status"] != "ok":
            console.print(f"[bold red]{framework}:{variant}: {result['status']}: {escape(str(result['error']))}[/]")
            unusable.setdefault(framework, {"status": result["status"], "error": result["error"]})
        else:
            files[f"{framework}:{variant}"] = output
    reference_file.unlink()
    if not files:
        return None
    opened = {name: np.load(path) for name, path in files.items()}
    try:
        table = pd.concat([compare({**{name: PrecisionView(arrays, each) for name, arrays in opened.items()},
                                    REFERENCE: references[each]}, model, each) for each in precisions],
                          ignore_index=True)
    finally:
        for arrays in opened.values():
            arrays.close()
        for path in files.values():
            path.unlink()
    table.insert(0, "model", model)
    print_verdict(console, f"parity of {model} across {', '.join(files)} and the float64 reference on "
                           f"{selection.device} ({' and '.join(precisions)})", table)
    return table


def run_data_parallel_parity(selection, devices: int, folder: Path, console) -> ParityOutcome:
    """The data-parallel check of every selected model and variant: one group of workers each
    trains on `devices` devices and, for comparison, on one; the float32 tables of every pair
    (`framework:variant xN` for N devices) and against the float64 reference. A variant that does
    not train on several devices here (skipped) is named, not counted as unusable."""
    from rich.markup import escape

    from benchmarks.spawn import run_worker

    logs = folder / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    tables, unusable = [], {}
    for model in selection.models:
        reference_file = logs / f"parallel-parity-{model}-reference.npz"
        with console.status(f"float64 reference: {model}"):
            np.savez(reference_file, **{f"fp32/{name}": value for name, value in reference_outputs(model).items()
                                        if name.startswith("state|")})
        outputs, opened = {}, []
        for framework, variant in selection.pairs:
            name = f"parallel-parity-{model}-{framework}-{variant}-x{devices}"
            job = _parity_job("parallel parity", selection, model, framework, variant, "fp32",
                              output=str(logs / f"{name}.npz"), reference=str(reference_file), devices=devices)
            with console.status(f"data-parallel parity check: {model} {framework}:{variant} on {devices} devices"):
                result = run_worker(job, logs / f"{name}.log", selection.job_timeout, lambda message: None)
            if result["status"] == "skipped":
                console.print(f"[yellow]{framework}:{variant} on {devices} devices: {escape(str(result['error']))}[/]")
            elif result["status"] != "ok":
                console.print(f"[bold red]{framework}:{variant} on {devices} devices: {result['status']}: "
                              f"{escape(str(result['error']))}[/]")
                unusable.setdefault(framework, {"status": result["status"], "error": result["error"]})
            else:
                arrays = np.load(logs / f"{name}.npz")
                opened.append((arrays, logs / f"{name}.npz"))
                outputs[f"{framework}:{variant} x{devices}"] = PrecisionView(arrays, "parallel")
                outputs[f"{framework}:{variant}"] = PrecisionView(arrays, "single")
        reference_file.unlink()
        try:
            if outputs:
                table = compare({**outputs, REFERENCE: reference_outputs(model)}, model)
                table.insert(0, "model", model)
                table.insert(1, "devices", devices)  # the single-device check's rows have none
                tables.append(table)
                print_verdict(console, f"data-parallel parity of {model} on {devices} devices against one device, "
                                       f"across frameworks and against the float64 reference", table)
        finally:
            for arrays, path in opened:
                arrays.close()
                path.unlink()
    return ParityOutcome(pd.concat(tables, ignore_index=True) if tables else None, unusable)


def main(argv: list[str] | None = None) -> int:
    from benchmarks import cli

    parser = argparse.ArgumentParser(prog="python -m benchmarks.parity", description=__doc__.split("\n\n")[0])
    cli.add_selection_arguments(parser)
    parser.add_argument("--devices", type=cli.positive_int, default=1,
                        help="also check data-parallel training on this many devices against one device")
    args = parser.parse_args(argv)
    selection = cli.selection_from_args(parser, args)
    with tempfile.TemporaryDirectory() as folder:
        outcome = run_parity_jobs(selection, Path(folder), cli.console(), precision=selection.precision)
        if args.devices > 1:
            parallel = run_data_parallel_parity(selection, args.devices, Path(folder), cli.console())
            tables = [table for table in (outcome.table, parallel.table) if table is not None]
            outcome = ParityOutcome(pd.concat(tables, ignore_index=True) if tables else None,
                                    {**parallel.unusable, **outcome.unusable})
    if outcome.table is None:
        cli.console().print("error: no framework could run the parity checks")
        return 3
    for (model, precision), table in outcome.table.groupby(["model", "precision"], sort=False):
        cli.console().print(f"\n{model}, {precision}:", markup=False)
        cli.console().print(parity_summary(table[table["check"] != "round trip"]).to_string(), markup=False)
    return 0 if outcome.passed else 1


if __name__ == "__main__":
    sys.exit(main())
