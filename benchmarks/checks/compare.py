"""The comparison of parity outputs, pure NumPy and pandas: every pair of variants and each
against the float64 reference, tensor by tensor, into the table `checks.verdicts` reads."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from benchmarks.checks.definitions import (
    BOUND_SET_ON,
    COLUMNS,
    EXACT_CHECKS,
    FLIP_BOUND,
    MODEL_TOLERANCES,
    NEAR_TIE,
    PLANS,
    PRECISION_TOLERANCES,
    PROOF,
    TOLERANCES,
    key,
    parse_key,
    round_trip_state,
)
from benchmarks.checks.verdicts import REFERENCE
from benchmarks.harness.stats import relative_errors
from frameworks import float64_caveat


def tolerance(check: str, precision: str = "fp32", model: str = "lenet") -> float:
    bounds = {**TOLERANCES, **PRECISION_TOLERANCES[precision], **MODEL_TOLERANCES.get((model, precision), {})}
    return bounds[check]


def compare(outputs: dict[str, dict[str, np.ndarray]], model: str = "lenet", precision: str = "fp32",
            device: str = "cpu") -> pd.DataFrame:
    """One row per (pair, check, setting, step, tensor) of outputs computed in `precision` on
    `device`: its relative error, tolerance (with where each was set and measured) and verdict.
    Pairs are every two variants and each variant against the float64 reference (named `float64`
    in `outputs`, added when absent); the round trip is checked per variant against the state it
    was given. Free-running rows are reported, not asserted, and so are a model's float32 gradients
    where its plan says they flip (see PLANS). In float64, a pair with a framework whose float64 runs
    partly in float32 (its registry entry's `float64_caveat`) is held to float32's bounds, the
    caveat named where the bound was set. `outputs` holds the reference's answers in
    `precision` under REFERENCE (see `checks.outputs.reference_outputs`)."""
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
    pairs = [*itertools.combinations(variants, 2), *((name, REFERENCE) for name in variants)]
    compared = []  # (pair's index, row): tensor by tensor, each read once from every output (lazy .npz)
    for text in dict.fromkeys(text for name in variants for text in outputs[name]):
        if parse_key(text)[0] in ("round trip", "state", "margin"):
            continue
        arrays = {name: values[text] for name, values in outputs.items() if text in values}
        present = [(index, pair) for index, pair in enumerate(pairs) if pair[0] in arrays]
        errors = relative_errors(arrays, [pair for _, pair in present])
        compared += [(index, (f"{name_a} vs {name_b}", *parse_key(text), error))
                     for (index, (name_a, name_b)), error in zip(present, errors)]
    rows += [row for _, row in sorted(compared, key=lambda item: item[0])]  # pair by pair, as before
    table = pd.DataFrame(rows, columns=COLUMNS[1:7])
    table.insert(0, "precision", precision)
    table["step"] = pd.to_numeric(table["step"]).astype("Int64")
    table["tolerance"] = [tolerance(check, precision, model) for check in table["check"]]
    table["bound set on"] = np.where(table["check"].isin(EXACT_CHECKS), "exact", BOUND_SET_ON[precision])
    if precision == PROOF:  # a framework whose float64 runs partly in float32 is held to float32's bounds
        caveats = {pair: "; ".join(filter(None, dict.fromkeys(
            float64_caveat(side.split(":")[0]) for side in pair.split(" vs ")))) for pair in table["pair"].unique()}
        caveat = table["pair"].map(caveats)
        lowered = (caveat != "") & ~table["check"].isin(EXACT_CHECKS)
        table.loc[lowered, "tolerance"] = [tolerance(check, "fp32", model) for check in table.loc[lowered, "check"]]
        table.loc[lowered, "bound set on"] = "fp32's, " + BOUND_SET_ON["fp32"] + ": " + caveat[lowered]
    table["measured on"] = device
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
