"""What a parity table says, read from its rows alone (pandas, nothing of the checks' models):
the failures, the tolerated outliers, where free-running trajectories part, the per-pair summary
users read, and the largest errors against their bounds. The parity command and the report read
their verdicts here."""

from __future__ import annotations

import pandas as pd

REFERENCE = "float64"  # the reference's name in the outputs and in the pairs


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


def grouped_outliers(table: pd.DataFrame) -> list[str]:
    """The tolerated one-step outliers with one line per flipped decision: the same precision,
    setting, step, worst tensor and error, followed by every pair it affects."""
    rows = table[table["outlier"] & ~table["passed"]]
    flips = []
    for (precision, pair, setting, step), group in rows.groupby(["precision", "pair", "setting", "step"], sort=False):
        worst = group.loc[group["error"].idxmax()]
        flips.append({"precision": precision, "pair": pair, "setting": setting, "step": step,
                      "tensor": worst["tensor"], "error": f"{worst['error']:.2e}", "tensors": len(group)})
    if not flips:
        return []
    lines = []
    for key, group in pd.DataFrame(flips).groupby(["precision", "setting", "step", "tensor", "error", "tensors"],
                                                 sort=False):
        precision, setting, step, tensor, error, tensors = key
        pairs = group["pair"].tolist()
        lines.append(f"{precision}: per-step [{setting}, step {step}] {tensor}: relative error {error} in {tensors} "
                     f"tensors, loss agreeing: one flipped decision, in {len(pairs)} pair{'s' * (len(pairs) > 1)}: "
                     + ", ".join(pairs))
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
    the worst error with its step, and any tolerated outlier apart; for the free-running check the
    step at which the trajectories part ("-" where they never do). A pair that a check does not
    cover (the data-parallel check trains only) says "not checked" there. Cells are formatted text."""
    worst = worst_by_check(pairs[~pairs["outlier"]]).set_index(["pair", "check"])
    flips = pairs[pairs["outlier"]].groupby("pair")[["step", "error"]].max()
    summary = pd.DataFrame(index=pd.Index(pairs["pair"].unique(), name="pair"))

    def cells(check: str, text) -> list[str]:
        return [text(worst.loc[(pair, check)]) if (pair, check) in worst.index else "not checked"
                for pair in summary.index]

    for check in ("forward", "loss", "gradients"):
        if check in pairs["check"].values:
            summary[check] = cells(check, lambda row: f"{row['error']:.1e}")
    summary["per-step"] = cells("per-step", lambda row: f"{row['error']:.1e} (step {row['step']})")
    summary["outlier"] = [f"step {flips.loc[pair, 'step']}: {flips.loc[pair, 'error']:.1e}" if pair in flips.index
                          else "-" for pair in summary.index]
    summary["free-running"] = cells("free-running", lambda row: f"{row['error']:.1e}")
    summary["parts at step"] = cells("free-running", lambda row: "-" if pd.isna(row["parts at step"])
                                     else str(row["parts at step"]))
    return summary


CALIBRATION_TITLE = ("Largest asserted error against each bound, with where the bound was set and the error measured "
                     "(`error / bound`: the share of its bound that the error used)")


def _named(setting) -> bool:  # a setting read back from CSV is "" or, read with pandas' defaults, NaN
    return isinstance(setting, str) and setting != ""


def calibration(table: pd.DataFrame) -> pd.DataFrame:
    """One row per model, precision and check with a bound above zero: the largest error of an
    asserted comparison, the pair and tensor it came from, the bound, the share of the bound that
    error used, and where the bound was set and the error measured: a run on another device than
    its bounds' shows how close it came to each. Cells are formatted text; a table written before
    these places were recorded says "not recorded"."""
    keys = [column for column in ("model", "devices", "precision", "check") if column in table]
    rows = table[table["asserted"] & (table["tolerance"] > 0)]
    rows = rows.assign(group=rows.groupby(keys, sort=False, dropna=False).ngroup())  # in the table's order
    worst = rows.sort_values("error", ascending=False, kind="stable").drop_duplicates("group").sort_values("group")
    out = worst[keys].reset_index(drop=True)
    if "devices" in out:  # named by the data-parallel check only
        out["devices"] = ["" if pd.isna(devices) else str(int(devices)) for devices in out["devices"]]
    out["worst error"] = [f"{row.error:.1e}" for row in worst.itertuples()]
    out["bound"] = [f"{row.tolerance:g}" for row in worst.itertuples()]
    out["error / bound"] = [f"{row.error / row.tolerance:.2g}" for row in worst.itertuples()]
    out["where"] = [f"{row.pair}: {row.tensor}" + (f" [{row.setting}, step {row.step}]" if _named(row.setting) else "")
                    for row in worst.itertuples()]
    for column in ("bound set on", "measured on"):
        out[column] = worst[column].to_list() if column in worst else "not recorded"
    return out
