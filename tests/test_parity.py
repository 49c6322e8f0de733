"""Cross-framework parity: every framework and variant, from the same random non-zero weights
(and BatchNorm statistics) and batches, must compute the same logits, loss and gradients, and the
same training step from a common state (weights, BatchNorm statistics, momentum buffers, step
count) under the model's optimizer settings, in float32 and in float64; and each must match a
float64 NumPy reference. The checks run as `python -m benchmarks.parity` runs them: one worker
process per variant, all variants of a model at once, compared in PyTorch's canonical layout."""

from __future__ import annotations

import functools
import io
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from benchmarks.checks.compare import compare
from benchmarks.checks.definitions import (
    BOUND_SET_ON,
    MODEL_TOLERANCES,
    PARITY_SEED,
    PLANS,
    PRECISION_TOLERANCES,
    PROOF,
    TOLERANCES,
    TRAIN_STEPS,
    key,
    model_batches,
    parity_params,
    round_trip_state,
    training_config,
)
from benchmarks.checks.outputs import compute_all, reference_outputs
from benchmarks.checks.runner import run_parity_jobs
from benchmarks.checks.verdicts import (
    CALIBRATION_TITLE,
    REFERENCE,
    calibration,
    failures,
    outliers,
    parity_summary,
    worst_by_check,
)
from benchmarks.cli import Selection
from frameworks import REGISTRY
from frameworks.base import MODELS, TrainConfig, init_params
from tests.conftest import DEFAULT_VARIANTS, FRAMEWORKS, VARIANTS, import_error, require, require_installed, tiered
from tests.faulty_framework import RAISE_MESSAGE

PRECISIONS = ["fp32", PROOF]
TRAINING_CHECKS = ("per-step", "step count", "free-running")
# Pairs with a variant other than a framework's default are in the slow tier (see `tiered`).
PAIRS = [tiered(a, b, model, precision, id=f"{a}-vs-{b}-{model}-{precision}")
         for a, b in itertools.combinations(VARIANTS, 2) for model in MODELS for precision in PRECISIONS]
AGAINST_REFERENCE = [tiered(variant, REFERENCE, model, precision, id=f"{variant}-vs-float64-{model}-{precision}")
                     for variant in VARIANTS for model in MODELS for precision in PRECISIONS]
STEPS = [tiered(a, b, model, precision, setting, id=f"{a}-vs-{b}-{model}-{precision}-{setting}")
         for a, b in [*itertools.combinations(VARIANTS, 2), *((variant, REFERENCE) for variant in VARIANTS)]
         for model in MODELS for precision in PRECISIONS for setting in PLANS[model].settings]


@functools.cache
def parity_table(variants: tuple[str, ...], tmp_root: str, precision: str = "fp32") -> pd.DataFrame:
    """The checks of every installed variant of `variants` for every model in `precision` (and
    float64), run in worker processes as users run them (`python -m benchmarks.parity --model
    lenet,resnet9`)."""
    pairs = tuple(tuple(variant.split(":")) for variant in variants if import_error(variant.split(":")[0]) is None)
    if not pairs:
        pytest.skip("no framework is installed")
    selection = Selection(pairs, tuple(MODELS), "cpu", 1, precision, 1800.0)  # one core each, side by side
    console = Console(file=io.StringIO())
    outcome = run_parity_jobs(selection, Path(tmp_root), console, precision=precision)
    assert not outcome.unusable, f"parity workers failed: {outcome.unusable}\n{console.file.getvalue()}"
    return outcome.table


@pytest.fixture
def table(request, tmp_path_factory):
    """The parity table of one model a test reads: of the default variants in the default tier, of
    every variant in the slow tier."""
    variants = tuple(VARIANTS if request.node.get_closest_marker("slow") else DEFAULT_VARIANTS)
    root = str(tmp_path_factory.getbasetemp() / f"parity-{len(variants)}")

    def of_model(model: str) -> pd.DataFrame:
        every = parity_table(variants, root)
        return every[every["model"] == model]
    return of_model


def comparison(table, a: str, b: str, model: str, precision: str, *checks: str,
               setting: str | None = None) -> pd.DataFrame:
    for variant in (a, b):
        if variant != REFERENCE:
            require_installed(variant.split(":")[0])
    rows = table(model)
    rows = rows[rows["pair"].eq(f"{a} vs {b}") & rows["check"].isin(checks) & rows["precision"].eq(precision)]
    if setting is not None:
        rows = rows[rows["setting"] == setting]
    assert len(rows) > 0, "nothing was compared"
    return rows


def assert_agree(table, a, b, model, precision, *checks, setting=None) -> None:
    problems = failures(comparison(table, a, b, model, precision, *checks, setting=setting))
    assert not problems, "\n".join(problems)


# --- Round trip ---------------------------------------------------------------------------------


@pytest.mark.parametrize("variant, model", [tiered(variant, model, id=f"{variant}-{model}")
                                            for variant in VARIANTS for model in MODELS])
def test_training_state_survives_a_round_trip_exactly(table, variant, model):
    require_installed(variant.split(":")[0])
    rows = table(model)
    rows = rows[(rows["pair"] == f"{variant} vs canonical") & (rows["check"] == "round trip")]
    given = round_trip_state(model)
    assert set(rows["tensor"]) == {*given.params, *(f"momentum {name}" for name in given.momentum), "step count"}
    problems = failures(rows)
    assert not problems, "\n".join(problems)


@pytest.mark.in_process
@pytest.mark.parametrize("model", list(MODELS), ids=str)
@pytest.mark.parametrize("framework", FRAMEWORKS, ids=str)
def test_exported_state_has_canonical_names_shapes_and_dtypes(framework, model):
    adapter_cls = require(framework)
    adapter = adapter_cls(model, "cpu", REGISTRY[framework].default_variant, TrainConfig())
    given = round_trip_state(model)
    adapter.set_state(given)
    exported = adapter.get_state()
    for arrays, expected in ((exported.params, given.params), (exported.momentum, given.momentum)):
        assert {name: (np.asarray(value).shape, np.asarray(value).dtype) for name, value in arrays.items()} == {
            name: (np.asarray(value).shape, np.asarray(value).dtype) for name, value in expected.items()}
    assert exported.step == given.step


def test_parity_weights_and_momentum_are_random_not_zero():
    for model in MODELS:
        state = round_trip_state(model)
        for arrays in (state.params, state.momentum):
            floating = [value for value in arrays.values() if np.issubdtype(np.asarray(value).dtype, np.floating)]
            assert all(np.count_nonzero(value) == value.size for value in floating), model
        batchnorm = [value for name, value in state.params.items() if name.endswith(("bn.weight", "running_var"))]
        assert all(value.std() > 0.1 for value in batchnorm), "BatchNorm scales and variances must not be all ones"
        assert state.params.keys() == init_params(model, PARITY_SEED).keys() and state.step > 0


# --- Pairs of variants --------------------------------------------------------------------------


@pytest.mark.parametrize("a, b, model, precision", PAIRS)
def test_forward_logits_match(table, a, b, model, precision):
    assert_agree(table, a, b, model, precision, "forward")


@pytest.mark.parametrize("a, b, model, precision", PAIRS)
def test_loss_and_gradients_match(table, a, b, model, precision):
    assert_agree(table, a, b, model, precision, "loss", "gradients")


@pytest.mark.parametrize("a, b, model, precision, setting", STEPS)
def test_each_training_step_from_a_common_state_matches(table, a, b, model, precision, setting):
    rows = comparison(table, a, b, model, precision, "per-step", "step count", setting=setting)
    assert set(rows["step"]) == set(range(PLANS[model].steps))
    problems = failures(rows)
    assert not problems, "\n".join(problems)


# --- Each variant against the float64 reference -------------------------------------------------


@pytest.mark.parametrize("a, b, model, precision", AGAINST_REFERENCE)
def test_forward_loss_and_gradients_match_float64(table, a, b, model, precision):
    assert_agree(table, a, b, model, precision, "forward", "loss", "gradients")


# --- Mixed precision ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_bf16_holds_each_default_variant_to_bf16_bounds_against_the_others_and_float64(tmp_path_factory, model):
    """bf16 as each framework computes it (PyTorch's autocast, a bfloat16 compute dtype in Keras
    and Flax) passes every check within bf16's bounds (PRECISION_TOLERANCES, MODEL_TOLERANCES)."""
    installed = [variant for variant in DEFAULT_VARIANTS if import_error(variant.split(":")[0]) is None]
    every = parity_table(tuple(DEFAULT_VARIANTS), str(tmp_path_factory.getbasetemp() / "parity-bf16"), "bf16")
    rows = every[(every["model"] == model) & (every["precision"] == "bf16")]
    assert {f"{variant} vs {REFERENCE}" for variant in installed} <= set(rows["pair"])
    assert set(rows.loc[rows["asserted"], "check"]) >= {"forward", "loss", "per-step", "round trip"}
    problems = failures(rows)
    assert not problems, "\n".join(problems)


# --- How the table judges -----------------------------------------------------------------------


def _as_variant(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The reference's outputs dressed as a variant's: with an exact round trip."""
    state = round_trip_state("lenet")
    round_trip = {key("round trip", name): value for name, value in state.params.items()}
    round_trip.update({key("round trip", f"momentum {name}"): value for name, value in state.momentum.items()})
    return {**arrays, **round_trip, key("round trip", "step count"): np.int64(state.step)}


def _relative(change: float) -> float:
    """The relative error of x * (1 + change) against x."""
    return change / (1 + change)


def _per_step_table(errors: dict[tuple[int, str], float], margin: float = 1e-8) -> pd.DataFrame:
    """A crafted two-variant comparison: the reference's own outputs, with chosen per-step
    tensors of variant `b` scaled by (1 + change)."""
    reference = reference_outputs("lenet")
    b = dict(reference)
    for (step, tensor), change in errors.items():
        name = key("per-step", tensor, "momentum", step)
        b[name] = reference[name] * (1 + change)
    reference = {**reference, key("margin", "decision", "momentum", 5): np.float64(margin)}
    return compare({"a": _as_variant(reference), "b": _as_variant(b), REFERENCE: reference}, "lenet")


def test_a_single_flipped_decision_is_named_as_an_outlier_not_a_failure():
    table = _per_step_table({(5, "momentum conv1.weight"): 3e-3, (5, "update conv1.weight"): 3e-3})
    assert not failures(table[table["pair"] == "a vs b"])
    [line] = [line for line in outliers(table) if line.startswith("a vs b")]
    assert "step 5" in line and "conv1.weight" in line and f"{_relative(3e-3):.2e}" in line


@pytest.mark.parametrize("errors, margin", [
    ({(5, "momentum conv1.weight"): 3e-3, (9, "momentum fc1.weight"): 3e-3}, 1e-8),  # two steps
    ({(5, "momentum conv1.weight"): 3e-3, (5, "loss"): 1e-3}, 1e-8),  # the loss moved too
    ({(5, "momentum conv1.weight"): 0.2}, 1e-8),  # more than one decision can change
    ({(5, "momentum conv1.weight"): 3e-3}, 1e-3),  # no decision was near a tie at that step
], ids=["two-steps", "loss-differs", "too-large", "no-near-tie"])
def test_per_step_differences_that_are_no_single_flip_fail_and_name_step_and_tensor(errors, margin):
    problems = failures(_per_step_table(errors, margin))
    assert problems
    for (step, tensor), change in errors.items():
        expected = f"a vs b, fp32: per-step [momentum, step {step}] {tensor}: relative error {_relative(change):.2e}"
        assert any(expected in line and "> tolerance 1e-04" in line for line in problems), problems


def test_free_running_trajectories_report_where_they_part():
    reference = reference_outputs("lenet")
    parted = dict(reference)
    for step in range(12, TRAIN_STEPS):
        name = key("free-running", "loss", "weight decay", step)
        parted[name] = reference[name] * (1 + 1e-3 * (step - 11))
    worst = worst_by_check(compare({"a": _as_variant(reference), "b": _as_variant(parted), REFERENCE: reference},
                                   "lenet"))
    row = worst[(worst["pair"] == "a vs b") & (worst["check"] == "free-running")].iloc[0]
    assert row["parts at step"] == 12 and row["step"] == TRAIN_STEPS - 1
    assert row["error"] == pytest.approx(_relative(8e-3), rel=1e-6) and not row["asserted"]


def test_the_summary_says_which_checks_a_data_parallel_pair_does_not_cover():
    """`--devices 2` adds pairs that train only (no forward, loss or gradients) to the same table."""
    reference = reference_outputs("lenet")
    single = compare({"a": _as_variant(reference), REFERENCE: reference}, "lenet")
    training = {name: value for name, value in reference.items() if name.split("|")[0] in TRAINING_CHECKS}
    parallel = compare({"a x2": training, "a": training, REFERENCE: reference}, "lenet")
    summary = parity_summary(pd.concat([single, parallel], ignore_index=True))
    assert summary.loc["a x2 vs a", "forward"] == "not checked"
    assert summary.loc["a x2 vs a", "per-step"].startswith("0.0e+00")
    assert summary.loc["a vs float64", "forward"] == "0.0e+00"


def test_tolerances_are_the_promised_ones():
    """Every bound as it was set on CPUs: a run on another device calibrates them (its errors beside
    them, see `calibration`), it does not move them."""
    assert TOLERANCES == {"round trip": 0.0, "forward": 1e-5, "loss": 1e-4, "gradients": 1e-4,
                          "per-step": 1e-4, "step count": 0.0, "free-running": 1e-4}
    assert PRECISION_TOLERANCES == {
        "fp32": {},
        "fp64": {"forward": 1e-10, "loss": 1e-10, "gradients": 1e-10, "per-step": 1e-10, "free-running": 1e-10},
        "tf32": {"forward": 1.25e-3, "loss": 1e-4, "gradients": 6e-2, "per-step": 6e-2, "free-running": 6e-2},
        "bf16": {"forward": 1e-2, "loss": 1e-4, "gradients": 0.5, "per-step": 0.5, "free-running": 0.5}}
    assert MODEL_TOLERANCES == {("resnet9", "bf16"): {"loss": 1.1e-3}, ("resnet9", "tf32"): {"loss": 1.4e-4}}


def test_an_interrupted_parity_run_keeps_the_models_it_has_compared(tmp_path, monkeypatch, capsys):
    """`python -m benchmarks.parity --csv FILE` writes each model's comparisons as soon as they are
    made, so Ctrl-C (or a time limit that sends it) loses only the models still running."""
    from benchmarks import parity

    done = compare({"a": _as_variant(reference_outputs("lenet")), REFERENCE: reference_outputs("lenet")}, "lenet")
    done.insert(0, "model", "lenet")

    def lenet_then_ctrl_c(*args, on_table, **kwargs):
        on_table(done)
        raise KeyboardInterrupt
    monkeypatch.setattr(parity, "run_parity_jobs", lenet_then_ctrl_c)
    csv = tmp_path / "parity.csv"
    assert parity.main(["--model", "lenet,resnet9", "--csv", str(csv)]) == 130
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"interrupted: the comparisons of lenet are in {csv}"
    kept = pd.read_csv(csv)
    assert len(kept) == len(done) and set(kept["model"]) == {"lenet"}


# --- Where each bound was set, against what a run measured ----------------------------------------


def _one_variant(changes: dict[str, float]) -> dict[str, dict[str, np.ndarray]]:
    """Variant `b` and the float64 reference over a few checks, `b` off the reference by the given
    relative changes (names as `key` writes them), each tensor random and non-zero."""
    rng = np.random.default_rng(0)
    names = [key("forward", "logits"), key("loss", "loss"), key("gradients", "conv1.weight"),
             key("per-step", "update conv1.weight", "momentum", 0), key("free-running", "loss", "momentum", 0)]
    reference = {name: rng.uniform(1, 2, (3, 4)) for name in names}
    variant = {name: value * (1 + changes.get(name, 0.0)) for name, value in reference.items()}
    return {"b": variant, REFERENCE: reference}


@pytest.mark.parametrize("precision", ["fp32", "fp64", "tf32", "bf16"])
def test_every_comparison_records_its_error_beside_its_bound_and_where_each_was(precision):
    table = compare(_one_variant({key("forward", "logits"): 1e-3}), "resnet9", precision, "cuda")
    assert list(table.columns[table.columns.get_loc("error"):][:4]) == ["error", "tolerance", "bound set on",
                                                                         "measured on"]
    assert (table["measured on"] == "cuda").all() and (table["bound set on"] == BOUND_SET_ON[precision]).all()
    bounds = {**TOLERANCES, **PRECISION_TOLERANCES[precision], **MODEL_TOLERANCES.get(("resnet9", precision), {})}
    assert table.set_index("check")["tolerance"].to_dict() == {check: bounds[check] for check in table["check"]}
    assert table.loc[table["check"] == "forward", "error"].item() == pytest.approx(_relative(1e-3))


def test_bounds_say_they_were_set_on_a_cpu_and_tf32_that_it_was_never_measured():
    assert set(BOUND_SET_ON) == set(PRECISION_TOLERANCES)
    assert all(place.startswith("cpu") for place in BOUND_SET_ON.values())
    assert "unmeasured" in BOUND_SET_ON["tf32"]
    state, reference = round_trip_state("lenet"), _one_variant({})[REFERENCE]
    exact = compare({"b": _as_variant(reference), REFERENCE: reference}, "lenet", "bf16", "cuda")
    assert set(exact.loc[exact["check"] == "round trip", "bound set on"]) == {"exact"}
    assert len(exact[exact["check"] == "round trip"]) == len(state.params) + len(state.momentum) + 1


def test_calibration_sets_each_checks_largest_asserted_error_beside_its_bound():
    """bf16 bounds: forward 1e-2, loss 1e-4, gradients and per-step 0.5; free-running is reported
    only, round trip exact: neither is calibrated."""
    changes = {key("forward", "logits"): 3e-3, key("per-step", "update conv1.weight", "momentum", 0): 0.1,
               key("free-running", "loss", "momentum", 0): 0.9}
    table = compare(_one_variant(changes), "lenet", "bf16", "cuda")
    table.insert(0, "model", "lenet")
    rows = calibration(table).set_index("check")
    assert list(rows.index) == ["forward", "loss", "gradients", "per-step"]
    assert rows.loc["forward", "worst error"] == f"{_relative(3e-3):.1e}" and rows.loc["forward", "bound"] == "0.01"
    assert rows.loc["forward", "error / bound"] == f"{_relative(3e-3) / 1e-2:.2g}"
    assert rows.loc["per-step", "where"] == "b vs float64: update conv1.weight [momentum, step 0]"
    assert rows.loc["per-step", "error / bound"] == f"{_relative(0.1) / 0.5:.2g}"
    assert rows.loc["loss", "worst error"] == "0.0e+00" and rows.loc["loss", "where"] == "b vs float64: loss"
    assert set(rows["bound set on"]) == {"cpu"} and set(rows["measured on"]) == {"cuda"}
    assert set(rows["model"]) == {"lenet"} and set(rows["precision"]) == {"bf16"}


def test_calibration_leaves_out_tolerated_outliers_and_reads_tables_written_before_it(tmp_path):
    table = _per_step_table({(5, "momentum conv1.weight"): 3e-3, (5, "update conv1.weight"): 3e-3})
    table.insert(0, "model", "lenet")
    per_step = calibration(table).set_index("check").loc["per-step"]
    assert float(per_step["worst error"]) < 1e-4 and "step 5" not in per_step["where"]  # the flip is not the worst
    table.drop(columns=["bound set on", "measured on"]).to_csv(tmp_path / "parity.csv", index=False)
    old = calibration(pd.read_csv(tmp_path / "parity.csv", keep_default_na=False, na_values={"step": [""]}))
    assert set(old["bound set on"]) == set(old["measured on"]) == {"not recorded"}


def test_the_parity_command_prints_the_bounds_and_writes_them_to_a_page_beside_its_csv(tmp_path, monkeypatch,
                                                                                       capsys):
    from benchmarks import parity
    from benchmarks.checks.runner import ParityOutcome

    table = compare(_one_variant({key("forward", "logits"): 3e-3}), "lenet", "bf16", "cuda")
    table.insert(0, "model", "lenet")

    def compared(*args, on_table, **kwargs):
        on_table(table)
        return ParityOutcome(table, {})
    monkeypatch.setattr(parity, "run_parity_jobs", compared)
    csv = tmp_path / "parity.csv"
    assert parity.main(["--model", "lenet", "--precision", "bf16", "--csv", str(csv)]) == 0
    printed = capsys.readouterr().out
    page = (tmp_path / "parity.md").read_text()
    expected = calibration(table)
    assert f"{CALIBRATION_TITLE}:\n{expected.to_string(index=False)}" in printed
    assert expected.to_markdown(index=False, disable_numparse=True) in page and CALIBRATION_TITLE in page
    assert "b vs float64: logits" in page and "| cuda" in page
    assert list(pd.read_csv(csv)["measured on"].unique()) == ["cuda"]


# --- Workers: cores, logs, compiled adapters -------------------------------------------------------


@pytest.mark.parametrize("options, cores, threads", [
    (["--framework", "all", "--variant", "all", "--model", "lenet,resnet9"], 16, 4),  # 4 at once, 4 cores each
    (["--framework", "pytorch", "--variant", "pytorch:compile", "--model", "lenet,resnet9"], 16, 8),
    (["--framework", "jax", "--model", "lenet"], 16, 16),
    (["--framework", "all", "--variant", "all", "--model", "lenet,resnet9"], 2, 1),
    (["--framework", "jax", "--model", "lenet", "--threads", "1"], 16, 1),
], ids=["every-variant", "two-workers", "one-worker", "two-cores", "given"])
def test_parity_workers_share_every_core_by_default(options, cores, threads, monkeypatch):
    """Inductor compiles on as many threads as its worker may use cores: a worker pinned to one core
    compiles one kernel at a time while the machine's other cores idle."""
    from benchmarks import parity
    from benchmarks.checks import runner

    chosen = []

    def nothing_runs(selection, *args, **kwargs):
        chosen.append(selection)
        return runner.ParityOutcome(None, {})
    monkeypatch.setattr(runner.os, "sched_getaffinity", lambda pid: set(range(cores)))  # the cli's os too
    monkeypatch.setattr(parity, "run_parity_jobs", nothing_runs)
    assert parity.main(options) == 3  # no table: "no framework could run the parity checks"
    [selection] = chosen
    assert selection.threads == threads
    assert threads * runner.at_once(threads) <= cores


def test_a_failed_workers_log_and_traceback_stay_beside_the_csv(tmp_path, faulty, capsys):
    """The device check bundles the folder of --csv: a worker that fails there (here at its fourth
    training step) must leave its traceback in it, and nothing of the large outputs workers hand over."""
    from benchmarks import parity

    csv = tmp_path / "parity.csv"
    assert parity.main(["--framework", "faulty", "--variant", "faulty:raise", "--model", "lenet",
                        "--csv", str(csv)]) == 3  # no framework could run the checks
    [log] = (tmp_path / "logs").glob("parity-lenet-faulty-raise-*.log")
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and f"RuntimeError: {RAISE_MESSAGE}" in text
    printed = "".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert f"faulty:raise:error:RuntimeError:{''.join(RAISE_MESSAGE.split())}(itslog:{log})" in printed
    assert not list(tmp_path.rglob("*.npz"))


@pytest.mark.slow
def test_a_pytorch_compile_worker_compiles_every_adapter_it_builds(monkeypatch):
    """A pytorch:compile parity worker builds an adapter per optimizer setting and precision (8 for
    LeNet) one after another, and to dynamo every adapter's step is the same code, with one cache:
    past `torch._dynamo.config.recompile_limit` (8) entries it runs the step eagerly with a warning,
    and the compiled variant is then checked as eager. Here the limit is a hard failure, the worker's
    whole computation runs, then one adapter more, and dynamo's counting backend (no inductor:
    seconds, not minutes) sees each compile."""
    adapter_cls = require("pytorch")
    import torch
    import torch._dynamo.testing

    counter = torch._dynamo.testing.CompileCounter()
    monkeypatch.setattr(torch._dynamo.config, "fail_on_recompile_limit_hit", True)
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=counter))
    built = len(PRECISIONS) * len(PLANS["lenet"].settings)
    assert built >= torch._dynamo.config.recompile_limit
    try:
        compute_all(adapter_cls, "lenet", "cpu", "compile", "fp32", reference_outputs("lenet"))
        assert counter.frame_count >= built
        compiled = counter.frame_count
        adapter = adapter_cls("lenet", "cpu", "compile", training_config("lenet", "momentum"))
        adapter.set_params(parity_params("lenet"))
        adapter.losses_to_numpy([adapter.train_step(x, y) for x, y in model_batches("lenet")[:2]])
        assert counter.frame_count > compiled, f"adapter {built + 1} ran its step eagerly"
    finally:
        torch.compiler.reset()  # no graph of the counting backend outlives the test


def test_a_float64_caveat_holds_only_its_frameworks_float64_pairs_to_float32s_bounds(table):
    """Where a registry entry says its float64 runs partly in float32, its float64 pairs are held to
    float32's bounds and say why; every other float64 pair keeps float64's."""
    caveated = [name for name, entry in REGISTRY.items() if entry.float64_caveat and import_error(name) is None]
    if not caveated:
        pytest.skip("no framework with a float64 caveat is installed")
    rows = table("lenet")
    rows = rows[(rows["precision"] == PROOF) & ~rows["check"].isin(["round trip", "step count"])]
    frameworks = rows["pair"].str.split(" vs ").map(lambda sides: {side.split(":")[0] for side in sides})
    lowered = frameworks.map(lambda names: bool(names & set(caveated)))
    assert lowered.any() and (~lowered).any(), "both kinds of float64 pair are compared"
    fp32 = rows["check"].map(lambda check: PRECISION_TOLERANCES["fp32"].get(check, TOLERANCES[check]))
    assert (rows.loc[lowered, "tolerance"] == fp32[lowered]).all()
    assert rows.loc[lowered, "bound set on"].str.contains("keras.backend.result_type", regex=False).all()
    assert (rows.loc[~lowered, "tolerance"] == rows.loc[~lowered, "check"].map(
        lambda check: PRECISION_TOLERANCES[PROOF][check])).all()
