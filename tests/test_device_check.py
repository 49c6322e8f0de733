"""The GPU device check (`python -m benchmarks.device_check`): its GPU plan names every step with
its command and fits its budget where a GPU reference needs it, so the plan cannot rot on machines
without a GPU; its limits can be set from an earlier check's summary; a step stopped at any stage of
its writing is summarised from what it left, and the final table and bundle still come out; bad
input is one line and exit status 2; and the dry run on the CPU runs every step to the end and
returns a bundle a device machine can hand back, from which the README's tables of a GPU reference
are generated, and whose env.json holds each GPU's fields where nvidia-smi is present."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pandas as pd
import pytest

from benchmarks import cli, device_check, run
from benchmarks.device_check import Machine, Step, plan
from benchmarks.harness.results import append_rows
from frameworks import REGISTRY
from frameworks.tuning import DEFAULT_PROFILE
from report import readme
from tests.conftest import ROOT
from tests.test_environment import H100, H100_FIELDS, fake_nvidia_smi, without_nvidia_smi

RECIPE = ["-m benchmarks.run", "--device cuda", "--recipe resnet9-94", "--target-accuracy 0.94",
          "--data cifar10 --data-dir /data", "--no-parity"]
# Every step the check must run on a GPU, in priority order, with what its command must say.
GPU_STEPS = {
    "parity-fp32": ["-m benchmarks.parity", "--device cuda", "--variant all", "--model lenet,resnet9",
                    "--precision fp32"],
    "parity-bf16": ["-m benchmarks.parity", "--device cuda", "--variant all", "--model lenet,resnet9",
                    "--precision bf16"],
    "recipe-bf16-pytorch": [*RECIPE, "--framework pytorch ", "--precision bf16"],
    "recipe-bf16-jax": [*RECIPE, "--framework jax ", "--precision bf16"],
    "timing": ["-m benchmarks.run", "--device cuda", "--framework pytorch,jax,", "--variant default",
               "--model lenet,resnet9", "--repeats 3", "--interleave repeats", "--no-parity"],
    "recipe-fp32-pytorch": [*RECIPE, "--framework pytorch ", "--precision fp32"],
    "recipe-fp32-jax": [*RECIPE, "--framework jax ", "--precision fp32"],
    "parity-tf32": ["-m benchmarks.parity", "--device cuda", "--variant all", "--model lenet,resnet9",
                    "--precision tf32"],
    "devices-2": ["-m benchmarks.run", "--device cuda", "--framework all", "--devices 2", "resnet9"],
    "profile": ["-m benchmarks.run", "--device cuda", "--framework all", "--profile", "--model resnet9"],
    # time to 94% over three seeds, PyTorch and JAX first, then every other framework: the Keras backends
    **{f"seeds-{framework}": [*RECIPE, f"--framework {framework} ", "--precision bf16", "--seeds 3"]
       for framework in dict.fromkeys(["pytorch", "jax", *REGISTRY])},
}
REFERENCE = ["parity-fp32", "parity-bf16", "recipe-bf16-pytorch", "recipe-bf16-jax", "timing"]  # what it needs


def planned_jobs(step: Step) -> list:
    """The jobs a run step's command plans, as benchmarks.run plans them (nothing is run)."""
    parser = run.build_parser()
    args = run.parse_arguments(parser, list(step.options))
    return run.plan_jobs(args, cli.selection_from_args(parser, args), "synthetic", None)


def test_the_gpu_plan_runs_every_step_in_priority_order_with_its_command():
    steps = plan(Machine(dry_run=False, gpus=2, data_dir=Path("/data")))
    assert [step.name for step in steps] == list(GPU_STEPS)
    for step in steps:
        assert step.skip is None and step.limit_s > 0
        missing = [part for part in GPU_STEPS[step.name] if part not in f"python {step.command} "]
        assert not missing, f"{step.name}: {step.command} lacks {missing}"
    assert sum(step.limit_s for step in steps if step.name in REFERENCE) <= device_check.BUDGET_S


def test_the_timing_step_plans_six_jobs_a_framework_whole_ones_first_in_priority_order():
    """Each framework's default variant and profile, on LeNet then ResNet-9, 3 repeats: every job pays its
    start before its first timed window, so the step plans few; the repeats of one job take turns
    with each other alone, so a step stopped at its limit keeps every job that came before."""
    timing = next(step for step in plan(Machine(dry_run=False, gpus=1, data_dir=None)) if step.name == "timing")
    jobs = planned_jobs(timing)
    frameworks = list(dict.fromkeys(job.what.framework for job in jobs))
    assert frameworks[:2] == ["pytorch", "jax"] and len(jobs) == 6 * len(frameworks)
    assert {job.what.tuning for job in jobs} == {DEFAULT_PROFILE}
    assert [job.what.model for job in jobs] == ["lenet"] * (len(jobs) // 2) + ["resnet9"] * (len(jobs) // 2)
    groups = run.turn_groups(jobs, "repeats")
    assert [len(group) for group in groups] == [3] * (len(jobs) // 3)
    assert [group[0].what.framework for group in groups[:2]] == ["pytorch", "jax"]


def test_the_seeds_steps_plan_each_seed_of_one_framework_after_the_other():
    """Each seed its own turn group, in order: a step stopped at its limit keeps the seeds before."""
    seeds = next(step for step in plan(Machine(dry_run=False, gpus=1, data_dir=Path("/data")))
                 if step.name == "seeds-jax")
    jobs = planned_jobs(seeds)
    assert [(job.what.framework, job.what.model, job.seed, job.repeat) for job in jobs] == [
        ("jax", "resnet9", seed, 1) for seed in range(3)]
    assert [[job.seed for job in group] for group in run.turn_groups(jobs, "jobs")] == [[0], [1], [2]]


def test_on_one_gpu_without_data_the_plan_says_why_it_skips_steps():
    steps = {step.name: step for step in plan(Machine(dry_run=False, gpus=1, data_dir=None))}
    recipes = [name for name in steps if name.startswith(("recipe-", "seeds-"))]
    assert len(recipes) == 4 + len(REGISTRY)
    assert {steps[name].skip for name in recipes} == {"no CIFAR-10 copy (give --data-dir)"}
    assert steps["devices-2"].skip == "1 GPU listed by nvidia-smi -L, 2 needed"
    with_data = {step.name: step for step in plan(Machine(dry_run=False, gpus=1, data_dir=Path("/data"),
                                                          absent=("jax",)))}
    assert with_data["recipe-bf16-jax"].skip == with_data["recipe-fp32-jax"].skip == "jax is not installed"
    assert with_data["recipe-bf16-pytorch"].skip is None


def test_time_a_step_leaves_unused_goes_to_the_next_while_the_later_limits_still_fit(tmp_path, monkeypatch):
    given, saved = [], []

    def instant(step, folder, limit_s, env, stopping):  # every step ends at once, leaving its limit unused
        given.append(limit_s)
        return "ok"
    monkeypatch.setattr(device_check, "execute", instant)
    steps = [Step(name, "benchmarks.run", (), limit, skip)
             for name, limit, skip in [("a", 10, None), ("b", 20, None), ("skipped", 40, "why"), ("c", 30, None)]]
    outcomes = device_check.run_check(steps, tmp_path, budget_s=100, absent=[], env={},
                                      after_each=lambda outcomes: saved.append([each.step for each in outcomes]))
    # a: 100 s left, 50 promised to b and c: it gets 50; b: ~100 left, 30 promised to c: ~70; c: ~100
    assert given == pytest.approx([50, 70, 100], abs=1)
    assert [outcome.limit_s for outcome in outcomes if outcome.limit_s] == pytest.approx([50, 70, 100], abs=1)
    assert outcomes[2].status == "skipped: why" and outcomes[2].limit_s is None
    assert saved == [["a"], ["a", "b"], ["a", "b", "skipped", "c"]], "what each step found is saved as it ends"
    assert [outcome.frameworks for outcome in outcomes] == ["no run folder written"] * 2 + ["", "no run folder written"]


# --- Limits -------------------------------------------------------------------------------------


def test_limits_come_from_an_earlier_checks_summary_where_it_measured_them(tmp_path):
    pd.DataFrame([("parity-fp32", "ok", 120, 77.0), ("timing", "timeout", 110, 110.4),
                  ("recipe-bf16-jax", "failed (exit 1)", 60, 41.0), ("parity-bf16", "failed (exit 3)", 75, 3.0),
                  ("profile", "not started: out of time", None, None), ("recipe-bf16", "ok", 120, 80.0)],
                 columns=["step", "status", "limit_s", "seconds"]).to_csv(tmp_path / "summary.csv", index=False)
    limits, note = device_check.limits_from(tmp_path / "summary.csv", device_check.GPU.limits)
    # 1.25 x 77 s and 1.25 x 41 s, rounded up to 5 s; 1.5 x the 110 s the timing step was stopped at
    assert limits == {"parity-fp32": 100, "timing": 165, "recipe-bf16-jax": 55}
    assert "parity-fp32, recipe-bf16-jax" in note and "timing, stopped at it" in note
    steps = {step.name: step for step in plan(Machine(dry_run=False, gpus=1, data_dir=Path("/data")), limits)}
    assert steps["timing"].limit_s == 165 and steps["parity-bf16"].limit_s == device_check.GPU.limits["parity-bf16"]


@pytest.mark.parametrize("argv, message", [
    (["--dry-run", "--budget-s", "-5"], "argument --budget-s: '-5' must be 0 or more seconds"),
    (["--dry-run", "--limits-from", "absent.csv"], "argument --limits-from: absent.csv: [Errno 2] No such file"),
    (["--dry-run", "--limits-from", "pyproject.toml"], "argument --limits-from: pyproject.toml: "),
    (["--dry-run", "--limits-from", "results/reference/summary.csv"],
     "argument --limits-from: results/reference/summary.csv: it has no limit_s, seconds, step column: not a device "
     "check's summary.csv"),
    (["--dry-run", "--jax-cache", "pyproject.toml"], "argument --jax-cache: "),
], ids=["negative budget", "no such summary", "not a table", "a run's summary", "cache is a file"])
def test_bad_input_exits_2_in_one_line(argv, message, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as exit_info:
        device_check.main([*argv, "--out", str(tmp_path / "check")])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"python -m benchmarks.device_check: error: {message}"), last
    assert not (tmp_path / "check").exists(), "bad input leaves nothing behind"


# --- A step stopped at any stage ----------------------------------------------------------------


def stopped_check(tmp_path: Path, monkeypatch, leave, absent=(), extra=()) -> tuple[int, pd.DataFrame, list[str]]:
    """The dry run, in this process, each step replaced by `leave(step, folder)`, which leaves what a
    step stopped at some stage would have left; each ends as stopped at its limit. The exit status,
    the summary and the bundle's names."""
    def stopped(step, folder, limit_s, env, stopping):
        folder.mkdir()
        (folder / "console.log").write_text(f"{step.command}\n")
        leave(step, folder)
        return "timeout"
    monkeypatch.setattr(device_check, "execute", stopped)
    monkeypatch.setattr(device_check, "not_installed", lambda: list(absent))
    out, archive = tmp_path / "check", tmp_path / "check.tar.gz"
    code = device_check.main(["--dry-run", "--out", str(out), "--bundle", str(archive), *extra])
    with tarfile.open(archive) as bundle:
        names = bundle.getnames()
    return code, pd.read_csv(out / "summary.csv", keep_default_na=False), names


def run_folder(folder: Path) -> Path:
    (folder / "20261207-120000").mkdir()
    return folder / "20261207-120000"


def env_json(step: Step, folder: Path) -> Path:
    run_dir = run_folder(folder)
    (run_dir / "env.json").write_text(json.dumps({"schema": 6, "data": "synthetic"}))
    return run_dir


def plan_json(step: Step, folder: Path) -> Path:
    run_dir = env_json(step, folder)
    jobs = [job.to_dict() for job in planned_jobs(step)]
    (run_dir / "plan.json").write_text(json.dumps({"selection": {}, "parity": False, "jobs": jobs}, indent=2))
    return run_dir


def summary_rows(run_dir: Path, count: int) -> None:
    jobs = json.loads((run_dir / "plan.json").read_text())["jobs"]
    append_rows(run_dir, "summary", [{"job_id": run.Job.from_dict(job).job_id, "framework": job["what"]["framework"],
                                      "status": "ok", "windows": 2} for job in jobs[:count]])


def some_rows(step, folder):
    summary_rows(plan_json(step, folder), 1)


def every_row(step, folder):
    run_dir = plan_json(step, folder)
    summary_rows(run_dir, len(planned_jobs(step)))
    (run_dir / "report.md").write_text("# Report\n")


def row_cut_off(step, folder):
    """The first job's row cut off before its status, as a kill halfway through its write would leave it."""
    run_dir = plan_json(step, folder)
    summary_rows(run_dir, 1)
    text = (run_dir / "summary.csv").read_text()
    header, row = text.splitlines()[:2]
    (run_dir / "summary.csv").write_text(header + "\n" + ",".join(row.split(",")[:8]))


def plan_cut_off(step, folder):
    run_dir = plan_json(step, folder)
    (run_dir / "plan.json").write_text((run_dir / "plan.json").read_text()[:300])


PARITY_COLUMNS = ["model", "precision", "pair", "check", "setting", "step", "tensor", "error", "tolerance",
                  "asserted", "passed", "outlier"]


def parity_table(passed: bool = True) -> pd.DataFrame:
    return pd.DataFrame([("lenet", "fp32", "jax:jit vs canonical", "round trip", "", "", "conv1.weight", 0.0, 0.0,
                          True, True, False),
                         ("lenet", "fp32", "jax:jit vs float64", "logits", "", "", "logits", 2e-7, 1e-5, True, passed,
                          False),
                         ("lenet", "fp32", "jax:jit vs float64", "loss", "", "", "loss", 1e-7, 1e-5, False, True,
                          False)], columns=PARITY_COLUMNS)


def whole_parity(step, folder):
    parity_table().to_csv(folder / "parity.csv", index=False)


def leave(run_stage, parity_stage):
    def write(step, folder):
        (parity_stage if step.module == "benchmarks.parity" else run_stage)(step, folder)
    return write


def jobs_of(step: Step) -> tuple[str, int]:
    jobs = planned_jobs(step)
    return jobs[0].what.framework, len(jobs)


RUN_STAGES = {  # what a run step stopped at each stage leaves, and what its summary row must say
    "before any file": (lambda step, folder: None, lambda framework, n: "no run folder written"),
    "run folder made": (lambda step, folder: run_folder(folder),
                        lambda framework, n: "stopped before its jobs were planned"),
    "after env.json": (env_json, lambda framework, n: "stopped before its jobs were planned"),
    # no summary.csv and, under --no-parity or before the parity check ended, no parity.csv either
    "after plan.json": (plan_json, lambda framework, n: f"{framework}: not finished x{n}"),
    "plan.json cut off": (plan_cut_off, lambda framework, n: "plan.json unreadable (JSONDecodeError: "),
    "after a summary row": (some_rows, lambda framework, n: f"{framework}: ok x1"
                            + (f", not finished x{n - 1}" if n > 1 else "")),
    "a summary row cut off": (row_cut_off, lambda framework, n: f"{framework}: not finished x{n}"),
    "every row": (every_row, lambda framework, n: f"{framework}: ok x{n}"),
}


@pytest.mark.parametrize("stage", RUN_STAGES)
def test_a_run_step_stopped_at_any_stage_is_summarised_and_bundled(stage, tmp_path, monkeypatch, capsys):
    stage_writer, says = RUN_STAGES[stage]
    code, summary, names = stopped_check(tmp_path, monkeypatch, leave(stage_writer, whole_parity))
    assert code == 0
    steps = plan(Machine(dry_run=True, gpus=0, data_dir=None))
    assert list(summary["step"]) == [step.name for step in steps]
    out = capsys.readouterr().out
    assert "bundle: " in out and all(step.name in out for step in steps), "the final table is printed"
    check = tmp_path / "check"
    for step, row in zip(steps, summary.itertuples()):
        if step.skip:
            continue
        assert row.status == "timeout" and row.frameworks, row
        if step.module == "benchmarks.parity":
            assert row.frameworks == "jax: passed" and row.run_folder == step.name
            continue
        assert row.frameworks.startswith(says(*jobs_of(step))), (step.name, row.frameworks)
        assert row.run_folder == ("" if stage == "before any file" else f"{step.name}/20261207-120000")
        written = [path.relative_to(check.parent) for path in (check / step.name).rglob("*") if path.is_file()]
        assert f"check/{step.name}/console.log" in names
        assert not [path for path in written if str(path) not in names], f"{step.name}: its files come back"
    assert "check/summary.csv" in names and "check/device-check.md" in names


PARITY_STAGES = {  # what a parity step stopped at each stage leaves, and what its summary row must say
    "before any file": (lambda step, folder: None, "no comparison written", ""),
    "parity.csv empty": (lambda step, folder: (folder / "parity.csv").touch(), "no comparison written", "own"),
    "header only": (lambda step, folder: parity_table().head(0).to_csv(folder / "parity.csv", index=False),
                    "no comparison written", "own"),
    "a row cut off": (lambda step, folder: (folder / "parity.csv").write_text(
        parity_table().to_csv(index=False) + "lenet,fp32,jax:jit vs float64,grad"),
        "jax: passed (1 cut-off row left out)", "own"),
    "a comparison failed": (lambda step, folder: parity_table(passed=False).to_csv(folder / "parity.csv", index=False),
                            "jax: FAILED 1 of 2", "own"),
}


@pytest.mark.parametrize("stage", PARITY_STAGES)
def test_a_parity_step_stopped_at_any_stage_is_summarised_and_bundled(stage, tmp_path, monkeypatch):
    stage_writer, says, folder = PARITY_STAGES[stage]
    code, summary, names = stopped_check(tmp_path, monkeypatch, leave(every_row, stage_writer), absent=("tensorflow",))
    assert code == 0
    rows = summary.set_index("step")
    for name in ["parity-fp32", "parity-bf16"]:
        assert rows.loc[name, "frameworks"] == f"{says}; tensorflow: not installed"
        assert rows.loc[name, "run_folder"] == (name if folder == "own" else "")
        assert (f"check/{name}/parity.csv" in names) == (folder == "own")
    assert rows.loc["timing", "frameworks"] == "jax: ok x2" and "check/summary.csv" in names


def test_a_ctrl_c_while_the_bundle_is_written_ends_the_check_with_every_table_whole(tmp_path, monkeypatch):
    """The Ctrl-C is acted on once the bundle is whole: no later step starts, and the final summary
    and bundle say so (exit status 130)."""
    add, sent, before = tarfile.TarFile.add, [], signal.getsignal(signal.SIGINT)

    def add_and_ctrl_c(self, *args, **kwargs):
        if not sent:
            sent.append(os.kill(os.getpid(), signal.SIGINT))
        return add(self, *args, **kwargs)
    monkeypatch.setattr(tarfile.TarFile, "add", add_and_ctrl_c)
    code, summary, names = stopped_check(tmp_path, monkeypatch, leave(every_row, whole_parity))
    assert code == 130 and sent
    statuses = list(summary["status"])
    assert statuses[0] == "timeout"
    assert set(statuses[1:]) == {"not started: interrupted", "skipped: tf32 is fp32 on a CPU (no TF32 units): "
                                                             "parity-fp32 covers it"}
    with tarfile.open(tmp_path / "check.tar.gz") as bundle:
        bundled = pd.read_csv(bundle.extractfile("check/summary.csv"), keep_default_na=False)
    assert bundled.equals(summary), "the bundle holds the final summary"
    assert "check/parity-fp32/parity.csv" in names
    assert not (tmp_path / "check.tar.gz.partial").exists()
    assert signal.getsignal(signal.SIGINT) is before, "the check gives Ctrl-C back as it found it"


def test_a_bundle_cut_off_by_a_kill_leaves_the_last_whole_one(tmp_path, monkeypatch):
    folder = tmp_path / "check"
    folder.mkdir()
    (folder / "summary.csv").write_text("step\nfirst\n")
    archive = tmp_path / "check.tar.gz"
    device_check.bundle(folder, archive)
    (folder / "device-check.md").write_text("# second\n")

    def killed(self, *args, **kwargs):
        raise SystemExit("killed halfway through the bundle")
    monkeypatch.setattr(tarfile.TarFile, "add", killed)
    with pytest.raises(SystemExit):
        device_check.bundle(folder, archive)
    with tarfile.open(archive) as bundle:
        assert bundle.getnames() == ["check/summary.csv"]
    monkeypatch.undo()
    device_check.bundle(folder, archive)  # over the half-written .partial a killed check left
    with tarfile.open(archive) as bundle:
        assert bundle.getnames() == ["check/device-check.md", "check/summary.csv"]


def test_every_step_gets_the_checks_jax_compilation_cache_which_stays_out_of_the_bundle(tmp_path, monkeypatch):
    seen = []

    def cached(step, folder, limit_s, env, stopping):
        seen.append({name: env.get(name) for name in ("JAX_COMPILATION_CACHE_DIR", "PATH",
                                                      "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
                                                      "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES")})
        folder.mkdir()
        (Path(env["JAX_COMPILATION_CACHE_DIR"]) / f"{step.name}.json").write_text("{}")
        return "ok"
    monkeypatch.setattr(device_check, "execute", cached)
    out = tmp_path / "check"
    assert device_check.main(["--dry-run", "--out", str(out), "--bundle", str(tmp_path / "check.tar.gz")]) == 0
    cache = str(out / device_check.JAX_CACHE)
    assert seen and all(each == {"JAX_COMPILATION_CACHE_DIR": cache, "PATH": os.environ["PATH"],
                                 "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                                 "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1"} for each in seen)
    with tarfile.open(tmp_path / "check.tar.gz") as bundle:
        assert not [name for name in bundle.getnames() if device_check.JAX_CACHE in name]
    assert f"JAX compilation cache: {cache} (0 files at the start)" in (out / "device-check.md").read_text()


@pytest.mark.parametrize("ignores_ctrl_c", [False, True], ids=["stops on Ctrl-C", "ignores Ctrl-C"])
def test_a_step_past_its_limit_is_stopped_and_one_interrupted_says_so(ignores_ctrl_c, tmp_path, monkeypatch):
    """A real child process: Ctrl-C at its limit, killed after the grace period if it ignores that."""
    (tmp_path / "sleeper.py").write_text("import signal, time\n"
                                         + ("signal.signal(signal.SIGINT, signal.SIG_IGN)\n" if ignores_ctrl_c else "")
                                         + "time.sleep(60)\n")
    monkeypatch.setattr(device_check, "GRACE_S", 1.0)
    step = Step("sleep", "sleeper", (), 1.0)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    began = time.monotonic()
    assert device_check.execute(step, tmp_path / "timed", 1.0, env, lambda: False) == "timeout"
    assert device_check.execute(step, tmp_path / "stopped", 60.0, env, lambda: True) == "interrupted"
    assert time.monotonic() - began < 10


def test_a_framework_that_is_not_installed_reads_as_such(tmp_path):
    jobs = planned_jobs(Step("run", "benchmarks.run", ("--framework", "pytorch,tensorflow", "--variant", "all"), 1))
    (tmp_path / "plan.json").write_text(json.dumps({"jobs": [job.to_dict() for job in jobs]}))
    ids = [job.job_id for job in jobs]  # pytorch eager and compile, then tensorflow's four variants
    append_rows(tmp_path, "summary", [
        {"job_id": ids[0], "framework": "pytorch", "status": "ok"},
        {"job_id": ids[1], "framework": "pytorch", "status": "error", "error": "RuntimeError: x"},
        *({"job_id": job_id, "framework": "tensorflow", "status": "unavailable",
           "error": "cannot import tensorflow: No module named 'tensorflow'"} for job_id in ids[2:])])
    assert device_check.job_statuses(tmp_path) == "pytorch: ok x1, error x1; tensorflow: not installed"


# --- The dry run --------------------------------------------------------------------------------


@pytest.mark.device_check
def test_the_dry_run_runs_every_step_and_bundles_what_comes_back(tmp_path):
    out, archive = tmp_path / "check", tmp_path / "check.tar.gz"
    completed = subprocess.run([sys.executable, "-m", "benchmarks.device_check", "--dry-run", "--out", str(out),
                                "--bundle", str(archive)], cwd=ROOT, capture_output=True, text=True, timeout=2000)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    summary = pd.read_csv(out / "summary.csv", keep_default_na=False)
    statuses = dict(zip(summary["step"], summary["status"]))
    assert list(statuses) == list(GPU_STEPS)
    assert statuses.pop("parity-tf32").startswith("skipped: tf32 is fp32 on a CPU"), statuses
    assert set(statuses.values()) == {"ok"}, completed.stdout
    findings = dict(zip(summary["step"], summary["frameworks"]))
    for frameworks in summary.loc[summary["run_folder"] != "", "frameworks"]:  # e.g. "jax: ok x2", "jax: passed"
        assert all(part.split(": ")[1].startswith(("ok", "passed", "not installed")) for part in frameworks.split("; "))
    for precision in ("bf16", "fp32"):  # one framework per time-to-94% step, each its own
        assert findings[f"recipe-{precision}-pytorch"] == "pytorch: ok x1"
        assert findings[f"recipe-{precision}-jax"] == "jax: ok x1"
    assert findings["timing"] == "jax: ok x2"
    for framework in REGISTRY:  # two seeds each, each framework its own step
        assert findings[f"seeds-{framework}"] == f"{framework}: ok x2"
    assert re.search(r"\| parity-fp32 +\|", (out / "device-check.md").read_text())
    cache = out / device_check.JAX_CACHE
    assert [path for path in cache.rglob("*") if path.is_file()], "the steps' JAX workers compile into the cache"
    assert archive.stat().st_size < device_check.RETURN_LIMIT
    with tarfile.open(archive) as bundle:
        names = bundle.getnames()
    assert f"{out.name}/summary.csv" in names and f"{out.name}/device-check.md" in names
    assert any(name.endswith("/epochs.csv") for name in names), "the recipe steps' tables must come back"
    assert f"{out.name}/parity-bf16/parity.csv" in names, "the parity steps' tables must come back"
    assert not [name for name in names if name.endswith(".png") or "/profiles/" in name
                or device_check.JAX_CACHE in name]

    # A GPU reference's README section is generated from the bundle as it comes back.
    with tarfile.open(archive) as bundle:
        bundle.extractall(tmp_path / "back", filter="data")
    folders = dict(zip(summary["step"], summary["run_folder"]))
    kinds = [("parity", folders["parity-fp32"]), ("parity", folders["parity-bf16"]), ("answer", folders["timing"]),
             ("throughput", folders["timing"]), ("time-to-target", folders["recipe-bf16-jax"])]
    page = "\n".join(f"<!-- generated: {kind} back/{out.name}/{folder} -->\n<!-- end generated -->"
                     for kind, folder in kinds)
    text, changed = readme.render(page, root=tmp_path)
    assert len(changed) == len(kinds), changed
    assert "| `fp32`" in text and "| `bf16`" in text, "parity per precision"
    assert "| jax:jit " in text, "throughput per job"
    assert re.search(r"\| jax:jit bs16 r1 +\| +(True|False) +\| +1(\.0)? \|", text), "time to accuracy: reached, epochs"
    assert "compile_s" in text and "best_accuracy" in text


@pytest.mark.device_check
@pytest.mark.parametrize("nvidia_smi", [True, False], ids=["with-nvidia-smi", "without-nvidia-smi"])
def test_the_dry_runs_env_collects_the_gpu_fields_where_nvidia_smi_is_present(nvidia_smi, tmp_path, monkeypatch):
    """The dry run's timing step alone (a run folder with its env.json), with a stand-in nvidia-smi first
    on PATH or none on it: its env.json in the bundle has each GPU's fields parsed, or none."""
    if nvidia_smi:
        fake_nvidia_smi(tmp_path / "bin", monkeypatch, f'echo "{H100}"')
    else:
        without_nvidia_smi(monkeypatch)
    every_step = device_check.plan
    monkeypatch.setattr(device_check, "plan",
                        lambda *args: [step for step in every_step(*args) if step.name == "timing"])
    out, archive = tmp_path / "check", tmp_path / "check.tar.gz"
    assert device_check.main(["--dry-run", "--out", str(out), "--bundle", str(archive)]) == 0
    with tarfile.open(archive) as bundle:
        (name,) = [name for name in bundle.getnames() if name.endswith("/env.json")]
        env = json.load(bundle.extractfile(name))
    assert env["gpu_details"] == ([H100_FIELDS] if nvidia_smi else [])
    assert env["gpus"] == (["NVIDIA H100 80GB HBM3, 550.54.15, 81559 MiB"] if nvidia_smi else [])
    assert env["builds"]["jax"]["platform"] == "cpu", "each framework's build, read in its workers"
