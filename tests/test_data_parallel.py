"""Data-parallel training through each framework's own engine (PyTorch DDP over gloo, TensorFlow
`tf.distribute`, JAX sharding over XLA host devices): two devices must take the training steps
one device takes on the global batch, in every framework and across frameworks; each process is
fed its shard of the same global batch; a job is a group of processes that a crashed member ends
as `error`, leaving nothing running; and two processes on 127.0.0.1 run one job together as two
machines would."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import psutil
import pytest

from benchmarks.checks.verdicts import failures
from benchmarks.harness import data as datasets
from benchmarks.harness.jobs import Data, Job, Placement, Timing
from benchmarks.harness.spawn import _free_port, run_workers
from benchmarks.harness.training import Feed
from frameworks import REGISTRY
from tests.conftest import ROOT, import_error, make_job, require, require_installed

pytestmark = pytest.mark.slow  # worker processes
DEVICES = 2
DEFAULTS = [f"{name}:{entry.default_variant}" for name, entry in REGISTRY.items()]


def job(framework: str = "pytorch", batch_size: int = 16, devices: int = 1, steps: int = 40, member: int = 0) -> Job:
    return make_job(framework, REGISTRY[framework].default_variant, batch_size,
                    timing=Timing(steps=steps, warmup_steps=2, window=5), data=Data(train_size=512, test_size=64),
                    placement=Placement(threads=2, devices=devices, member=member))


def test_each_process_is_fed_its_shard_of_the_same_global_batch():
    dataset = datasets.synthetic().subset(512, 64)
    whole = Feed(dataset, job(batch_size=2 * 16))
    parts = [Feed(dataset, job(devices=DEVICES, member=member)) for member in range(DEVICES)]  # DDP: a process each
    for expected, *shards in zip(whole.epoch(0), *(part.epoch(0) for part in parts)):
        for index in (0, 1):  # images, labels
            assert all(len(shard[index]) == 16 for shard in shards)
            np.testing.assert_array_equal(np.concatenate([shard[index] for shard in shards]), expected[index])
    digests = {feed.summary(fed_s=1.0, compile_threads=set()).data_digest for feed in (whole, *parts)}
    assert len(digests) == 1 and None not in digests


# --- Parity: two devices against one, and across frameworks ----------------------------------------


@pytest.fixture(scope="module")
def parallel_parity(tmp_path_factory):
    """`benchmarks.parity --framework all --model lenet,resnet9 --devices 2` as a user runs it: every
    installed framework's default variant on one device and on two; its comparisons (--csv) and
    console output."""
    if not any(import_error(variant.split(":")[0]) is None for variant in DEFAULTS):
        pytest.skip("no framework is installed")
    table_file = tmp_path_factory.mktemp("parallel-parity") / "parity.csv"
    completed = subprocess.run([sys.executable, "-m", "benchmarks.parity", "--framework", "all", "--model",
                                "lenet,resnet9", "--devices", str(DEVICES), "--csv", str(table_file)],
                               cwd=ROOT, capture_output=True, text=True, timeout=1800)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    table = pd.read_csv(table_file, keep_default_na=False, na_values={"step": [""], "error": [""], "devices": [""]})
    return table.astype({"step": "Int64"}), output


def rows_of(parallel_parity, model: str, pair: str) -> pd.DataFrame:
    table, output = parallel_parity
    rows = table[(table["model"] == model) & (table["pair"] == pair)]
    variant = pair.split(" x")[0]
    if rows.empty and f"{variant} on {DEVICES} devices:" in output:  # the framework said why it cannot
        reason = next(line for line in output.splitlines() if f"{variant} on {DEVICES} devices:" in line)
        pytest.skip(reason.strip())
    assert {"per-step", "step count", "free-running"} <= set(rows["check"]), f"nothing compared for {pair}"
    return rows


@pytest.mark.parametrize("model", ["lenet", "resnet9"])
@pytest.mark.parametrize("variant", DEFAULTS)
def test_two_devices_take_the_steps_one_device_takes_on_the_global_batch(parallel_parity, variant, model):
    require_installed(variant.split(":")[0])
    rows = rows_of(parallel_parity, model, f"{variant} x{DEVICES} vs {variant}")
    assert not failures(rows), "\n".join(failures(rows))
    assert rows["asserted"].any()


@pytest.mark.parametrize("model", ["lenet", "resnet9"])
@pytest.mark.parametrize("variant", DEFAULTS)
def test_two_devices_agree_with_the_other_frameworks_and_float64(parallel_parity, variant, model):
    require_installed(variant.split(":")[0])
    table = parallel_parity[0]
    rows_of(parallel_parity, model, f"{variant} x{DEVICES} vs float64")
    mine = table[(table["model"] == model) & table["pair"].str.contains(f"{variant} x{DEVICES}", regex=False)]
    others = mine[mine["pair"].str.count(f" x{DEVICES}") == 2]  # against another framework on two devices
    if len([name for name in DEFAULTS if import_error(name.split(":")[0]) is None]) > 1:
        assert not others.empty or model == "resnet9"  # PyTorch's ResNet-9 may have been skipped on CPU
    assert not failures(mine), "\n".join(failures(mine))


def test_the_parity_command_on_two_devices_prints_every_table_and_says_what_a_pair_does_not_cover(
        parallel_parity):
    output = parallel_parity[1]
    assert "Traceback" not in output
    for model in ("lenet", "resnet9"):
        assert f"{model}, fp32:" in output and f"{model}, fp64:" in output
    for variant in DEFAULTS:
        framework = variant.split(":")[0]
        if import_error(framework) is not None:
            continue
        if REGISTRY[framework].no_data_parallel:  # it says why it has no data-parallel rows (the console wraps it)
            assert f"{variant} on {DEVICES} devices: {REGISTRY[framework].no_data_parallel[:30]}" in output
        else:
            assert f"{variant} x{DEVICES} vs {variant}" in output  # the data-parallel rows of its table
    assert "not checked" in output  # the checks a data-parallel pair does not cover say so


# --- A job as a group of processes ----------------------------------------------------------------


def worker_processes() -> list[psutil.Process]:
    return [child for child in psutil.Process().children(recursive=True)
            if "benchmarks.harness.worker" in " ".join(child.cmdline())]


def test_a_crashed_replica_ends_the_job_as_error_naming_it_and_leaves_no_process(tmp_path):
    require("pytorch")
    ddp = job("pytorch", devices=DEVICES, steps=100000)  # runs until a replica is killed
    killed = []

    def kill_the_second_replica(_, message):
        if message["type"] == "progress" and not killed:
            second = next(process for process in worker_processes()
                          if any(f.path.endswith(".member1.log") for f in process.open_files()))
            second.send_signal(signal.SIGKILL)
            killed.append(second.pid)

    results = {}
    run_workers([ddp], [tmp_path / "job.log"], 600.0, kill_the_second_replica, results.__setitem__)
    assert killed, "the job never reported progress"
    assert results[0]["status"] == "error"
    assert f"process 1 of {DEVICES}" in results[0]["error"] and "SIGKILL" in results[0]["error"]
    deadline = time.monotonic() + 10
    while worker_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert worker_processes() == [], "a member of the job is still running"


# --- Runs ---------------------------------------------------------------------------------------


def runner(out, *args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.run", "--data", "synthetic", "--train-size", "512", "--test-size",
            "64", "--batch-size", "16", "--steps", "10", "--warmup", "2", "--window", "5", "--no-parity", "--out",
            str(out), *args]


def test_one_and_two_devices_for_every_framework_with_a_scaling_table(tmp_path):
    installed = [name for name, entry in REGISTRY.items() if import_error(name) is None and not entry.no_data_parallel]
    if not installed:
        pytest.skip("no framework with a data-parallel path is installed")
    completed = subprocess.run(runner(tmp_path, "--framework", ",".join(installed), "--devices", f"1,{DEVICES}"),
                               cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    (run_dir,) = tmp_path.iterdir()
    summary = pd.read_csv(run_dir / "summary.csv")
    assert (summary["status"] == "ok").all(), summary[["job_id", "status", "error"]]
    assert sorted(zip(summary["framework"], summary["devices"])) == sorted(
        (name, devices) for name in installed for devices in (1, DEVICES))
    assert (summary["global_batch"] == 16 * summary["devices"]).all()
    assert summary["data_digest"].nunique() == 2  # one per global batch size, the same in every framework
    report = (run_dir / "report.md").read_text()
    assert "## Scaling across devices" in report and f"scaling_x{DEVICES}" in report


@pytest.mark.parametrize("framework", list(REGISTRY))
def test_two_processes_on_this_machine_run_one_job_as_two_nodes(tmp_path, framework):
    require_installed(framework)
    entry = REGISTRY[framework]
    if entry.no_data_parallel or entry.no_multi_node:
        pytest.skip(f"{framework}: {entry.no_data_parallel or entry.no_multi_node}")
    coordinator = f"127.0.0.1:{_free_port()}"
    nodes = [subprocess.Popen(runner(tmp_path / f"node{rank}", "--framework", framework, "--nodes", "2",
                                     "--node-rank", str(rank), "--coordinator", coordinator),
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in range(2)]
    outputs = [node.communicate(timeout=900)[0] for node in nodes]
    for rank, node in enumerate(nodes):
        assert node.returncode == 0, f"node {rank}:\n{outputs[rank]}"
    (run_dir,) = (tmp_path / "node0").iterdir()
    row = pd.read_csv(run_dir / "summary.csv").iloc[0]
    assert row["status"] == "ok", row["error"]
    assert (row["devices"], row["nodes"], row["global_batch"]) == (2, 2, 32)
    assert row["windows"] > 0
