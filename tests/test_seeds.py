"""A seed (`--seeds`, a job's `seed`) sets everything a run draws: the initial weights every
framework loads, the batch order and the augmentation, on the suite's pipeline and on each
framework's own; the same seed draws the same ones, bit for bit, and another seed other ones."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from benchmarks.harness import data as datasets, training
from benchmarks.harness.jobs import Data, Timing
from frameworks import REGISTRY
from frameworks.base import TrainConfig, TrainingState, init_params
from tests.conftest import FRAMEWORKS, QuietChannel, make_job, require
from tests.faulty_framework import FaultyAdapter
from tests.test_native_input import numbered_images, numbers

SAME, OTHER = 3, 4  # two seeds; SAME is drawn twice


def seeded(job, seed: int):
    return dataclasses.replace(job, seed=seed)


def stored_dataset(stored: np.ndarray) -> datasets.Dataset:
    """uint8 images as CIFAR-10's loader keeps them for the native pipelines, all of class 0; the first 8 make
    the test set."""
    images, labels = datasets.normalise(stored), np.zeros(len(stored), np.int32)
    return datasets.Dataset("synthetic", "test images", images, labels, images[:8], labels[:8], stored)


def mostly_other(drawn: np.ndarray, reference: np.ndarray) -> bool:
    """Whether all but a few of the values differ (two independent draws coincide now and then in float32)."""
    return np.mean(drawn == reference) < 0.01


def one_image_many_times(count: int) -> np.ndarray:
    """A noise image repeated: the batches' order cannot show, so what differs between them is augmentation."""
    return np.repeat(np.random.default_rng(5).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8), count, axis=0)


# --- In every framework (adapters built here: conftest runs a Keras backend apart under its own) ---


@pytest.mark.in_process
@pytest.mark.parametrize("framework", FRAMEWORKS, ids=str)
def test_a_seed_sets_the_initial_weights_each_framework_trains_from(framework):
    adapter = require(framework)("lenet", "cpu", REGISTRY[framework].default_variant, TrainConfig())

    def loaded(seed: int) -> dict[str, np.ndarray]:  # what the worker loads: init_params(model, job.seed)
        adapter.set_params(init_params("lenet", seed))
        return adapter.get_params()

    first, again, other = loaded(SAME), loaded(SAME), loaded(OTHER)
    for name, value in first.items():
        np.testing.assert_array_equal(again[name], value, err_msg=name)
        np.testing.assert_array_equal(value, init_params("lenet", SAME)[name], err_msg=name)
        assert mostly_other(other[name], value), f"{framework}: {name} is much the same under seed {OTHER}"


@pytest.mark.in_process
@pytest.mark.parametrize("framework", FRAMEWORKS, ids=str)
def test_a_seed_sets_the_batch_order_and_augmentation_of_each_frameworks_own_pipeline(framework):
    """Through the worker's `NativeFeed`, as --input native runs it (its workers in the training process):
    numbered images without augmentation show the order, one image many times with crop and flip the
    augmentation."""
    adapter = require(framework)("lenet", "cpu", REGISTRY[framework].default_variant, TrainConfig())

    def served(stored: np.ndarray, augment: str, seed: int) -> np.ndarray:
        job = seeded(make_job(framework, REGISTRY[framework].default_variant, batch_size=16,
                              data=Data(augment=augment, input="native", input_workers=0)), seed)
        feed = training.NativeFeed(adapter, stored_dataset(stored), job, epochs=1)
        batches = [np.asarray(images) for images, _ in feed.epoch(0)]
        feed.pipeline.close()
        images = np.concatenate(batches)
        return images.transpose(0, 2, 3, 1) if framework == "pytorch" else images  # NCHW there

    numbered = numbered_images(64)
    first, again, other = (numbers(served(numbered, "none", seed)) for seed in (SAME, SAME, OTHER))
    np.testing.assert_array_equal(first, again)
    assert sorted(first) == sorted(other) and not np.array_equal(first, other), "another seed, another order"
    repeated = one_image_many_times(64)
    first, again, other = (served(repeated, "crop-flip", seed) for seed in (SAME, SAME, OTHER))
    np.testing.assert_array_equal(first, again)
    differ = np.abs(first - other).max(axis=(1, 2, 3)) > 0
    assert differ.mean() > 0.9, f"another seed crops and flips {differ.mean():.0%} of the images otherwise"


# --- In the harness, which every framework's worker runs -----------------------------------------


class Recording(FaultyAdapter):
    """faulty:ok keeping the weights it is first given and every batch it trains on."""

    made: list = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.first: dict[str, np.ndarray] | None = None
        self.batches: list[tuple[np.ndarray, np.ndarray]] = []
        Recording.made.append(self)

    def set_state(self, state: TrainingState) -> None:
        if self.first is None:
            self.first = state.params
        super().set_state(state)

    def train_step(self, images, labels):
        self.batches.append((np.array(images), np.array(labels)))
        return super().train_step(images, labels)


@pytest.mark.parametrize("augment", ["none", "crop-flip-cutout"])
def test_a_jobs_seed_sets_the_weights_it_starts_from_and_the_suites_batches(monkeypatch, augment):
    """A job run in the worker's code (`run_benchmark`) on the suite's pipeline, which feeds every framework the
    same bytes: its seed sets the weights loaded and, without augmentation on the synthetic set, the batch
    order (the labels' sequence); with augmentation on one image many times, the crops, flips and cutouts."""
    monkeypatch.setattr(training, "load_adapter", lambda name: Recording)
    dataset = (datasets.synthetic().subset(64, 16) if augment == "none"
               else stored_dataset(one_image_many_times(64)))
    monkeypatch.setattr(training, "load_dataset", lambda job: dataset)
    job = make_job(timing=Timing(epochs=2, warmup_steps=1, window=2), data=Data(augment=augment, input="step"))
    runs = []
    for seed in (SAME, SAME, OTHER):
        result = training.run_benchmark(seeded(job, seed), QuietChannel())
        assert result["status"] == "ok"
        runs.append((Recording.made[-1], result["data_digest"]))
    (first, digest), (again, digest_again), (other, other_digest) = runs
    assert first.first.keys() == init_params("lenet", SAME).keys()
    for name, value in init_params("lenet", SAME).items():
        np.testing.assert_array_equal(first.first[name], value)
        np.testing.assert_array_equal(again.first[name], value)
        assert mostly_other(other.first[name], value), name
    assert len(first.batches) == len(other.batches) == 2 * 64 // 32
    assert digest == digest_again != other_digest
    for (images, labels), (same_images, same_labels) in zip(first.batches, again.batches):
        np.testing.assert_array_equal(images, same_images)
        np.testing.assert_array_equal(labels, same_labels)
    if augment == "none":
        assert not np.array_equal(*(np.concatenate([labels for _, labels in run.batches]) for run in (first, other)))
    else:
        assert all(not np.array_equal(images, other_images)
                   for (images, _), (other_images, _) in zip(first.batches, other.batches))
