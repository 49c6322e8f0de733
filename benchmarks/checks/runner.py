"""Running the parity checks in worker processes, one framework variant under one tuning profile
each (a group of them for DDP): the float64 reference computed once here and handed to every
worker as a file, the outputs read back and compared, the verdict printed. With both profiles
every variant runs under each, named "framework:variant [profile]", and is compared with all."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.markup import escape

from benchmarks.checks.compare import compare
from benchmarks.checks.definitions import PARITY_SEED, PLANS, PROOF, PrecisionView
from benchmarks.checks.verdicts import REFERENCE, failures, outliers
from benchmarks.checks.outputs import reference_outputs
from benchmarks.harness.jobs import Job, ParityFiles, Placement, Timing, Workload
from benchmarks.harness.spawn import run_worker
from frameworks.base import TrainConfig

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
    console.print(f"{escape(title)}: {verdict}")  # names such as "jax:jit [tuned]" are not markup
    for line in failed:
        console.print(f"  {line}", markup=False)
    for line in outliers(table):
        console.print(f"  outlier (tolerated once per pair and setting): {line}", markup=False)


def run_parity_jobs(selection, folder: Path, console, probe_only: bool = False,
                    precision: str = "fp32") -> ParityOutcome:
    """Run the parity computation (or, with `probe_only`, only the device check) for every
    selected model, framework and variant, each in its own worker, and compare the outputs. The
    runner checks in fp32 whatever its own precision: TF32 changes the numerics by design."""
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    if probe_only:  # one worker per framework and profile, on the first model
        unusable = {}
        for framework, variant in dict(selection.pairs).items():
            for profile in selection.profiles:
                name = selection.name(framework, variant, profile)
                job = _parity_job("probe", selection, selection.models[0], framework, variant, precision, profile)
                with console.status(escape(f"probing: {name}")):
                    result = run_worker(job, folder / "logs" / f"probe-{framework}-{profile}.log",
                                        selection.job_timeout, lambda message: None)
                if result["status"] != "ok":
                    console.print(f"[bold red]{escape(name)}: {result['status']}: {escape(str(result['error']))}[/]")
                    unusable.setdefault(framework, {"status": result["status"], "error": result["error"]})
        return ParityOutcome(None, unusable)
    tables, unusable = [], {}
    for model in selection.models:
        table = _model_parity(selection, model, folder, console, precision, unusable)
        if table is not None:
            tables.append(table)
    return ParityOutcome(pd.concat(tables, ignore_index=True) if tables else None, unusable)


def _parity_job(kind: str, selection, model: str, framework: str, variant: str, precision: str, profile: str,
                files: ParityFiles | None = None, devices: int = 1) -> Job:
    plan = PLANS[model]
    return Job(kind=kind, what=Workload(framework, variant, model, plan.batch_size, profile),
               training=TrainConfig(precision=precision), timing=Timing(steps=plan.steps, warmup_steps=0, window=1),
               placement=Placement(device=selection.device, threads=selection.threads, devices=devices),
               seed=PARITY_SEED, files=files)


def _model_parity(selection, model: str, folder: Path, console, precision: str, unusable: dict) -> pd.DataFrame | None:
    """One model's checks: the float64 reference computed once, here, and handed to every worker
    as a file; each variant's outputs read back lazily, compared, then deleted (they are large)."""
    precisions = list(dict.fromkeys((precision, PROOF)))
    logs = folder / "logs"
    reference_file = logs / f"parity-{model}-reference.npz"
    with console.status(f"float64 reference: {model}"):
        references = {each: reference_outputs.__wrapped__(model, each) for each in precisions}  # not kept
        np.savez(reference_file, **{f"{each}/{name}": value for each, arrays in references.items()
                                    for name, value in arrays.items()})
    files = {}
    for (framework, variant), profile in itertools.product(selection.pairs, selection.profiles):
        name, stem = selection.name(framework, variant, profile), f"parity-{model}-{framework}-{variant}-{profile}"
        job = _parity_job("parity", selection, model, framework, variant, precision, profile,
                          ParityFiles(output=str(logs / f"{stem}.npz"), reference=str(reference_file)))
        with console.status(escape(f"parity check: {model} {name}")):
            result = run_worker(job, logs / f"{stem}.log", selection.job_timeout, lambda message: None)
        if result["status"] != "ok":
            console.print(f"[bold red]{escape(name)}: {result['status']}: {escape(str(result['error']))}[/]")
            unusable.setdefault(framework, {"status": result["status"], "error": result["error"]})
        else:
            files[name] = logs / f"{stem}.npz"
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
    logs = folder / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    tables, unusable = [], {}
    for model in selection.models:
        reference_file = logs / f"parallel-parity-{model}-reference.npz"
        with console.status(f"float64 reference: {model}"):
            np.savez(reference_file, **{f"fp32/{name}": value for name, value in reference_outputs(model).items()
                                        if name.startswith("state|")})
        outputs, opened = {}, []
        for (framework, variant), profile in itertools.product(selection.pairs, selection.profiles):
            label = selection.name(framework, variant, profile)
            name = f"parallel-parity-{model}-{framework}-{variant}-{profile}-x{devices}"
            job = _parity_job("parallel parity", selection, model, framework, variant, "fp32", profile,
                              ParityFiles(output=str(logs / f"{name}.npz"), reference=str(reference_file)), devices)
            with console.status(escape(f"data-parallel parity check: {model} {label} on {devices} devices")):
                result = run_worker(job, logs / f"{name}.log", selection.job_timeout, lambda message: None)
            if result["status"] == "skipped":
                console.print(f"[yellow]{escape(label)} on {devices} devices: {escape(str(result['error']))}[/]")
            elif result["status"] != "ok":
                console.print(f"[bold red]{escape(label)} on {devices} devices: {result['status']}: "
                              f"{escape(str(result['error']))}[/]")
                unusable.setdefault(framework, {"status": result["status"], "error": result["error"]})
            else:
                arrays = np.load(logs / f"{name}.npz")
                opened.append((arrays, logs / f"{name}.npz"))
                outputs[f"{label} x{devices}"] = PrecisionView(arrays, "parallel")
                outputs[label] = PrecisionView(arrays, "single")
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


