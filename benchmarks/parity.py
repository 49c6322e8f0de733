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

`python -m benchmarks.parity --device cuda` runs the checks on any device, one framework per
worker process, and prints the largest error per check and pair."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.stats import relative_error
from frameworks import reference
from frameworks.base import Adapter, TrainConfig, TrainingState, init_params

PARITY_SEED = 1234
PARITY_BATCH = 32
TRAIN_STEPS = 20
# Three optimizer settings, each exposing a different way optimizer forms differ: momentum alone
# (constant lr), L2 weight decay (coupled vs decoupled), and a changing learning rate (where
# Keras's `v = m*v - lr*g` form and PyTorch's `buf = m*buf + g; w -= lr*buf` part ways).
TRAINING_CONFIGS = {
    "momentum": TrainConfig(learning_rate=0.05, momentum=0.9),
    "weight decay": TrainConfig(learning_rate=0.05, momentum=0.9, weight_decay=5e-3),
    "cosine schedule": TrainConfig(learning_rate=0.05, momentum=0.9, weight_decay=5e-3, lr_schedule="cosine",
                                   total_steps=TRAIN_STEPS),
}
REFERENCE = "float64"  # the reference's name in the outputs and in the pairs

# check -> relative tolerance over each whole tensor (0 = exact), in float32
TOLERANCES = {"round trip": 0.0, "forward": 1e-5, "loss": 1e-4, "gradients": 1e-4,
              "per-step": 1e-4, "step count": 0.0, "free-running": 1e-4}
# Lower precisions are held to their own accuracy, not float32's. bf16: twice the largest error
# against float64 measured on an AVX-512 CPU (logits 4.6e-3, loss 4.9e-5, gradients and per-step
# 2.2e-1: bfloat16 keeps 8 significant bits). TF32 keeps 11, so its bounds are bf16's divided by 8
# (not measurable on a CPU, which has no TF32). Round trip and step count stay exact.
PRECISION_TOLERANCES = {
    "fp32": {},
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
COLUMNS = ["pair", "check", "setting", "step", "tensor", "error", "tolerance", "asserted", "passed", "outlier"]


def parity_batches(count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random normal images (never zeros: a zero input hides layout mistakes) and labels."""
    rng = np.random.default_rng(PARITY_SEED)
    return [(rng.standard_normal((PARITY_BATCH, 32, 32, 3)).astype(np.float32),
             rng.integers(0, 10, PARITY_BATCH).astype(np.int32)) for _ in range(count)]


def round_trip_state(model: str) -> TrainingState:
    """A state every adapter must load and export bit for bit: random weights, random non-zero
    momentum buffers (a zero buffer would hide a layout mistake) and a step count past zero."""
    params = init_params(model, PARITY_SEED)
    rng = np.random.default_rng(PARITY_SEED + 1)
    momentum = {name: rng.standard_normal(value.shape).astype(np.float32) for name, value in params.items()}
    return TrainingState(params, momentum, 7)


def key(check: str, tensor: str, setting: str = "", step: int | str = "") -> str:
    return f"{check}|{setting}|{step}|{tensor}"


def parse_key(text: str) -> tuple[str, str, str, str]:
    check, setting, step, tensor = text.split("|")
    return check, setting, step, tensor


def _step_outputs(setting: str, step: int, common: TrainingState, loss: float, after: TrainingState) -> dict:
    """What one training step from `common` produced: loss, weight updates, momentum buffers."""
    out = {key("per-step", "loss", setting, step): np.float64(loss),
           key("step count", "step count", setting, step): np.int64(after.step)}
    for name, value in after.params.items():
        out[key("per-step", f"update {name}", setting, step)] = (
            np.asarray(value, np.float64) - np.asarray(common.params[name], np.float64))
        out[key("per-step", f"momentum {name}", setting, step)] = np.asarray(after.momentum[name])
    return out


# --- The float64 reference ------------------------------------------------------------------------


@functools.cache
def reference_outputs(model: str) -> dict[str, np.ndarray]:
    """The reference's answers to every check, and the common states of the per-step check.

    Its training trajectory is float64 steps rounded to float32 between steps: the states it
    passes on are ones a float32 framework can hold exactly, and each step's outputs are the
    correctly rounded float32 answer from that state (an update is new weights rounded, minus the
    old ones), so a framework's error against it is its own error beyond float32's last rounding."""
    params = init_params(model, PARITY_SEED)
    batches = parity_batches(TRAIN_STEPS)
    images, labels = batches[0]
    loss, grads = reference.loss_and_grads(model, params, images, labels)
    outputs = {key("forward", "logits"): reference.logits(model, params, images), key("loss", "loss"): np.float64(loss)}
    outputs.update({key("gradients", name): grad for name, grad in grads.items()})
    for setting, config in TRAINING_CONFIGS.items():
        state = TrainingState.fresh(params)
        for step, (x, y) in enumerate(batches):
            outputs.update(_state_arrays(setting, step, state))
            outputs[key("margin", "decision", setting, step)] = np.float64(reference.decision_margin(model, state.params, x))
            loss, after = reference.train_step(model, state, x, y, config)
            after = after.astype(np.float32)
            outputs.update(_step_outputs(setting, step, state, loss, after))
            outputs[key("free-running", "loss", setting, step)] = np.float64(loss)
            state = after
        outputs.update({key("free-running", name, setting, TRAIN_STEPS): value for name, value in state.params.items()})
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
    """Everything the checks compare, as a flat dict of "check|setting|step|tensor" -> array
    (workers save it as .npz). `common` holds the reference's states for the per-step check
    (computed here when not given). Weights and batches are random and non-zero."""
    common = reference_outputs(model) if common is None else common
    params = init_params(model, PARITY_SEED)
    batches = parity_batches(TRAIN_STEPS)
    images, labels = batches[0]
    outputs = {}
    for setting, config in TRAINING_CONFIGS.items():
        adapter = adapter_cls(model, device, variant, dataclasses.replace(config, precision=precision))
        if not outputs:  # the untrained checks need only one adapter
            adapter.set_state(round_trip_state(model))
            exported = adapter.get_state()
            outputs.update({key("round trip", name): value for name, value in exported.params.items()})
            outputs.update({key("round trip", f"momentum {name}"): value for name, value in exported.momentum.items()})
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
        outputs.update({key("free-running", "loss", setting, step): np.float64(loss) for step, loss in enumerate(losses)})
        outputs.update({key("free-running", name, setting, TRAIN_STEPS): value
                        for name, value in adapter.get_params().items()})
    return outputs


# --- Comparing ------------------------------------------------------------------------------------


def tolerance(check: str, precision: str = "fp32") -> float:
    return PRECISION_TOLERANCES[precision].get(check, TOLERANCES[check])


def compare(outputs: dict[str, dict[str, np.ndarray]], model: str = "lenet", precision: str = "fp32") -> pd.DataFrame:
    """One row per (pair, check, setting, step, tensor): its relative error, tolerance and
    verdict. Pairs are every two variants and each variant against the float64 reference (named
    `float64` in `outputs`, added when absent); the round trip is checked per variant against the
    state it was given. Free-running rows are reported, not asserted."""
    outputs = {**outputs, REFERENCE: outputs.get(REFERENCE) or reference_outputs(model)}
    given = round_trip_state(model)
    expected = {key("round trip", name): value for name, value in given.params.items()}
    expected.update({key("round trip", f"momentum {name}"): value for name, value in given.momentum.items()})
    expected[key("round trip", "step count")] = np.int64(given.step)
    rows = []
    for name, result in outputs.items():
        if name == REFERENCE:
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
    table = pd.DataFrame(rows, columns=COLUMNS[:6])
    table["step"] = pd.to_numeric(table["step"]).astype("Int64")
    table["tolerance"] = [tolerance(check, precision) for check in table["check"]]
    table["asserted"] = table["check"] != "free-running"
    table["passed"] = table["error"] <= table["tolerance"]
    table["outlier"] = False
    _mark_flip_outliers(table, outputs[REFERENCE])
    return table


def _mark_flip_outliers(table: pd.DataFrame, reference_arrays: dict[str, np.ndarray]) -> None:
    """Per pair and setting, a single per-step failure that looks like a flipped decision (loss
    within tolerance, every error under FLIP_BOUND, a near-tie in the reference at that step)
    becomes a named, unasserted outlier."""
    per_step = table[table["check"] == "per-step"]
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
        lines.append(f"{row.pair}: {row.check}{where} {row.tensor}: relative error {row.error:.2e} "
                     f"> tolerance {row.tolerance:.0e}")
    return lines


def outliers(table: pd.DataFrame) -> list[str]:
    """One line per tolerated one-step outlier: pair, setting, step, worst tensor and error."""
    rows = table[table["outlier"] & ~table["passed"]]
    lines = []
    for (pair, setting, step), group in rows.groupby(["pair", "setting", "step"], sort=False):
        worst = group.loc[group["error"].idxmax()]
        lines.append(f"{pair}: per-step [{setting}, step {step}] {worst['tensor']}: relative error "
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
    """One row per pair: the worst error of each check; for the per-step check the worst asserted
    error with its step, and any tolerated outlier; for the free-running check the step at which
    the trajectories part ("-" where they never do). Cells are formatted text."""
    worst = worst_by_check(pairs[pairs["asserted"] | (pairs["check"] == "free-running")]).set_index(["pair", "check"])
    flips = pairs[pairs["outlier"]].groupby("pair")[["step", "error"]].max()
    summary = pd.DataFrame(index=pd.Index(pairs["pair"].unique(), name="pair"))
    for check in ("forward", "loss", "gradients"):
        summary[check] = [f"{worst.loc[(pair, check), 'error']:.1e}" for pair in summary.index]
    summary["per-step"] = [f"{worst.loc[(pair, 'per-step'), 'error']:.1e} (step {worst.loc[(pair, 'per-step'), 'step']})"
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


def run_parity_jobs(selection, folder: Path, console, probe_only: bool = False,
                    precision: str = "fp32") -> ParityOutcome:
    """Run the parity computation (or, with `probe_only`, only the device check) for every
    selected framework and variant, each in its own worker, and compare the outputs. The
    runner checks in fp32 whatever its own precision: TF32 changes the numerics by design.
    The float64 reference is computed once, here, and handed to every worker as a file."""
    from rich.markup import escape

    from benchmarks.jobs import Job
    from benchmarks.spawn import run_worker

    (folder / "logs").mkdir(parents=True, exist_ok=True)
    outputs, unusable = {}, {}
    reference_file = None
    if not probe_only:
        with console.status("float64 reference"):
            reference_file = folder / "logs" / "parity-reference.npz"
            np.savez(reference_file, **reference_outputs(selection.model))
    pairs = list(dict(selection.pairs).items()) if probe_only else selection.pairs  # probe: one per framework
    for framework, variant in pairs:
        output = folder / "logs" / f"parity-{framework}-{variant}.npz"
        job = Job("probe" if probe_only else "parity", framework, variant, selection.model, selection.device,
                  PARITY_BATCH, 1, PARITY_SEED, selection.threads, precision, 0, TRAIN_STEPS, 0, 1,
                  0.0, 0.0, 0.0, "constant", "synthetic", None, None, None, output=str(output),
                  reference=None if reference_file is None else str(reference_file))
        with console.status(f"{'probing' if probe_only else 'parity check'}: {framework}:{variant}"):
            result = run_worker(job, folder / "logs" / f"parity-{framework}-{variant}.log",
                                selection.job_timeout, lambda message: None)
        if result["status"] != "ok":
            error = escape(str(result["error"]))  # worker text, not console markup
            console.print(f"[bold red]{framework}:{variant}: {result['status']}: {error}[/]")
            unusable.setdefault(framework, {"status": result["status"], "error": result["error"]})
        elif not probe_only:
            with np.load(output) as arrays:
                outputs[f"{framework}:{variant}"] = dict(arrays)
    if not outputs:
        return ParityOutcome(None, unusable)
    table = compare(outputs, selection.model, precision)
    failed = failures(table)
    verdict = "[bold green]passed[/]" if not failed else f"[bold red]FAILED {len(failed)} comparisons[/]"
    console.print(f"parity across {', '.join(outputs)} and the float64 reference on {selection.device} "
                  f"({precision}): {verdict}")
    for line in failed:
        console.print(f"  {line}", markup=False)
    for line in outliers(table):
        console.print(f"  outlier (tolerated once per pair and setting): {line}", markup=False)
    return ParityOutcome(table, unusable)


def main(argv: list[str] | None = None) -> int:
    from benchmarks import cli

    parser = argparse.ArgumentParser(prog="python -m benchmarks.parity", description=__doc__.split("\n\n")[0])
    cli.add_selection_arguments(parser)
    args = parser.parse_args(argv)
    selection = cli.selection_from_args(parser, args)
    with tempfile.TemporaryDirectory() as folder:
        outcome = run_parity_jobs(selection, Path(folder), cli.console(), precision=selection.precision)
    if outcome.table is None:
        cli.console().print("error: no framework could run the parity checks")
        return 3
    table = outcome.table[outcome.table["check"] != "round trip"]
    cli.console().print(parity_summary(table).to_string(), markup=False)
    return 0 if outcome.passed else 1


if __name__ == "__main__":
    sys.exit(main())
