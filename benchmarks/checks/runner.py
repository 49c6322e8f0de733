"""Running the parity checks in worker processes, one framework variant under one tuning profile
each (a group of them for DDP): the float64 reference computed once here (or read from its cache,
`checks.reference_cache`) and its common states handed to every worker as a file, the outputs read
back and compared, the verdict printed. With both profiles every variant runs under each, named
"framework:variant [profile]", and is compared with all."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rich.markup import escape

from benchmarks.checks.compare import compare
from benchmarks.checks.definitions import PARITY_SEED, PLANS, PROOF, PrecisionView
from benchmarks.checks.outputs import reference_outputs
from benchmarks.checks.verdicts import REFERENCE, failures, outliers
from benchmarks.harness.jobs import Job, ParityFiles, Placement, Timing, Workload
from benchmarks.harness.spawn import run_side_by_side
from frameworks.base import TrainConfig

# Parity workers time nothing, so they run side by side, each on its own --threads cores: as many
# at once as the cores this process may use allow, at most four (each holds a framework and, for
# ResNet-9, hundreds of MB of outputs).
MOST_AT_ONCE = 4


def at_once(threads: int) -> int:
    return max(1, min(len(os.sched_getaffinity(0)) // threads, MOST_AT_ONCE))


def share_of_cores(workers: int) -> int:
    """Each worker's cores when `workers` run side by side on every core this process may use (at
    most MOST_AT_ONCE at a time). A compiler sizes its pool from them (inductor compiles on as many
    threads as the process has cores), so a pinned worker on one core compiles one kernel at a time."""
    return max(1, len(os.sched_getaffinity(0)) // max(1, min(workers, MOST_AT_ONCE)))


@dataclass(frozen=True)
class ParityOutcome:
    table: pd.DataFrame | None  # every comparison; None when fewer than one framework produced outputs
    unusable: dict[str, dict]  # framework -> the status and reason its benchmark rows will carry
    builds: dict[str, dict] = field(default_factory=dict)  # framework -> its build (`add_build`), for env.json

    @property
    def passed(self) -> bool:
        return self.table is not None and not failures(self.table)


def add_build(builds: dict[str, dict], job: Job, result: dict) -> None:
    """A worker's `Adapter.build_info` into `builds`, one entry per framework: its libraries as the
    first of its workers read them, its flags under each tuning profile (a profile sets some)."""
    build = dict(result.get("build") or {})
    flags = build.pop("flags", {})
    builds.setdefault(job.what.framework, {**build, "flags": {}})["flags"].setdefault(job.what.tuning, flags)


def print_verdict(console, title: str, table: pd.DataFrame) -> None:
    """One check's verdict, then each failed comparison and each tolerated outlier on its own line."""
    failed = failures(table)
    verdict = "[bold green]passed[/]" if not failed else f"[bold red]FAILED {len(failed)} comparisons[/]"
    console.print(f"{escape(title)}: {verdict}")  # names such as "jax:jit [tuned]" are not markup
    for line in failed:
        console.print(f"  {line}", markup=False)
    for line in outliers(table):
        console.print(f"  outlier (tolerated once per pair and setting): {line}", markup=False)


def run_parity_jobs(selection, folder: Path, console, probe_only: bool = False, precision: str = "fp32",
                    on_table: Callable[[pd.DataFrame], None] = lambda table: None,
                    scratch: Path | None = None) -> ParityOutcome:
    """Run the parity computation (or, with `probe_only`, only the device check) for every
    selected model, framework and variant, each in its own worker, and compare the outputs;
    `on_table(table)` with each model's comparisons as soon as they are made. Each worker's log is
    kept in folder/logs; the outputs they hand over (hundreds of MB) go to `scratch` (folder/logs
    by default), each deleted once compared. The runner checks in fp32 whatever its own precision:
    TF32 changes the numerics by design."""
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    if probe_only:  # one worker per framework and profile, on the first model
        probes = [(framework, selection.name(framework, variant, profile),
                   _parity_job("probe", selection, selection.models[0], framework, variant, precision, profile),
                   folder / "logs" / f"probe-{framework}-{profile}.log")
                  for framework, variant in dict(selection.pairs).items() for profile in selection.profiles]
        results = _side_by_side([job for _, _, job, _ in probes], [log for *_, log in probes], selection.job_timeout,
                                console, "probing each framework")
        unusable, builds = {}, {}
        for (framework, name, job, _), result in zip(probes, results):
            if result["status"] != "ok":
                console.print(f"[bold red]{escape(name)}: {result['status']}: {escape(str(result['error']))}[/]")
                unusable.setdefault(framework, {"status": result["status"], "error": result["error"]})
            else:
                add_build(builds, job, result)
        return ParityOutcome(None, unusable, builds)
    # Every model's workers share one pool, so a slow worker of one model overlaps the others'
    # instead of leaving its model's last slot alone; each model's table is compared as soon as its
    # own workers have all ended, and its outputs deleted.
    # The largest model's workers start first (the longest first), so the short ones fill in at the end.
    checks = sorted((_ModelParity(selection, model, folder / "logs", scratch or folder / "logs", console, precision)
                     for model in selection.models),
                    key=lambda check: -check.size)
    runs = [(check, run) for check in checks for run in check.runs]
    tables, unusable, builds = [], {}, {}

    def ended(index: int, result: dict) -> None:
        check, run = runs[index]
        check.ended(run, result, unusable)
        if result["status"] == "ok":
            add_build(builds, run.job, result)
        if check.done:
            table = check.compare()
            if table is not None:
                tables.append(table)
                on_table(table)

    _side_by_side([run.job for _, run in runs], [run.log for _, run in runs], selection.job_timeout, console,
                  f"parity checks: {', '.join(selection.models)}", ended)
    tables.sort(key=lambda table: selection.models.index(table["model"].iloc[0]))
    return ParityOutcome(pd.concat(tables, ignore_index=True) if tables else None, unusable, builds)


def _side_by_side(jobs: list[Job], log_paths: list[Path], timeout: float, console, title: str,
                  on_result: Callable[[int, dict], None] = lambda index, result: None) -> list[dict]:
    """Every job's result, in order, the jobs run side by side (see `at_once`, `run_side_by_side`);
    `on_result(i, result)` as each ends."""
    results: dict[int, dict] = {}
    count = at_once(jobs[0].placement.threads) if jobs else 1
    with console.status(escape(f"{title}: {len(jobs)} workers, {count} at a time")) as status:
        def ended(index: int, result: dict) -> None:
            results[index] = result
            status.update(escape(f"{title}: {len(results)} of {len(jobs)} workers done, {count} at a time"))
            on_result(index, result)
        run_side_by_side(jobs, log_paths, timeout, count, ended)
    return [results[index] for index in range(len(jobs))]


def _parity_job(kind: str, selection, model: str, framework: str, variant: str, precision: str, profile: str,
                files: ParityFiles | None = None, devices: int = 1) -> Job:
    plan = PLANS[model]
    return Job(kind=kind, what=Workload(framework, variant, model, plan.batch_size, profile),
               training=TrainConfig(precision=precision), timing=Timing(steps=plan.steps, warmup_steps=0, window=1),
               # each process of a data-parallel group on a core of its own
               placement=Placement(device=selection.device, threads=max(selection.threads, devices), devices=devices),
               seed=PARITY_SEED, files=files)


@dataclass(frozen=True)
class _Run:
    framework: str
    name: str  # "framework:variant", with " [profile]" when both profiles run
    job: Job
    log: Path
    output: Path


class _ModelParity:
    """One model's checks: the float64 reference computed once, here (or read from its cache), and
    its common states handed to every worker as a file; each variant's outputs read back lazily,
    compared, then deleted (they are large). Workers' logs go to `logs`, the files they exchange to
    `scratch`."""

    def __init__(self, selection, model: str, logs: Path, scratch: Path, console, precision: str):
        self.model, self.console, self.device = model, console, selection.device
        self.precisions = list(dict.fromkeys((precision, PROOF)))
        self.reference_file = scratch / f"parity-{model}-reference.npz"
        with console.status(f"float64 reference: {model}"):
            self.references = {each: reference_outputs.__wrapped__(model, each) for each in self.precisions}  # not kept
            # a worker reads the common states alone, in its job's precision (they are the same in each)
            np.savez(self.reference_file, **{f"{precision}/{name}": value
                                             for name, value in self.references[precision].items()
                                             if name.startswith("state|")})
        self.runs = []
        for (framework, variant), profile in itertools.product(selection.pairs, selection.profiles):
            stem = f"parity-{model}-{framework}-{variant}-{profile}"
            output = scratch / f"{stem}.npz"
            job = _parity_job("parity", selection, model, framework, variant, precision, profile,
                              ParityFiles(output=str(output), reference=str(self.reference_file)))
            self.runs.append(_Run(framework, selection.name(framework, variant, profile), job, logs / f"{stem}.log",
                                  output))
        self.files: dict[str, Path] = {}
        self.waiting = len(self.runs)

    @property
    def size(self) -> int:
        """Bytes of the float64 reference's outputs: the model's weights, gradients and steps, a
        measure of what each of its workers computes."""
        return sum(array.nbytes for arrays in self.references.values() for array in arrays.values())

    @property
    def done(self) -> bool:
        return self.waiting == 0

    def ended(self, run: _Run, result: dict, unusable: dict) -> None:
        self.waiting -= 1
        if result["status"] != "ok":
            self.console.print(f"[bold red]{escape(run.name)}: {result['status']}: {escape(str(result['error']))}[/] "
                               f"(its log: {escape(str(run.log))})")
            unusable.setdefault(run.framework, {"status": result["status"], "error": result["error"]})
        else:
            self.files[run.name] = run.output

    def compare(self) -> pd.DataFrame | None:
        """The model's table once every worker has ended (None when none produced outputs)."""
        self.reference_file.unlink()
        if not self.files:
            return None
        # in the selection's order, whichever worker ended first: the pairs' names follow it
        order = [run.name for run in self.runs if run.name in self.files]
        opened = {name: np.load(self.files[name]) for name in order}
        try:
            table = pd.concat([compare({**{name: PrecisionView(arrays, each) for name, arrays in opened.items()},
                                        REFERENCE: self.references[each]}, self.model, each, self.device)
                               for each in self.precisions], ignore_index=True)
        finally:
            for arrays in opened.values():
                arrays.close()
            for path in self.files.values():
                path.unlink()
        table.insert(0, "model", self.model)
        print_verdict(self.console, f"parity of {self.model} across {', '.join(order)} and the float64 "
                                    f"reference on {self.device} ({' and '.join(self.precisions)})", table)
        return table


def run_data_parallel_parity(selection, devices: int, folder: Path, console,
                             scratch: Path | None = None) -> ParityOutcome:
    """The data-parallel check of every selected model and variant: one group of workers each
    trains on `devices` devices and, for comparison, on one; the float32 tables of every pair
    (`framework:variant xN` for N devices) and against the float64 reference. A variant that does
    not train on several devices here (skipped) is named, not counted as unusable. Logs and
    outputs go where `run_parity_jobs` puts them."""
    logs = folder / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    scratch = scratch or logs
    tables, unusable = [], {}
    for model in selection.models:
        reference_file = scratch / f"parallel-parity-{model}-reference.npz"
        with console.status(f"float64 reference: {model}"):
            np.savez(reference_file, **{f"fp32/{name}": value for name, value in reference_outputs(model).items()
                                        if name.startswith("state|")})
        outputs, opened = {}, []
        runs = []  # (framework, its name in the tables, its files' stem, job)
        for (framework, variant), profile in itertools.product(selection.pairs, selection.profiles):
            name = f"parallel-parity-{model}-{framework}-{variant}-{profile}-x{devices}"
            runs.append((framework, selection.name(framework, variant, profile), name,
                         _parity_job("parallel parity", selection, model, framework, variant, "fp32", profile,
                                     ParityFiles(output=str(scratch / f"{name}.npz"), reference=str(reference_file)),
                                     devices)))
        results = _side_by_side([job for *_, job in runs], [logs / f"{name}.log" for _, _, name, _ in runs],
                                selection.job_timeout, console,
                                f"data-parallel parity checks: {model} on {devices} devices")
        for (framework, label, name, _), result in zip(runs, results):
            if result["status"] == "skipped":
                console.print(f"[yellow]{escape(label)} on {devices} devices: {escape(str(result['error']))}[/]")
            elif result["status"] != "ok":
                console.print(f"[bold red]{escape(label)} on {devices} devices: {result['status']}: "
                              f"{escape(str(result['error']))}[/] (its log: {escape(str(logs / f'{name}.log'))})")
                unusable.setdefault(framework, {"status": result["status"], "error": result["error"]})
            else:
                arrays = np.load(scratch / f"{name}.npz")
                opened.append((arrays, scratch / f"{name}.npz"))
                outputs[f"{label} x{devices}"] = PrecisionView(arrays, "parallel")
                outputs[label] = PrecisionView(arrays, "single")
        reference_file.unlink()
        try:
            if outputs:
                table = compare({**outputs, REFERENCE: reference_outputs(model)}, model, device=selection.device)
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


