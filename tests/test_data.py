"""The data pipeline: CIFAR-10 parsing and its failure modes, the download's checksum and safe
extraction, normalisation, the seeded batch order, and the synthetic set."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from benchmarks.harness import data as datasets
from benchmarks.harness.data import DataError


def write_batch(path: Path, n: int = 20, labels=None, data=None) -> Path:
    rng = np.random.default_rng(0)
    batch = {b"batch_label": b"test", b"filenames": [b"x.png"] * n,
             b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8) if data is None else data,
             b"labels": list(rng.integers(0, 10, n)) if labels is None else labels}
    path.write_bytes(pickle.dumps(batch))
    return path


def fake_cifar10(root: Path, n: int = 20) -> Path:
    folder = root / datasets.BATCHES_DIR
    folder.mkdir(parents=True)
    for name in (*datasets.TRAIN_FILES, datasets.TEST_FILE):
        write_batch(folder / name, n)
    return folder


# --- Real CIFAR-10 ------------------------------------------------------------------------------


def test_real_cifar10_loads_with_expected_shapes_and_statistics(cifar10_dir):
    dataset = datasets.load_cifar10(datasets.find_cifar10(cifar10_dir.parent))
    assert dataset.train_images.shape == (50_000, 32, 32, 3) and dataset.train_images.dtype == np.float32
    assert dataset.test_images.shape == (10_000, 32, 32, 3)
    assert np.bincount(dataset.train_labels).tolist() == [5000] * 10
    assert np.bincount(dataset.test_labels).tolist() == [1000] * 10
    # Normalised with the official per-channel statistics: near zero mean and unit std per channel.
    assert np.abs(dataset.train_images.mean(axis=(0, 1, 2))).max() < 0.02
    assert np.abs(dataset.train_images.std(axis=(0, 1, 2)) - 1).max() < 0.02


def test_batch_pixels_are_read_in_channel_major_order(tmp_path):
    data = np.zeros((1, 3072), np.uint8)
    data[0, :1024] = 255  # the red plane comes first in the official layout
    images, _ = datasets.read_batch(write_batch(tmp_path / "b", 1, labels=[3], data=data))
    assert images.shape == (1, 32, 32, 3)
    assert (images[0, :, :, 0] == 255).all() and (images[0, :, :, 1:] == 0).all()


def test_normalise_maps_channel_means_to_zero():
    pixel = np.round(datasets.MEAN * 255).astype(np.uint8).reshape(1, 1, 1, 3)
    assert np.abs(datasets.normalise(pixel)).max() < 0.01


# --- Locating data ------------------------------------------------------------------------------


def test_data_dir_may_be_the_parent_or_the_batches_folder(tmp_path):
    folder = fake_cifar10(tmp_path)
    assert datasets.find_cifar10(tmp_path) == folder
    assert datasets.find_cifar10(folder) == folder
    assert len(datasets.load_cifar10(folder).train_labels) == 100


def test_missing_data_dir_names_the_expected_folder(tmp_path):
    with pytest.raises(DataError, match=r"no cifar-10-batches-py/ folder there \(expected .*data_batch_1"):
        datasets.find_cifar10(tmp_path / "nowhere")


def test_cache_honours_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert datasets.cache_dir() == tmp_path / "framework-bench"
    assert datasets.find_cifar10() is None
    folder = fake_cifar10(datasets.cache_dir())
    assert datasets.find_cifar10() == folder


# --- Broken and hostile batch files -------------------------------------------------------------


def test_missing_batch_file_is_named(tmp_path):
    folder = fake_cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"missing CIFAR-10 batch file .*data_batch_3"):
        datasets.load_cifar10(folder)


def test_truncated_batch_file_is_a_clear_error(tmp_path):
    path = write_batch(tmp_path / "data_batch_1")
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match=r"data_batch_1: not a readable CIFAR-10 batch"):
        datasets.read_batch(path)


def test_wrong_array_shape_is_a_clear_error(tmp_path):
    path = write_batch(tmp_path / "b", data=np.zeros((20, 1024), np.uint8))
    with pytest.raises(DataError, match=r"expected b'data' as uint8 array of shape \(N, 3072\), got \(20, 1024\)"):
        datasets.read_batch(path)


def test_labels_out_of_range_are_a_clear_error(tmp_path):
    path = write_batch(tmp_path / "b", n=2, labels=[1, 10])
    with pytest.raises(DataError, match=r"labels must lie in 0..9, found 1..10"):
        datasets.read_batch(path)


class _WritesAFile:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def test_pickle_asking_for_other_globals_is_refused_without_running(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _WritesAFile(marker), b"labels": []}))
    with pytest.raises(DataError, match=r"refused to load, it asks for builtins.exec"):
        datasets.read_batch(path)
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the same file, unpickled naively, would have run code
    assert marker.exists()


# --- Download and extraction --------------------------------------------------------------------


def make_archive(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def test_download_verifies_the_checksum_and_extracts(tmp_path):
    archive = make_archive(tmp_path / "src.tar.gz", {"cifar-10-batches-py/test_batch": b"x"})
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    folder = datasets.download_cifar10(archive.as_uri(), md5, tmp_path / "cache")
    assert folder == tmp_path / "cache" / "cifar-10-batches-py"
    assert (folder / "test_batch").read_bytes() == b"x"


def test_checksum_mismatch_downloads_once_more_then_fails_and_deletes(tmp_path, monkeypatch):
    archive = make_archive(tmp_path / "src.tar.gz", {"cifar-10-batches-py/test_batch": b"x"})
    calls = []
    real_urlopen = urllib.request.urlopen
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: calls.append(a[0]) or real_urlopen(*a, **k))
    with pytest.raises(DataError, match=r"MD5 [0-9a-f]{32} does not match the expected 0{32} after a fresh download"):
        datasets.download_cifar10(archive.as_uri(), "0" * 32, tmp_path / "cache")
    assert len(calls) == 2
    assert not (tmp_path / "cache" / "cifar-10-python.tar.gz").exists()


def test_failed_download_says_what_to_do_instead(tmp_path):
    with pytest.raises(DataError, match=r"could not download CIFAR-10 from http://127.0.0.1:9/.*--data-dir"):
        datasets.download_cifar10("http://127.0.0.1:9/cifar-10-python.tar.gz", "0" * 32, tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("member", ["../escaped", "/tmp/absolute-escape", "a/../../escaped"], ids=str)
def test_extraction_refuses_paths_outside_the_target(tmp_path, member):
    archive = make_archive(tmp_path / "evil.tar.gz", {"cifar-10-batches-py/ok": b"ok", member: b"evil"})
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(DataError, match="refuses member"):
        datasets.extract_archive(archive, target)
    assert list(target.iterdir()) == [] and not (tmp_path / "escaped").exists()


# --- Batch order and synthetic data -------------------------------------------------------------


def test_shuffle_is_a_function_of_seed_and_epoch():
    assert np.array_equal(datasets.epoch_order(1000, 7, 0), datasets.epoch_order(1000, 7, 0))
    assert not np.array_equal(datasets.epoch_order(1000, 7, 0), datasets.epoch_order(1000, 8, 0))
    assert not np.array_equal(datasets.epoch_order(1000, 7, 0), datasets.epoch_order(1000, 7, 1))


def test_training_batches_have_a_fixed_shape_and_the_same_bytes_for_the_same_seed():
    dataset = datasets.synthetic(train_size=1000, test_size=10)
    first = list(datasets.train_batches(dataset, 96, seed=3, epoch=0))
    again = list(datasets.train_batches(dataset, 96, seed=3, epoch=0))
    assert len(first) == 1000 // 96  # the partial last batch is dropped
    assert {images.shape for images, _ in first} == {(96, 32, 32, 3)}
    digest = lambda batches: [datasets.batch_digest(*batch).hexdigest() for batch in batches]  # noqa: E731
    assert digest(first) == digest(again)
    assert digest(first) != digest(datasets.train_batches(dataset, 96, seed=4, epoch=0))


@pytest.mark.parametrize("batch_size", [1, 37, 96, 128], ids=lambda size: f"batch {size}")
def test_every_training_batch_starts_aligned_and_holds_the_epoch_order(batch_size):
    """Aligned, so that a framework can take a batch on the CPU without copying it (TensorFlow and
    XLA copy any array not on a 64-byte boundary); the labels too, whatever the batch size."""
    dataset = datasets.synthetic(train_size=500, test_size=10)
    order = datasets.epoch_order(500, 2, 1)
    for step, (images, labels) in enumerate(datasets.train_batches(dataset, batch_size, seed=2, epoch=1)):
        for array in (images, labels):
            assert array.ctypes.data % datasets.ALIGNMENT == 0 and array.flags.c_contiguous
        taken = order[step * batch_size:(step + 1) * batch_size]
        np.testing.assert_array_equal(images, dataset.train_images[taken])
        np.testing.assert_array_equal(labels, dataset.train_labels[taken])
    assert step == 500 // batch_size - 1


def test_synthetic_set_is_deterministic_and_learnable():
    dataset = datasets.synthetic()
    assert np.array_equal(dataset.train_images[:5], datasets.synthetic().train_images[:5])
    assert dataset.train_images.shape == (datasets.SYNTHETIC_TRAIN, 32, 32, 3)
    # A nearest-class-mean classifier, fitted on the training set, must beat chance (10%) by far.
    means = np.stack([dataset.train_images[dataset.train_labels == c].mean(0) for c in range(10)]).reshape(10, -1)
    test = dataset.test_images.reshape(len(dataset.test_labels), -1)
    predictions = np.argmin(((test[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (predictions == dataset.test_labels).mean() > 0.5


# --- Augmentation -------------------------------------------------------------------------------


def padded_windows(image: np.ndarray):
    """Every window of `image` reflect-padded by 4 that crop-flip may return, one at a time, with
    its (row offset, column offset, flipped): the per-image definition it must agree with."""
    padded = np.pad(image, ((4, 4), (4, 4), (0, 0)), mode="reflect")
    for dy in range(9):
        for dx in range(9):
            window = padded[dy:dy + 32, dx:dx + 32]
            yield (dy, dx, False), window
            yield (dy, dx, True), window[:, ::-1]


def matching_window(augmented: np.ndarray, image: np.ndarray) -> tuple[int, int, bool]:
    (match,) = [key for key, window in padded_windows(image) if np.array_equal(window, augmented)]
    return match


def test_crop_flip_returns_a_reflect_padded_window_of_each_image_mirrored_about_half_the_time():
    images = np.random.default_rng(0).standard_normal((400, 32, 32, 3)).astype(np.float32)
    augmented = datasets.crop_flip(images, datasets.augmentation_rng(seed=0, epoch=0))
    assert augmented.shape == images.shape and augmented.dtype == np.float32
    dys, dxs, flips = zip(*(matching_window(out, image) for out, image in zip(augmented, images)))
    assert set(dys) == set(dxs) == set(range(9)), "every offset from 0 to 8 occurs in each axis"
    assert 0.4 < np.mean(flips) < 0.6


def test_crop_flip_in_place_equals_a_fresh_copy():
    images = np.random.default_rng(1).standard_normal((2500, 32, 32, 3)).astype(np.float32)  # several chunks
    fresh = datasets.crop_flip(images, datasets.augmentation_rng(3, 1))
    in_place = images.copy()
    assert datasets.crop_flip(in_place, datasets.augmentation_rng(3, 1), out=in_place) is in_place
    assert np.array_equal(in_place, fresh)


def epoch_bytes(dataset, seed: int, epoch: int, augment: str) -> bytes:
    return b"".join(images.tobytes() + labels.tobytes()
                    for images, labels in datasets.train_batches(dataset, 64, seed, epoch, augment))


@pytest.mark.parametrize("augment, without", [("crop-flip", "none"), ("crop-flip-cutout", "crop-flip")],
                         ids=["crop-flip", "crop-flip-cutout"])
def test_augmented_epochs_are_the_same_bytes_twice_and_differ_by_seed_and_epoch(augment, without):
    """`without`: the augmentation less its last part, whose bytes must differ too."""
    dataset = datasets.synthetic(train_size=512, test_size=10)
    first = epoch_bytes(dataset, 7, 0, augment)
    assert first == epoch_bytes(dataset, 7, 0, augment)
    assert first != epoch_bytes(dataset, 8, 0, augment)
    assert first != epoch_bytes(dataset, 7, 1, augment)
    assert first != epoch_bytes(dataset, 7, 0, without)


def test_augmentation_keeps_the_shuffle_and_labels_and_times_itself():
    dataset = datasets.synthetic(train_size=512, test_size=10)
    stopwatch = datasets.Stopwatch()
    plain = list(datasets.train_batches(dataset, 64, 5, 2))
    augmented = list(datasets.train_batches(dataset, 64, 5, 2, "crop-flip", stopwatch))
    assert len(augmented) == len(plain)
    for (images, labels), (plain_images, plain_labels) in zip(augmented, plain):
        assert images.shape == plain_images.shape and np.array_equal(labels, plain_labels)
    matching_window(augmented[0][0][0], plain[0][0][0])
    assert stopwatch.seconds > 0


def zeroed_square(before: np.ndarray, after: np.ndarray) -> tuple[int, int]:
    """The corner of the one 8x8 square that cutout set to 0 in every channel, everything else
    unchanged (asserted), for an image with no zero of its own."""
    changed = np.any(after != before, axis=-1)
    rows, columns = np.nonzero(changed)
    top, left = rows.min(), columns.min()
    assert changed.sum() == 64 and changed[top:top + 8, left:left + 8].all(), "one 8x8 square, nothing else"
    assert np.all(after[top:top + 8, left:left + 8] == 0.0), "the square holds 0, the channels' mean"
    return top, left


def test_cutout_zeroes_one_8x8_square_wholly_inside_each_image_at_every_place_alike():
    images = np.random.default_rng(2).standard_normal((5000, 32, 32, 3)).astype(np.float32)  # several chunks
    cut = datasets.cutout(images, datasets.augmentation_rng(seed=0, epoch=0))
    assert cut.shape == images.shape and cut.dtype == np.float32 and not np.shares_memory(cut, images)
    corners = np.array([zeroed_square(before, after) for before, after in zip(images, cut)])
    assert set(corners[:, 0]) == set(corners[:, 1]) == set(range(25)), "every corner 0..24 in each axis"
    counts = np.bincount(corners[:, 0] * 25 + corners[:, 1], minlength=625)
    # 625 places, 8 expected at each: a chi-square past its 99.9th percentile (739 with 624
    # degrees of freedom) would mean the places are not drawn alike.
    assert ((counts - 8.0) ** 2 / 8.0).sum() < 739


def test_cutout_in_place_equals_a_fresh_copy():
    images = np.random.default_rng(3).standard_normal((1500, 32, 32, 3)).astype(np.float32)
    fresh = datasets.cutout(images, datasets.augmentation_rng(4, 2))
    in_place = images.copy()
    assert datasets.cutout(in_place, datasets.augmentation_rng(4, 2), out=in_place) is in_place
    assert np.array_equal(in_place, fresh)


def test_crop_flip_cutout_is_crop_flip_with_a_square_cut_from_each_image():
    dataset = datasets.synthetic(train_size=512, test_size=10)
    cropped = [images for images, _ in datasets.train_batches(dataset, 64, 9, 3, "crop-flip")]
    cut = [images for images, _ in datasets.train_batches(dataset, 64, 9, 3, "crop-flip-cutout")]
    for before, after in zip(np.concatenate(cropped), np.concatenate(cut)):
        zeroed_square(before, after)


def test_unknown_augmentation_is_refused():
    dataset = datasets.synthetic(train_size=64, test_size=10)
    with pytest.raises(ValueError, match=r"unknown augmentation 'cutout' \(choose from: none, crop-flip, "
                                         r"crop-flip-cutout\)"):
        next(datasets.train_batches(dataset, 32, 0, 0, "cutout"))
