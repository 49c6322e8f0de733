"""Cross-framework parity: each framework computes the same fixed checks from the same random
weights and batches, and every pair is compared tensor by tensor against tight tolerances.

`python -m benchmarks.parity --device cuda` runs the checks on any device, one framework per
worker process, and prints the largest error per check and framework pair."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.stats import relative_error
from frameworks.base import Adapter, TrainConfig, init_params

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

# check -> relative tolerance over each whole tensor (0 = bit-identical)
TOLERANCES = {"round trip": 0.0, "forward": 1e-5, "loss": 1e-4, "gradients": 1e-4,
              "training losses": 1e-4, "trained weights": 1e-4}


def parity_batches(count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random normal images (never zeros: a zero input hides layout mistakes) and labels."""
    rng = np.random.default_rng(PARITY_SEED)
    return [(rng.standard_normal((PARITY_BATCH, 32, 32, 3)).astype(np.float32),
             rng.integers(0, 10, PARITY_BATCH).astype(np.int32)) for _ in range(count)]


def compute_outputs(adapter_cls: type[Adapter], model: str, device: str, variant: str,
                    precision: str = "fp32") -> dict[str, np.ndarray]:
    """Everything the checks compare, as a flat dict of "check/tensor" -> array (workers save
    it as .npz). Weights and batches are random and non-zero, so no layout mistake hides."""
    params = init_params(model, PARITY_SEED)
    batches = parity_batches(TRAIN_STEPS)
    images, labels = batches[0]
    outputs = {}
    for name, config in TRAINING_CONFIGS.items():
        adapter = adapter_cls(model, device, variant, dataclasses.replace(config, precision=precision))
        adapter.set_params(params)
        if not outputs:  # the untrained checks need only one adapter
            outputs.update({f"round trip/{key}": value for key, value in adapter.get_params().items()})
            outputs["forward/logits"] = adapter.logits(images)
            loss, grads = adapter.loss_and_grads(images, labels)
            outputs["loss/loss"] = np.float32(loss)
            outputs.update({f"gradients/{key}": value for key, value in grads.items()})
        losses = [adapter.train_step(x, y) for x, y in batches]
        adapter.synchronize()
        outputs[f"training losses/{name}"] = adapter.losses_to_numpy(losses)
        outputs.update({f"trained weights/{name}: {key}": value for key, value in adapter.get_params().items()})
    return outputs


def compare(outputs: dict[str, dict[str, np.ndarray]], model: str = "lenet") -> pd.DataFrame:
    """One row per (pair, check, tensor): its relative error, tolerance and verdict. The round
    trip is checked per framework against the weights it was given."""
    rows = []
    reference = init_params(model, PARITY_SEED)
    for name, result in outputs.items():
        for key, value in reference.items():
            error = float(np.max(np.abs(result[f"round trip/{key}"] - value)))
            rows.append({"pair": f"{name} vs canonical", "check": "round trip", "tensor": key, "error": error})
    for (name_a, a), (name_b, b) in itertools.combinations(outputs.items(), 2):
        for key in a:
            check, tensor = key.split("/", 1)
            if check != "round trip":
                rows.append({"pair": f"{name_a} vs {name_b}", "check": check, "tensor": tensor,
                             "error": relative_error(a[key], b[key])})
    table = pd.DataFrame(rows, columns=["pair", "check", "tensor", "error"])
    table["tolerance"] = table["check"].map(TOLERANCES)
    table["passed"] = table["error"] <= table["tolerance"]
    return table


def worst_by_check(table: pd.DataFrame) -> pd.DataFrame:
    """The largest error of each check for each pair: the table users read."""
    worst = table.loc[table.groupby(["pair", "check"], sort=False)["error"].idxmax()]
    return worst.reset_index(drop=True)


# --- Running the checks in worker processes ------------------------------------------------------


@dataclass(frozen=True)
class ParityOutcome:
    table: pd.DataFrame | None  # every comparison; None when fewer than one framework produced outputs
    unusable: dict[str, dict]  # framework -> the status and reason its benchmark rows will carry

    @property
    def passed(self) -> bool:
        return self.table is not None and bool(self.table["passed"].all())


def run_parity_jobs(selection, folder: Path, console, probe_only: bool = False,
                    precision: str = "fp32") -> ParityOutcome:
    """Run the parity computation (or, with `probe_only`, only the device check) for every
    selected framework and variant, each in its own worker, and compare the outputs. The
    runner checks in fp32 whatever its own precision: TF32 changes the numerics by design."""
    from rich.markup import escape

    from benchmarks.jobs import Job
    from benchmarks.spawn import run_worker

    (folder / "logs").mkdir(parents=True, exist_ok=True)
    outputs, unusable = {}, {}
    pairs = list(dict(selection.pairs).items()) if probe_only else selection.pairs  # probe: one per framework
    for framework, variant in pairs:
        output = folder / "logs" / f"parity-{framework}-{variant}.npz"
        job = Job("probe" if probe_only else "parity", framework, variant, selection.model, selection.device,
                  PARITY_BATCH, 1, PARITY_SEED, selection.threads, precision, 0, TRAIN_STEPS, 0, 1,
                  0.0, 0.0, 0.0, "constant", "synthetic", None, None, None, output=str(output))
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
    table = compare(outputs, selection.model)
    failed = table[~table["passed"]]
    verdict = "[bold green]passed[/]" if failed.empty else f"[bold red]FAILED {len(failed)} comparisons[/]"
    console.print(f"parity across {', '.join(outputs)} on {selection.device}: {verdict}")
    for row in failed.itertuples():
        console.print(f"  {row.pair}: {row.check} {row.tensor} relative error {row.error:.2e} > {row.tolerance:.0e}")
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
    cli.console().print(cli.dataframe_to_text(worst_by_check(outcome.table)), markup=False)
    return 0 if outcome.passed else 1


if __name__ == "__main__":
    sys.exit(main())
