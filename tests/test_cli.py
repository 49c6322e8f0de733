"""Bad command-line input to `python -m benchmarks.run`: every case exits with status 2 and one
argparse-style error line that names the bad value and what would have been accepted, before
any run folder is created or any worker is started."""

from __future__ import annotations

import importlib
import json
import os
import re

import numpy as np
import pytest

from benchmarks import run
from benchmarks.harness import data as datasets
from benchmarks.harness.results import SCHEMA
from frameworks import EXTRA_ENV, REGISTRY
from frameworks.base import RESNET9_LOGIT_SCALE

CORES = len(os.sched_getaffinity(0))
NAMES = [*REGISTRY, *(alias for entry in REGISTRY.values() for alias in entry.aliases)]
ACCEPTED = f"choose from: all, {', '.join(sorted(NAMES))}"  # what an unknown framework's message offers

# (id, arguments, the text the error line must contain: the bad value, then what is accepted)
BAD_INPUT = [
    ("unknown framework", ["--framework", "mxnet"],
     ["argument --framework:", "'mxnet'", ACCEPTED]),
    ("unknown framework in a list", ["--framework", "pytorch,caffe"],
     ["argument --framework:", "'caffe'", ACCEPTED]),
    ("all combined with a framework", ["--framework", "all,jax"],
     ["argument --framework:", "'all,jax'", "combines 'all' with other names"]),
    ("framework listed twice", ["--framework", "pytorch,jax,pytorch"],
     ["argument --framework:", "'pytorch,jax,pytorch'", "lists pytorch more than once"]),
    ("framework listed twice through an alias", ["--framework", "torch,pytorch"],
     ["argument --framework:", "torch,pytorch", "names a framework twice (through an alias)"]),
    ("empty framework list entry", ["--framework", "pytorch,,jax"],
     ["argument --framework:", "'pytorch,,jax'", "has an empty entry"]),
    ("unknown model", ["--model", "resnet50"],
     ["argument --model:", "'resnet50'", "choose from: lenet, resnet9"]),
    ("target accuracy above 1", ["--target-accuracy", "1.5", "--epochs", "2"],
     ["argument --target-accuracy:", "'1.5'", "must be an accuracy in (0, 1]"]),
    ("target accuracy of a timing-only run", ["--target-accuracy", "0.5", "--steps", "10"],
     ["argument --target-accuracy:", "needs epochs to evaluate after (give --epochs N)"]),
    ("unknown model in a list", ["--model", "lenet,vgg"],
     ["argument --model:", "'vgg'", "choose from: lenet, resnet9"]),
    ("model twice", ["--model", "resnet9,resnet9"],
     ["argument --model:", "'resnet9,resnet9'", "lists resnet9 more than once"]),
    ("unknown variant", ["--framework", "pytorch", "--variant", "pytorch:graph"],
     ["argument --variant:", "'graph'", "choose from: all, eager, compile"]),
    ("variant of an unknown framework", ["--variant", "mxnet:eager"],
     ["argument --variant:", "'mxnet'", ACCEPTED]),
    ("variant without its framework", ["--variant", "eager"],
     ["argument --variant:", "'eager'", "is not framework:variant (or 'all', 'default')"]),
    ("variant of a framework not selected", ["--framework", "jax", "--variant", "pytorch:eager"],
     ["argument --variant:", "'pytorch:eager'", "which --framework does not select"]),
    ("variant listed twice", ["--framework", "pytorch", "--variant", "pytorch:eager,pytorch:eager"],
     ["argument --variant:", "'pytorch:eager,pytorch:eager'", "lists pytorch:eager more than once"]),
    ("all variants combined with one", ["--variant", "all,pytorch:eager"],
     ["argument --variant:", "'all,pytorch:eager'", "combines 'all' with framework:variant entries"]),
    ("batch size zero", ["--batch-size", "0"],
     ["argument --batch-size:", "'0'", "must be a positive integer (1 or more)"]),
    ("batch size negative", ["--batch-size", "-32"],
     ["argument --batch-size:", "'-32'", "must be a positive integer (1 or more)"]),
    ("batch size zero in a sweep", ["--batch-size", "32,0,128"],
     ["argument --batch-size:", "'0'", "must be a positive integer (1 or more)"]),
    ("batch size not a number", ["--batch-size", "big"],
     ["argument --batch-size:", "'big'", "is not an integer"]),
    ("batch size listed twice", ["--batch-size", "32,128,32"],
     ["argument --batch-size:", "'32,128,32'", "lists 32 more than once"]),
    ("weight decay of one", ["--weight-decay", "1"],
     ["argument --weight-decay:", "'1'", "must be a number in [0, 1)"]),
    ("momentum not a number", ["--momentum", "high"],
     ["argument --momentum:", "'high'", "must be a number in [0, 1)"]),
    ("epochs negative", ["--epochs", "-1"],
     ["argument --epochs:", "'-1'", "must be 0 or more"]),
    ("steps negative", ["--steps", "-5"],
     ["argument --steps:", "'-5'", "must be 0 or more"]),
    ("zero epochs and no steps", ["--epochs", "0"],
     ["argument --epochs:", "--epochs 0", "give --steps N"]),
    ("threads zero", ["--threads", "0"],
     ["argument --threads:", "'0'", "must be a positive integer (1 or more)"]),
    ("more threads than cores", ["--threads", str(CORES + 1)],
     ["argument --threads:", f"{CORES + 1} exceeds the {CORES} cores"]),
    ("device tpu", ["--device", "tpu"],
     ["argument --device:", "'tpu'", "choose from 'cpu', 'cuda'"]),
    ("device in capitals", ["--device", "CUDA"],
     ["argument --device:", "'CUDA'", "choose from 'cpu', 'cuda'"]),
    ("job timeout zero", ["--job-timeout", "0"],
     ["argument --job-timeout:", "'0'", "must be positive"]),
    ("label smoothing of one", ["--label-smoothing", "1"],
     ["argument --label-smoothing:", "'1'", "must be a number in [0, 1)"]),
    ("warm-up of the whole run", ["--lr-schedule", "onecycle", "--lr-warmup", "1.0"],
     ["argument --lr-warmup:", "'1.0'", "must be a number in [0, 1)"]),
    ("unknown schedule", ["--lr-schedule", "step"],
     ["argument --lr-schedule:", "'step'", "choose from 'constant', 'cosine', 'onecycle'"]),
    ("nesterov without momentum", ["--nesterov", "--momentum", "0"],
     ["argument --nesterov:", "needs a momentum above 0"]),
    ("evaluation interval of a timing-only run", ["--eval-every", "10", "--steps", "10"],
     ["argument --eval-every:", "needs epochs to evaluate in (give --epochs N)"]),
    ("evaluation interval zero", ["--eval-every", "0"],
     ["argument --eval-every:", "'0'", "must be a positive integer (1 or more)"]),
    ("unknown recipe", ["--recipe", "resnet18"],
     ["argument --recipe:", "'resnet18'", "choose from 'resnet9-94'"]),
    ("recipe's nesterov without momentum", ["--recipe", "resnet9-94", "--momentum", "0"],
     ["argument --nesterov:", "needs a momentum above 0"]),
    ("unknown augmentation", ["--augment", "cutout"],
     ["argument --augment:", "'cutout'", "choose from 'none', 'crop-flip', 'crop-flip-cutout'"]),
    ("cutout on a native pipeline", ["--augment", "crop-flip-cutout", "--input", "native"],
     ["argument --augment:", "crop-flip-cutout feeds the suite's own pipeline only", "give --augment crop-flip"]),
    ("the recipe's cutout on a native pipeline", ["--recipe", "resnet9-94", "--input", "prefetch,native"],
     ["argument --augment:", "crop-flip-cutout feeds the suite's own pipeline only"]),
    ("zero devices", ["--devices", "1,0"], ["argument --devices:", "'0'", "must be a positive integer"]),
    ("nodes without a coordinator", ["--nodes", "2"],
     ["argument --nodes:", "give --coordinator HOST:PORT"]),
    ("node rank past the nodes", ["--nodes", "2", "--node-rank", "2", "--coordinator", "127.0.0.1:29500"],
     ["argument --node-rank:", "2 is not below --nodes 2"]),
    ("coordinator without a port", ["--coordinator", "10.0.0.1"],
     ["argument --coordinator:", "'10.0.0.1'", "is not HOST:PORT"]),
    ("hosts for other nodes", ["--nodes", "2", "--coordinator", "a:1", "--node-hosts", "a,b,c"],
     ["argument --node-hosts:", "names 3 hosts for --nodes 2"]),
    ("unknown tuning profile", ["--tuning", "fast"],
     ["argument --tuning:", "'fast'", "choose from 'stock', 'tuned', 'both'"]),
    ("unknown input path", ["--input", "native,disk"],
     ["argument --input:", "'disk': not an input path", "prefetch, resident, step, native"]),
    ("negative input workers", ["--input", "native", "--input-workers", "-1"],
     ["argument --input-workers:", "-1 is not in 0.."]),
    ("more input workers than cores", ["--input", "native", "--input-workers", "100000"],
     ["argument --input-workers:", "100000 is not in 0..", "a worker per core"]),
    ("input workers without a native pipeline", ["--input-workers", "1"],
     ["argument --input-workers:", "give --input native"]),
    ("native input over several devices", ["--input", "native", "--devices", "2"],
     ["argument --input:", "native pipelines feed one device"]),
    ("no seeds", ["--seeds", "0"], ["argument --seeds:", "'0'", "must be a positive integer (1 or more)"]),
    ("seeds not a number", ["--seeds", "five"], ["argument --seeds:", "'five'", "is not an integer"]),
    ("negative seed in a list", ["--seeds", "3,-1"], ["argument --seeds:", "'-1'", "must be 0 or more"]),
    ("seed listed twice", ["--seeds", "3,7,3"], ["argument --seeds:", "'3,7,3'", "lists 3 more than once"]),
    ("empty seed list entry", ["--seeds", "3,"], ["argument --seeds:", "'3,'", "has an empty entry"]),
    ("a list of seeds and a first seed", ["--seeds", "3,7", "--seed", "5"],
     ["argument --seeds:", "a list names every seed itself: drop --seed"]),
]


@pytest.fixture(autouse=True)
def real_frameworks_only(monkeypatch):
    """The accepted names in the messages are the three real frameworks, whatever the shell exports."""
    monkeypatch.delenv(EXTRA_ENV, raising=False)


def error_line(capsys, argv: list[str]) -> str:
    """Run the CLI in-process, assert status 2 and a single error line, and return it."""
    with pytest.raises(SystemExit) as exit_info:
        run.main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert lines[0].startswith("usage: python -m benchmarks.run")
    assert [line for line in lines if "error" in line] == [lines[-1]]  # one line, the last, says what is wrong
    assert lines[-1].startswith("python -m benchmarks.run: error: ")
    return lines[-1]


@pytest.mark.parametrize("argv, expected", [case[1:] for case in BAD_INPUT], ids=[case[0] for case in BAD_INPUT])
def test_bad_argument_exits_2_naming_value_and_choices(capsys, tmp_path, argv, expected):
    out = tmp_path / "results"
    line = error_line(capsys, [*argv, "--data", "synthetic", "--out", str(out)])
    for text in expected:
        assert text in line
    assert not out.exists()  # nothing was started


def test_an_extra_framework_the_registry_refuses_exits_2_naming_it(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv(EXTRA_ENV, "all=tests.standin_framework:numpy")
    line = error_line(capsys, ["--framework", "pytorch", "--data", "synthetic", "--out", str(tmp_path / "results")])
    assert f"argument --framework: {EXTRA_ENV}: 'all' cannot name a framework" in line


def test_out_that_is_a_file_exits_2_naming_it(capsys, tmp_path):
    earlier = tmp_path / "results"
    earlier.write_text("an earlier file that must survive\n")
    line = error_line(capsys, ["--framework", "pytorch", "--data", "synthetic", "--out", str(earlier)])
    assert f"argument --out: cannot create a run folder in '{earlier}'" in line
    assert "Not a directory" in line
    assert earlier.read_text() == "an earlier file that must survive\n"


def test_resume_of_a_folder_that_is_not_a_run_exits_2(capsys, tmp_path):
    (tmp_path / "summary.csv").write_text("kept\n")
    line = error_line(capsys, ["--resume", str(tmp_path)])
    assert f"argument --resume: {tmp_path} is not a run folder (no plan.json)" in line
    assert sorted(path.name for path in tmp_path.iterdir()) == ["summary.csv"]


def test_resume_of_a_run_planned_in_an_older_form_exits_2(capsys, tmp_path):
    flat_job = {"kind": "benchmark", "framework": "pytorch", "variant": "eager", "model": "lenet", "batch_size": 32}
    (tmp_path / "plan.json").write_text(json.dumps({"jobs": [flat_job]}))
    (tmp_path / "env.json").write_text(json.dumps({"schema": SCHEMA}))
    line = error_line(capsys, ["--resume", str(tmp_path)])
    assert "describes its jobs in an older form" in line and "rerun the command in its env.json" in line


def test_resume_of_a_run_of_another_schema_exits_2(capsys, tmp_path):
    """Its tables' columns are not this version's: appending to them would mix two layouts."""
    (tmp_path / "plan.json").write_text("{}")
    (tmp_path / "env.json").write_text("{}")  # written before the schema was recorded: version 1
    line = error_line(capsys, ["--resume", str(tmp_path)])
    assert f"argument --resume: {tmp_path} was written under results schema 1; this version writes schema" in line
    assert sorted(path.name for path in tmp_path.iterdir()) == ["env.json", "plan.json"]


def test_extra_framework_is_accepted_once_registered(capsys, faulty):
    """The accepted names follow the registry: a registered extra framework is listed."""
    line = error_line(capsys, ["--framework", "mxnet"])
    assert f"choose from: all, {', '.join(sorted([*NAMES, 'faulty']))}" in line


def test_optimizer_settings_accept_scientific_notation():
    args = run.build_parser().parse_args(["--weight-decay", "5e-4", "--momentum", "0.9", "--lr", "1e-2"])
    assert (args.weight_decay, args.momentum, args.lr) == (5e-4, 0.9, 1e-2)


def test_recipe_settings_are_defaults_that_explicit_options_override():
    parser = run.build_parser()
    args = run.parse_arguments(parser, ["--recipe", "resnet9-94", "--batch-size", "64", "--framework", "jax"])
    jobs = run.plan_jobs(args, run.cli.selection_from_args(parser, args), "synthetic", None)
    assert len(jobs) == 1
    job = jobs[0]
    assert (job.what.model, job.what.batch_size, job.timing.epochs, job.data.augment) == (
        "resnet9", 64, 24, "crop-flip-cutout")
    timing = run.parse_arguments(parser, ["--recipe", "resnet9-94", "--steps", "30"])
    assert timing.epochs is None, "a timing-only run keeps its own epochs"
    assert run.parse_arguments(parser, []).nesterov is False, "a recipe must not stick to the parser"


def test_the_resnet9_recipe_is_the_dawnbench_dawn_py():
    """Myrtle.ai's dawn.py (davidcpage/cifar10-fast), setting by setting: epochs = 24, batch_size =
    512 (drop_last: 97 steps an epoch), train_transforms = [Crop(32, 32), FlipLR(), Cutout(8, 8)]
    after pad(..., 4), Nesterov (utils.py's, PyTorch's form) with momentum 0.9, weight_decay 5e-4,
    CrossEntropyLoss without smoothing, net(weight=0.125), and the rate of step k (from 0) set to
    PiecewiseLinear([0, 5, epochs], [0, 0.4, 0])(k / 97) (its loss summed over the batch, its rate
    divided by 512 and its decay multiplied by 512: the same steps on the batch mean)."""
    parser = run.build_parser()
    args = run.parse_arguments(parser, ["--recipe", "resnet9-94", "--framework", "pytorch"])
    (job,) = run.plan_jobs(args, run.cli.selection_from_args(parser, args), "cifar10", None)
    per_epoch = 50_000 // 512
    config = job.train_config(total_steps=24 * per_epoch)
    assert (job.what.model, job.what.batch_size, job.timing.epochs) == ("resnet9", 512, 24)
    assert (job.data.augment, datasets.PAD, datasets.CUTOUT) == ("crop-flip-cutout", 4, 8)
    assert (config.momentum, config.nesterov, config.weight_decay, config.label_smoothing) == (0.9, True, 5e-4, 0.0)
    assert RESNET9_LOGIT_SCALE == 0.125
    steps = np.arange(24 * per_epoch)
    published = np.interp(steps / per_epoch, [0, 5, 24], [0, 0.4, 0])
    assert np.allclose([config.learning_rate_at(int(step)) for step in steps], published, rtol=1e-12, atol=1e-15)


def test_a_model_list_plans_every_job_for_each_model():
    parser = run.build_parser()
    args = parser.parse_args(["--model", "resnet9,lenet", "--framework", "pytorch", "--batch-size", "8,16"])
    selection = run.cli.selection_from_args(parser, args)
    jobs = run.plan_jobs(args, selection, "synthetic", None)
    assert selection.models == ("resnet9", "lenet")
    assert [(job.what.model, job.what.batch_size) for job in jobs] == [
        ("resnet9", 8), ("resnet9", 16), ("lenet", 8), ("lenet", 16)]
    assert len({job.job_id for job in jobs}) == len(jobs), "job ids must differ between models"


@pytest.mark.parametrize("argv, seeds", [([], [0]), (["--seeds", "3", "--seed", "5"], [5, 6, 7]),
                                         (["--seeds", "7,0"], [7, 0]), (["--seeds", "11"], list(range(11)))],
                         ids=["one seed, 0", "a count from --seed", "a list", "a count of 11 (no comma)"])
def test_every_seed_runs_its_repeats_as_jobs_of_their_own_and_seed_0_keeps_its_ids(argv, seeds):
    parser = run.build_parser()
    args = parser.parse_args(["--framework", "pytorch", "--repeats", "2", *argv])
    jobs = run.plan_jobs(args, run.cli.selection_from_args(parser, args), "synthetic", None)
    assert [(job.seed, job.repeat) for job in jobs] == [(seed, repeat) for seed in seeds for repeat in (1, 2)]
    for job in jobs:
        seeded = f"-s{job.seed}" if job.seed else ""
        assert job.job_id == f"lenet-pytorch-eager-tuned-bs128{seeded}-r{job.repeat}"
        assert job.label.endswith(f"{f', seed {job.seed}' if job.seed else ''}, repeat {job.repeat}")
    assert len({job.job_id for job in jobs}) == len(jobs)


@pytest.mark.parametrize("argv, augment", [([], "none"), (["--augment", "crop-flip"], "crop-flip")],
                         ids=["by default none", "crop-flip"])
def test_every_job_carries_the_augmentation(argv, augment):
    parser = run.build_parser()
    args = parser.parse_args(["--framework", "pytorch,jax", "--batch-size", "8,16", *argv])
    jobs = run.plan_jobs(args, run.cli.selection_from_args(parser, args), "synthetic", None)
    assert len(jobs) == 4 and {job.data.augment for job in jobs} == {augment}


@pytest.mark.parametrize("argv, message", [(["nope"], "invalid choice: 'nope'"), (["pytorch", "100"], "at least 250")])
def test_page_faults_probe_rejects_bad_input_in_one_line(argv, message, capsys):
    from benchmarks.page_faults import parse
    with pytest.raises(SystemExit) as exit_:
        parse(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("command", ["run", "parity", "overhead", "hotpath", "device_check"])
def test_help_explains_every_option_and_states_each_default_once(command, capsys):
    module = importlib.import_module(f"benchmarks.{command}")
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    options = re.split(r"\n  (?=-)", text.split("options:", 1)[1])[1:]
    assert options, "no option listed"
    for option in options:
        name, _, help_text = option.partition(" ")
        assert help_text.strip(), f"{name} has no help"
        assert " ".join(option.split()).count("(default") <= 1, f"{name} states its default twice: {option}"
    assert "(default: None)" not in text and "(default: [" not in text


def test_the_overhead_command_fails_naming_each_ratio_over_its_bound(monkeypatch, capsys):
    """The bound is checked, not only printed: one ratio over it makes the command exit 1 and say
    which job and input path, and the jobs within it are still reported."""
    from benchmarks import overhead

    def worker(job, log_path, timeout, on_message):
        ratio = 1.2 if job.data.input == "step" else 1.01
        return {"status": "ok", "pairs": 3, "copy_ms": 0.01, "runner_ms": 10 * ratio, "minimal_ms": 10.0,
                "ratio": ratio, "ratio_iqr": "1.0-1.1"}

    monkeypatch.setattr(overhead, "run_worker", worker)
    assert overhead.main(["--framework", "pytorch", "--input", "prefetch,step"]) == 1
    output = capsys.readouterr().out
    assert ("over the bound: lenet pytorch:eager tuned, step input: the runner's step is 1.200x the bare loop's"
            in output)
    assert "prefetch input" not in output and " prefetch " in output
    assert overhead.main(["--framework", "pytorch", "--input", "prefetch"]) == 0
    assert overhead.main(["--framework", "pytorch", "--input", "prefetch", "--tuning", "both"]) == 0
    assert {"stock", "tuned"} <= set(capsys.readouterr().out.split()), "each profile is a row of its own"


def test_the_overhead_command_refuses_an_unknown_input_path(capsys):
    from benchmarks import overhead

    with pytest.raises(SystemExit) as exit_:
        overhead.main(["--input", "prefetch,native"])
    assert exit_.value.code == 2
    assert "unknown input path native (choose from: all, prefetch, resident, step)" in capsys.readouterr().err
