"""The parent's side of the result tables: each job's rows appended as its worker streams them
(`JobRecorder`), and what resuming a run folder needs (its plan, the attempts a killed runner left
open, what a resumed run keeps and reruns)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.harness.efficiency import efficiency
from benchmarks.harness.jobs import Job
from benchmarks.harness.results import append_rows, read_table
from benchmarks.harness.rows import EvaluationRow, Identity, ProfileRow, SummaryRow, WindowRow, assemble


class JobRecorder:
    """Appends one job's timed windows and evaluations to the tables as they arrive (an interrupted
    job keeps what it measured) and its summary row when it ends. Rows come from the worker as
    dicts and become typed rows here: a field the table lacks is an error (rows.UnknownColumn).
    Each evaluation's per-image predictions go to `predictions_path`, rewritten whole after each."""

    def __init__(self, run_dir: Path, run_id: str, job: Job, attempt: int, peak_gflops: float | None = None):
        self.run_dir, self.job, self.peak_gflops = run_dir, job, peak_gflops
        what = job.what
        self.identity = Identity(run_id=run_id, job_id=job.job_id, framework=what.framework, variant=what.variant,
                                 tuning=what.tuning, model=what.model, device=job.placement.device,
                                 precision=job.training.precision, batch_size=what.batch_size, devices=job.replicas,
                                 seed=job.seed, repeat=job.repeat, attempt=attempt)
        self.profile: dict | None = None
        self.evaluated_steps: list[int] = []
        self.predictions: list[np.ndarray] = []

    def on_message(self, message: dict) -> None:
        if message["type"] == "epoch":
            append_rows(self.run_dir, "epochs", [assemble(EvaluationRow, self.identity, message["row"])])
        elif message["type"] == "window":
            append_rows(self.run_dir, "steps", [assemble(WindowRow, self.identity, message["row"])])
        elif message["type"] == "predictions":
            self._keep_predictions(message)
        elif message["type"] == "profile":
            self.profile = message

    @property
    def predictions_path(self) -> Path:
        return self.run_dir / "predictions" / f"{self.job.job_id}-a{self.identity.attempt}.npz"

    def _keep_predictions(self, message: dict) -> None:
        """Every evaluation's predictions so far, as arrays: `steps` (int64, E: each evaluation's step, as
        epochs.csv's `step`), `predictions` (uint8, E x evaluated: each test image's predicted class, in test-set
        order) and `labels` (uint8, evaluated). Written beside the file and renamed over it, so a job stopped at
        any moment leaves the file of its last evaluation whole."""
        self.evaluated_steps.append(message["step"])
        self.predictions.append(np.asarray(message["predictions"], np.uint8))
        path = self.predictions_path
        path.parent.mkdir(exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        with open(partial, "wb") as f:
            np.savez(f, steps=np.asarray(self.evaluated_steps, np.int64), predictions=np.stack(self.predictions),
                     labels=np.asarray(message["labels"], np.uint8))
            f.flush()
            os.fsync(f.fileno())
        partial.replace(path)

    def interrupted(self, error: str) -> SummaryRow:
        """The summary row of a job stopped part-way, counting its windows in steps.csv. They are
        counted there, not as they arrive: Ctrl-C can land between a row's write and any count."""
        steps = read_table(self.run_dir, "steps")
        windows = int((steps["job_id"].eq(self.job.job_id) & steps["attempt"].eq(self.identity.attempt)).sum())
        return self.finish({"status": "interrupted", "error": error, "windows": windows})

    def finish(self, result: dict) -> SummaryRow:
        """The job's summary row, appended: its identity and plan, then the worker's result (which
        knows the threads it applied), the efficiency of its median step, and why a profile failed."""
        job = self.job
        planned = {"threads": job.placement.threads, "global_batch": job.global_batch, "nodes": job.placement.nodes,
                   "data": job.data.name, "augment": job.data.augment}
        row = assemble(SummaryRow, self.identity, planned, result,
                       efficiency(job.what.model, job.global_batch, result.get("step_ms_median"), job.placement.device,
                                  job.replicas, self.peak_gflops),
                       {"profile_error": self.profile.get("error")} if self.profile else {})
        append_rows(self.run_dir, "summary", [row])
        if self.profile:
            self._keep_profile()
        return row

    def _keep_profile(self) -> None:
        """The worker's traces moved to profiles/<job_id>/ (a resumed attempt's replace an earlier
        one's) and its op rows appended to profile.csv."""
        target = self.run_dir / "profiles" / self.job.job_id
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(exist_ok=True)
        shutil.move(self.profile["folder"], target)
        append_rows(self.run_dir, "profile", [assemble(ProfileRow, self.identity, op) for op in self.profile["rows"]])


# --- Resuming a run -------------------------------------------------------------------------------


def load_plan(run_dir: Path) -> tuple[dict, list[Job]]:
    """A run folder's plan and its jobs; ValueError when plan.json is not one this version wrote."""
    plan = json.loads((run_dir / "plan.json").read_text())
    try:
        return plan, [Job.from_dict(job) for job in plan["jobs"]]
    except (KeyError, TypeError) as error:
        raise ValueError(f"{run_dir / 'plan.json'} describes its jobs in an older form ({type(error).__name__}: "
                         f"{error}); rerun the command in its env.json instead") from None


def close_killed_attempts(run_dir: Path, jobs: list[Job]) -> int:
    """Give every attempt that streamed windows or evaluations but has no summary row (the runner
    was killed while it ran) an "interrupted" row counting its windows, so that its rows are
    accounted for and never read as a finished job's; the next attempt's number."""
    summary, steps = read_table(run_dir, "summary"), read_table(run_dir, "steps")
    streamed = pd.concat([steps[["job_id", "attempt"]], read_table(run_dir, "epochs")[["job_id", "attempt"]]])
    recorded = pd.concat([summary[["job_id", "attempt"]], streamed])
    if recorded.empty:
        return 1
    closed = set(summary[["job_id", "attempt"]].itertuples(index=False, name=None))
    by_id = {job.job_id: job for job in jobs}
    for job_id, attempt in sorted(set(streamed.itertuples(index=False, name=None)) - closed):
        JobRecorder(run_dir, run_dir.name, by_id[job_id], int(attempt)).interrupted(
            "the runner was stopped before the job ended")
    return int(recorded["attempt"].max()) + 1


def resume_note(summary: pd.DataFrame, steps: pd.DataFrame, pending: list[Job]) -> str:
    """What a resumed run keeps and reruns: finished jobs are kept, interrupted ones rerun from
    the start while their earlier windows stay in steps.csv under their attempt."""
    finished = int(summary["status"].eq("ok").sum())
    interrupted = summary[summary["status"].eq("interrupted") & summary["job_id"].isin([job.job_id for job in pending])]
    others = len(pending) - len(interrupted)
    kept = steps.merge(interrupted[["job_id", "attempt"]], on=["job_id", "attempt"])
    attempts = ", ".join(str(attempt) for attempt in sorted(interrupted["attempt"].astype(int).unique()))
    parts = [f"{finished} job{'s' * (finished != 1)} finished"]
    if len(interrupted):
        parts.append(f"{len(interrupted)} interrupted job{'s' * (len(interrupted) != 1)} rerun from the start (their "
                     f"earlier {len(kept)} window{'s' * (len(kept) != 1)} are kept as attempt {attempts})")
    if others:
        parts.append(f"{others} failed or not started job{'s' * (others != 1)} run")
    return "resuming: " + ", ".join(parts)
