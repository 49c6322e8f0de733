"""The GPU device check (`python -m benchmarks.device_check`): its GPU plan names every step with
its command, so the plan cannot rot on machines without a GPU; bad input is one line and exit
status 2; a framework that is not installed reads as such; and the dry run on the CPU runs every
step to the end and returns a bundle a device machine can hand back, from which the README's tables
of a GPU reference are generated."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest

from benchmarks import device_check
from benchmarks.device_check import Machine, plan
from report import readme
from tests.conftest import ROOT

# Every step the check must run on a GPU, with what its command must say.
GPU_STEPS = {
    "parity-fp32": ["-m benchmarks.parity", "--device cuda", "--variant all", "--model lenet,resnet9",
                    "--precision fp32"],
    "parity-bf16": ["-m benchmarks.parity", "--device cuda", "--variant all", "--model lenet,resnet9",
                    "--precision bf16"],
    "recipe-bf16": ["-m benchmarks.run", "--device cuda", "--framework pytorch,jax", "--recipe resnet9-94",
                    "--target-accuracy 0.94", "--precision bf16", "--data cifar10 --data-dir /data"],
    "timing": ["-m benchmarks.run", "--device cuda", "--framework all", "--variant all", "--model lenet,resnet9",
               "--repeats 3", "--tuning both"],
    "recipe-fp32": ["-m benchmarks.run", "--device cuda", "--framework pytorch,jax", "--recipe resnet9-94",
                    "--target-accuracy 0.94", "--precision fp32", "--data cifar10 --data-dir /data"],
    "parity-tf32": ["-m benchmarks.parity", "--device cuda", "--variant all", "--model lenet,resnet9",
                    "--precision tf32"],
    "devices-2": ["-m benchmarks.run", "--device cuda", "--framework all", "--devices 2", "resnet9"],
    "profile": ["-m benchmarks.run", "--device cuda", "--framework all", "--profile", "--model resnet9"],
}


def test_the_gpu_plan_runs_every_step_in_priority_order_with_its_command():
    steps = plan(Machine(dry_run=False, gpus=2, data_dir=Path("/data"), tuning=True))
    assert [step.name for step in steps] == list(GPU_STEPS)
    for step in steps:
        assert step.skip is None and step.limit_s > 0
        missing = [part for part in GPU_STEPS[step.name] if part not in f"python {step.command}"]
        assert not missing, f"{step.name}: {step.command} lacks {missing}"
    assert sum(step.limit_s for step in steps if step.name != "devices-2") <= device_check.BUDGET_S


def test_on_one_gpu_without_data_the_plan_says_why_it_skips_steps():
    steps = {step.name: step for step in plan(Machine(dry_run=False, gpus=1, data_dir=None, tuning=False))}
    assert steps["recipe-fp32"].skip == steps["recipe-bf16"].skip == "no CIFAR-10 copy (give --data-dir)"
    assert steps["devices-2"].skip == "1 GPU listed by nvidia-smi -L, 2 needed"
    assert "--tuning" not in steps["timing"].command, "a runner without --tuning must not be given it"


def test_time_a_step_leaves_unused_goes_to_the_next_while_the_later_limits_still_fit(tmp_path, monkeypatch):
    given, saved = [], []

    def instant(step, folder, limit_s):  # every step ends at once, leaving its limit unused
        given.append(limit_s)
        return "ok"
    monkeypatch.setattr(device_check, "execute", instant)
    steps = [device_check.Step(name, "benchmarks.run", (), limit, skip)
             for name, limit, skip in [("a", 10, None), ("b", 20, None), ("skipped", 40, "why"), ("c", 30, None)]]
    outcomes = device_check.run_check(steps, tmp_path, budget_s=100, absent=[],
                                      after_each=lambda outcomes: saved.append([each.step for each in outcomes]))
    # a: 100 s left, 50 promised to b and c: it gets 50; b: ~100 left, 30 promised to c: ~70; c: ~100
    assert given == pytest.approx([50, 70, 100], abs=1)
    assert [outcome.limit_s for outcome in outcomes if outcome.limit_s] == pytest.approx([50, 70, 100], abs=1)
    assert outcomes[2].status == "skipped: why" and outcomes[2].limit_s is None
    assert saved == [["a"], ["a", "b"], ["a", "b", "skipped", "c"]], "what each step found is saved as it ends"


def test_a_negative_budget_exits_2_in_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        device_check.main(["--dry-run", "--budget-s", "-5"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "python -m benchmarks.device_check: error: argument --budget-s: '-5' must be 0 or more seconds")


def test_a_framework_that_is_not_installed_reads_as_such(tmp_path):
    pd.DataFrame({"job_id": ["a", "b", "c"], "framework": ["pytorch", "pytorch", "tensorflow"],
                  "status": ["ok", "error", "unavailable"],
                  "error": [None, "RuntimeError: x", "cannot import tensorflow: No module named 'tensorflow'"]}
                 ).to_csv(tmp_path / "summary.csv", index=False)
    assert device_check.framework_statuses(tmp_path) == "pytorch: ok x1, error x1; tensorflow: not installed"


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
    for frameworks in summary.loc[summary["run_folder"] != "", "frameworks"]:  # e.g. "jax: ok x2", "jax: passed"
        assert all(part.split(": ")[1].startswith(("ok", "passed", "not installed")) for part in frameworks.split("; "))
    assert "| parity-fp32 |" in (out / "device-check.md").read_text()
    assert archive.stat().st_size < device_check.RETURN_LIMIT
    with tarfile.open(archive) as bundle:
        names = bundle.getnames()
    assert f"{out.name}/summary.csv" in names and f"{out.name}/device-check.md" in names
    assert any(name.endswith("/epochs.csv") for name in names), "the recipe steps' tables must come back"
    assert f"{out.name}/parity-bf16/parity.csv" in names, "the parity steps' tables must come back"
    assert not [name for name in names if name.endswith(".png") or "/profiles/" in name]

    # A GPU reference's README section is generated from the bundle as it comes back.
    with tarfile.open(archive) as bundle:
        bundle.extractall(tmp_path / "back", filter="data")
    folders = dict(zip(summary["step"], summary["run_folder"]))
    kinds = [("parity", folders["parity-fp32"]), ("parity", folders["parity-bf16"]), ("answer", folders["timing"]),
             ("throughput", folders["timing"]), ("time-to-target", folders["recipe-bf16"])]
    page = "\n".join(f"<!-- generated: {kind} back/{out.name}/{folder} -->\n<!-- end generated -->"
                     for kind, folder in kinds)
    text, changed = readme.render(page, root=tmp_path)
    assert len(changed) == len(kinds), changed
    assert "| `fp32`" in text and "| `bf16`" in text, "parity per precision"
    assert "| jax:jit [tuned]" in text, "throughput per job"
    assert re.search(r"\| jax:jit bs16 r1 +\| +(True|False) +\| +1(\.0)? \|", text), "time to accuracy: reached, epochs"
    assert "compile_s" in text and "best_accuracy" in text
