"""The tuning policy: one table, applied exactly by workers and recorded from what each worker sees
(a stock worker sets nothing of it, a tuned one each entry or says why not), docs/tuning.md's copy of the
table, and a setting that a framework version lacks reported as not applied."""

from __future__ import annotations

import json

import pytest

from benchmarks.cli import DEVICES
from benchmarks.harness.jobs import Job, Placement, Workload
from benchmarks.harness.spawn import run_worker
from benchmarks.settings import markdown
from frameworks import REGISTRY
from frameworks.base import TrainConfig
from frameworks.tuning import KINDS, TABLE, Setting, observe, settings_for, summary_fields
from tests.conftest import ROOT, VARIANTS, require, require_installed, tiered


def test_every_setting_names_its_framework_device_and_source_document():
    for setting in TABLE:
        assert setting.framework in REGISTRY and setting.kind in KINDS, setting
        assert set(setting.devices) <= set(DEVICES) and "https://" in setting.source, setting
        assert set(setting.variants) <= set(REGISTRY[setting.framework].variants), setting
        assert not setting.measured or "cpu" in setting.devices, f"measured here means on this CPU: {setting}"


def test_the_tuning_page_lists_every_setting_as_the_code_holds_it():
    page = ROOT / "docs" / "tuning.md"
    assert markdown() in page.read_text(), "rerun python -m benchmarks.settings into docs/tuning.md"


def probe(name: str, profile: str, tmp_path) -> dict:
    """What a worker of `framework:variant` under `profile` recorded, on CPU."""
    framework, variant = name.split(":")
    job = Job(kind="probe", what=Workload(framework, variant, "lenet", 32, profile), training=TrainConfig(),
              placement=Placement(threads=1))
    result = run_worker(job, tmp_path / "probe.log", 300.0, lambda message: None)
    assert result["status"] == "ok", result
    return result


@pytest.mark.parametrize("name", [tiered(name, id=name) for name in VARIANTS])
def test_a_stock_worker_sets_nothing_of_the_table(name, tmp_path, untuned):
    require_installed(name.split(":")[0])
    # the framework's build is recorded beside, not a setting (tests/test_runner.py checks it)
    recorded = {key: value for key, value in probe(name, "stock", tmp_path).items() if key != "build"}
    assert recorded | {"framework_version": ""} == {
        "status": "ok", "framework_version": "", "tuning": "stock", "settings": "", "settings_not_applied": ""}


@pytest.mark.parametrize("name", [tiered(name, id=name) for name in VARIANTS])
def test_a_tuned_worker_sets_exactly_its_entries_or_says_why_not(name, tmp_path, untuned):
    require_installed(name.split(":")[0])
    framework, variant = name.split(":")
    expected = settings_for(framework, "cpu", "fp32", variant)
    result = probe(name, "tuned", tmp_path)
    assert result["tuning"] == "tuned"
    in_effect = result["settings"].split("; ") if result["settings"] else []
    missing = [item.split(" (", 1)[0] for item in result["settings_not_applied"].split("; ") if item]
    assert sorted(in_effect + missing) == sorted(setting.text for setting in expected)
    assert in_effect == [setting.text for setting in expected if setting.kind == "env"]  # the parent set these


def test_keras_steps_per_execution_is_reported_as_not_applied_to_train_on_batch():
    adapter = require("tensorflow")
    (setting,) = [setting for setting in settings_for("tensorflow", "cpu", "fp32", "fit") if setting.kind == "build"]
    refused = adapter.apply_tuning((setting,))
    fields = summary_fields("tuned", observe([setting], {}, adapter.tuning_state((setting,)), refused))
    assert fields["settings"] == ""
    assert fields["settings_not_applied"].startswith("steps_per_execution=20 (Keras ")
    assert "train_on_batch" in fields["settings_not_applied"]


def test_pytorch_sets_its_state_and_reports_what_this_version_lacks(monkeypatch):
    adapter = require("pytorch")
    import torch

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)  # restored after the test
    monkeypatch.setattr(adapter, "structure", adapter.structure)
    wanted = [setting for setting in TABLE if setting.framework == "pytorch" and setting.kind != "env"]
    lacking = [Setting("pytorch", "state", "torch.backends.cudnn.no_such_switch", "True", ("cuda",), "https://x",
                       "nothing", False),
               Setting("pytorch", "build", "torch.compile mode", "warp-speed", ("cuda",), "https://x", "nothing",
                       False)]
    assert adapter.tuning_state(tuple(wanted)) == {"torch.backends.cudnn.benchmark": "False", "memory_format": None,
                                                   "torch.compile mode": None}
    refused = adapter.apply_tuning(tuple(wanted))
    assert refused == {}
    outcomes = observe(wanted, {}, adapter.tuning_state(tuple(wanted)), refused)
    assert [outcome.in_effect for outcome in outcomes] == [True] * len(wanted)
    refused = adapter.apply_tuning(tuple(lacking))
    assert refused == {
        "torch.backends.cudnn.no_such_switch": f"torch {torch.__version__} has no torch.backends.cudnn.no_such_switch",
        "torch.compile mode": f"torch {torch.__version__}'s torch.compile has no mode 'warp-speed'"}
    fields = summary_fields("tuned", observe(lacking, {}, adapter.tuning_state(tuple(lacking)), refused))
    assert fields["settings"] == ""
    assert fields["settings_not_applied"] == "; ".join(f"{setting.text} ({refused[setting.name]})"
                                                       for setting in lacking)


def test_an_environment_setting_the_worker_does_not_see_is_not_applied():
    (setting,) = settings_for("jax", "cpu", "fp32", "jit")
    outcomes = observe([setting], {"XLA_FLAGS": "--xla_dump_to=/tmp"}, {}, {})
    assert summary_fields("tuned", outcomes)["settings_not_applied"] == (
        f"{setting.text} (XLA_FLAGS does not carry it (--xla_dump_to=/tmp))")
    assert summary_fields("stock", outcomes) == {"tuning": "stock", "settings": "", "settings_not_applied": ""}
    both = observe([setting], {"XLA_FLAGS": f"--xla_dump_to=/tmp {setting.value}"}, {}, {})
    assert summary_fields("stock", both)["settings"] == setting.text  # a stock row shows what the shell set


def test_a_flag_the_installed_framework_does_not_know_is_left_out_and_reported(monkeypatch):
    """XLA ends a process at a flag it does not know, and flags come and go between versions: a
    table flag the installed JAX refuses must not kill its workers, only be reported as not applied."""
    require("jax")
    from benchmarks.harness import spawn
    from frameworks import tuning

    unknown = Setting("jax", "env", "XLA_FLAGS", "--xla_no_such_flag_here=true", ("cpu",), "https://x", "nothing",
                      False)
    known = settings_for("jax", "cpu", "fp32", "jit")
    monkeypatch.setattr(tuning, "settings_for", lambda *args: (*known, unknown))
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/shell")  # the user's own flags are the user's
    env = spawn.framework_env([REGISTRY["jax"]], "cpu", 1, "tuned", "fp32", "jit")
    assert env["XLA_FLAGS"].split() == ["--xla_dump_to=/tmp/shell", *(setting.value for setting in known)]
    refused = json.loads(env[tuning.REFUSED])
    assert list(refused) == [unknown.text] and "does not know this flag" in refused[unknown.text]
    fields = summary_fields("tuned", observe([*known, unknown], env, {}, refused))
    assert fields["settings"] == "; ".join(setting.text for setting in known)
    assert fields["settings_not_applied"] == f"{unknown.text} ({refused[unknown.text]})"
