"""Each framework's own input pipeline (`--input native`): it is built from the suite's verified
arrays and never opens a data file, serves every training image once per epoch, normalises as the
suite does, and draws crop offsets and flips as the recipe says. The bytes differ from the
suite's (each library draws its own crops), so equivalence is shown statistically."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from benchmarks.harness import data as datasets
from benchmarks.harness.jobs import Data
from benchmarks.run import input_paths
from frameworks import REGISTRY
from frameworks.base import NativeInput, PipelineUnavailable, TrainConfig
from tests.conftest import ROOT, make_job, require
from tests.test_data import _WritesAFile, fake_cifar10

pytestmark = pytest.mark.in_process  # adapters built here (conftest: a Keras backend apart runs them apart)


def pipeline_batches(framework: str, images: np.ndarray, *, augment: bool, batch_size: int, epochs: int,
                     seed: int = 0) -> list[np.ndarray]:
    """Every batch the framework's native pipeline serves, as NHWC float32 NumPy images."""
    adapter = require(framework)("lenet", "cpu", REGISTRY[framework].default_variant, TrainConfig())
    source = NativeInput(images, np.zeros(len(images), np.int32), tuple(map(float, datasets.MEAN)),
                         tuple(map(float, datasets.STD)), 255.0, augment, datasets.PAD, batch_size, epochs, seed, 0)
    batches = [np.asarray(images) for images, _ in adapter.native_input(source).batches]
    return [batch.transpose(0, 2, 3, 1) if framework == "pytorch" else batch for batch in batches]  # NCHW there


def numbered_images(n: int) -> np.ndarray:
    """Random uint8 images whose first pixel's red and green spell the image's number."""
    images = np.random.default_rng(1).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    images[:, 0, 0, 0], images[:, 0, 0, 1] = np.arange(n) % 256, np.arange(n) // 256
    return images


def numbers(batch: np.ndarray) -> np.ndarray:
    pixels = np.rint((batch[:, 0, 0, :2] * datasets.STD[:2] + datasets.MEAN[:2]) * 255).astype(int)
    return pixels[:, 0] + 256 * pixels[:, 1]


def test_every_training_image_appears_once_per_epoch(framework):
    images, batch_size = numbered_images(200), 32  # 6 whole batches an epoch, 8 images dropped
    batches = pipeline_batches(framework, images, augment=False, batch_size=batch_size, epochs=2)
    assert len(batches) == 2 * (200 // batch_size) and all(len(batch) == batch_size for batch in batches)
    first, second = (np.concatenate([numbers(batch) for batch in batches[epoch * 6:(epoch + 1) * 6]])
                     for epoch in (0, 1))
    for epoch in (first, second):
        assert len(set(epoch)) == len(epoch) == 192 and set(epoch) <= set(range(200))
    assert not np.array_equal(first, second)  # shuffled afresh each epoch


def test_without_augmentation_normalised_pixels_equal_the_suites(framework):
    images = numbered_images(200)
    for batch in pipeline_batches(framework, images, augment=False, batch_size=50, epochs=1):
        expected = datasets.normalise(images[numbers(batch)])
        assert batch.dtype == np.float32
        np.testing.assert_allclose(batch, expected, rtol=0, atol=4 * np.finfo(np.float32).eps * np.abs(expected).max())


def test_crop_offsets_and_flips_follow_the_recipe(framework):
    """One noise image drawn 1620 times: each draw is matched to the one window (81 offsets, each
    mirrored or not) of the reflect-padded image it equals; offsets must be uniform over the 81
    and flips a fair coin (goodness of fit at the 0.1% level; fixed seeds, so never flaky)."""
    image = np.random.default_rng(2).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    draws = np.concatenate(pipeline_batches(framework, np.repeat(image, 1620, axis=0), augment=True, batch_size=162,
                                            epochs=1, seed=3))
    padded = np.pad(datasets.normalise(image)[0], ((4, 4), (4, 4), (0, 0)), mode="reflect")
    windows = np.stack([padded[top:top + 32, left:left + 32] for top in range(9) for left in range(9)])
    candidates = np.concatenate([windows, windows[:, :, ::-1]])  # 81 plain, then 81 mirrored
    distance = np.abs(draws[:, None] - candidates[None]).max(axis=(2, 3, 4))
    matched = distance.argmin(axis=1)
    assert (distance[np.arange(len(draws)), matched] < 1e-5).all(), "a draw is no reflect-padded window of the image"
    offsets, flipped = matched % 81, matched >= 81
    assert stats.chisquare(np.bincount(offsets, minlength=81)).pvalue > 1e-3
    assert stats.binomtest(int(flipped.sum()), len(flipped), 0.5).pvalue > 1e-3


@pytest.mark.parametrize("framework, package", [("pytorch", "torchvision"), ("jax", "grain")], ids=str)
def test_a_missing_pipeline_package_is_named(framework, package, monkeypatch):
    adapter = require(framework)("lenet", "cpu", REGISTRY[framework].default_variant, TrainConfig())
    monkeypatch.setitem(sys.modules, package, None)  # what `import` then finds: as if not installed
    if package == "torchvision":
        monkeypatch.setitem(sys.modules, "torchvision.transforms", None)
    source = NativeInput(numbered_images(8), np.zeros(8, np.int32), (0.0,) * 3, (1.0,) * 3, 255.0, False, 4, 4, 1, 0, 0)
    with pytest.raises(PipelineUnavailable, match=f"{package} is not installed"):
        adapter.native_input(source)


def test_native_alone_runs_beside_the_suite_path_and_the_job_ids_tell_them_apart():
    assert input_paths("native") == ["prefetch", "native"]
    assert input_paths("resident,native") == ["resident", "native"]
    suite, native = make_job(), make_job(data=Data(input="native"))
    assert native.job_id == suite.job_id.replace("-r1", "-native-r1")
    assert native.label.endswith(", native input, repeat 1")


def test_a_crafted_pickle_in_the_data_dir_is_never_executed_on_the_native_path(tmp_path):
    """torchvision's CIFAR10 would unpickle the batch files with plain `pickle`; the native path
    reads them through the suite's loader, which refuses the crafted file before any job starts."""
    folder = fake_cifar10(tmp_path / "data")
    marker = tmp_path / "executed"
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": _WritesAFile(marker), b"labels": []}))
    completed = subprocess.run([sys.executable, "-m", "benchmarks.run", "--framework", "all", "--input", "native",
                                "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "results")],
                               cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2
    assert "refused to load, it asks for builtins.exec" in completed.stdout
    assert not marker.exists() and not (tmp_path / "results").exists()


@pytest.mark.slow
def test_native_rows_stand_beside_the_suite_fed_rows_with_their_costs(augmented_run):
    run_dir, summary = augmented_run
    assert (summary["status"] == "ok").all(), summary[["job_id", "status", "error"]]
    frameworks = summary["framework"].nunique()  # every installed one, each fed both ways
    assert sorted(summary["input"]) == ["native"] * frameworks + ["prefetch"] * frameworks
    native = summary[summary["input"] == "native"]
    assert native["input_workers"].notna().all() and (native["input_cpu_s"] > 0).all()
    assert native["input_stall_share"].between(0, 1).all() and (native["epoch_s"] > 0).all()
    assert native["data_digest"].isna().all()  # nothing to hash: the bytes are the library's own
    report = (run_dir / "report.md").read_text()
    heading = "## Input pipelines: each framework's own against the suite's"
    assert heading in report
    section = report.split(heading)[1].split("\n## ")[0]
    assert section.count("| native ") == frameworks and section.count("| prefetch ") == frameworks
    assert "vs_suite" in section
