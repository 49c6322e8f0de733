"""CIFAR-10 and a learnable synthetic stand-in as NumPy arrays: the checksum-verified download,
a parser for the python batches that never runs pickled code, per-channel normalisation, and
the seeded batch order and augmentation that every framework is fed."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import shutil
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
BATCHES_DIR = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
NUM_CLASSES = 10
MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)  # per channel, of the training images in [0, 1]
STD = np.array([0.2470, 0.2435, 0.2616], np.float32)


class DataError(RuntimeError):
    """A data set that cannot be used, with the file and what was expected."""


@dataclass(frozen=True)
class Dataset:
    name: str  # "cifar10" or "synthetic"
    source: str  # where it came from, for tables and the report
    train_images: np.ndarray  # (N, 32, 32, 3) float32, normalised
    train_labels: np.ndarray  # (N,) int32
    test_images: np.ndarray
    test_labels: np.ndarray
    train_stored: np.ndarray | None = None  # the training images as stored (uint8 NHWC), kept for native pipelines

    def subset(self, train_size: int | None, test_size: int | None) -> Dataset:
        stored = None if self.train_stored is None else self.train_stored[:train_size]
        return Dataset(self.name, self.source, self.train_images[:train_size], self.train_labels[:train_size],
                       self.test_images[:test_size], self.test_labels[:test_size], stored)

    def pixels(self) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
        """What a native pipeline starts from: (training images, scale, mean, std), which give the
        suite's `train_images` as `(images / scale - mean) / std`: the stored uint8 pixels with
        CIFAR-10's statistics, or (synthetic data, stored as floats) the images themselves."""
        if self.train_stored is not None:
            return self.train_stored, 255.0, MEAN, STD
        return self.train_images, 1.0, np.zeros(3, np.float32), np.ones(3, np.float32)


def normalise(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC -> float32, per-channel zero mean and unit variance."""
    return ((images.astype(np.float32) / 255.0 - MEAN) / STD).astype(np.float32)


# --- Locating and downloading CIFAR-10 ----------------------------------------------------------


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "framework-bench"


def batches_folder(data_dir: Path) -> Path:
    """`data_dir` itself or its `cifar-10-batches-py/` child."""
    return data_dir if data_dir.name == BATCHES_DIR else data_dir / BATCHES_DIR


def find_cifar10(data_dir: Path | None = None) -> Path | None:
    """The batches folder under `data_dir` (which must exist) or in the cache; None if absent."""
    if data_dir is not None:
        folder = batches_folder(Path(data_dir))
        if not folder.is_dir():
            raise DataError(f"--data-dir {data_dir}: no {BATCHES_DIR}/ folder there "
                            f"(expected {folder} holding {', '.join(TRAIN_FILES)} and {TEST_FILE})")
        return folder
    folder = cache_dir() / BATCHES_DIR
    return folder if folder.is_dir() else None


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_cifar10(url: str = CIFAR10_URL, md5: str = CIFAR10_MD5, target: Path | None = None) -> Path:
    """Download the official archive into the cache, verify its MD5 (a mismatch is deleted and
    fetched once more), extract it safely and return the batches folder."""
    target = target or cache_dir()
    target.mkdir(parents=True, exist_ok=True)
    archive = target / "cifar-10-python.tar.gz"
    for attempt in (1, 2):
        if not archive.exists():
            partial = archive.with_suffix(".part")
            try:
                with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
                    shutil.copyfileobj(response, out)
            except OSError as error:
                partial.unlink(missing_ok=True)
                raise DataError(f"could not download CIFAR-10 from {url} ({error}); use --data-dir "
                                f"with a folder holding {BATCHES_DIR}/, or --data synthetic") from None
            partial.rename(archive)
        found = _md5(archive)
        if found == md5:
            break
        archive.unlink()
        if attempt == 2:
            raise DataError(f"{archive}: MD5 {found} does not match the expected {md5} after a fresh "
                            f"download; the file was deleted")
    extract_archive(archive, target)
    return target / BATCHES_DIR


def extract_archive(archive: Path, target: Path) -> None:
    """Extract a tar archive, refusing any member that would land outside `target`."""
    root = target.resolve()
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            destination = (root / member.name).resolve()
            if not destination.is_relative_to(root) or member.issym() or member.islnk():
                raise DataError(f"{archive}: refuses member {member.name!r}, which points outside {target}")
        tar.extractall(root, filter="data")


# --- Parsing the python batches -----------------------------------------------------------------

# The only globals the official batches (and NumPy re-pickles of them) need.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _BatchUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path):
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module, name):
        if (module, name) not in ALLOWED_GLOBALS:
            raise DataError(f"{self.path}: refused to load, it asks for {module}.{name}; a CIFAR-10 "
                            f"batch needs only NumPy's array reconstructors")
        return super().find_class(module, name)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One python batch file -> (uint8 images NHWC, int32 labels), with every field checked."""
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, path).load()
    except FileNotFoundError:
        raise DataError(f"missing CIFAR-10 batch file {path}") from None
    except DataError:
        raise
    except Exception as error:  # truncated or corrupted pickles raise many different types
        raise DataError(f"{path}: not a readable CIFAR-10 batch ({type(error).__name__}: {error})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{path}: expected a dict with b'data' and b'labels'")
    data, labels = batch[b"data"], np.asarray(batch[b"labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise DataError(f"{path}: expected b'data' as uint8 array of shape (N, 3072), got {shape}")
    if labels.shape != (len(data),):
        raise DataError(f"{path}: expected {len(data)} labels, got shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(f"{path}: labels must lie in 0..{NUM_CLASSES - 1}, found {labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int32)


def load_cifar10(folder: Path, keep_stored: bool = False) -> Dataset:
    """The five training batches and the test batch; with `keep_stored`, the training images as
    stored too (uint8), for the pipelines that normalise them themselves."""
    train = [read_batch(folder / name) for name in TRAIN_FILES]
    test_images, test_labels = read_batch(folder / TEST_FILE)
    stored = np.concatenate([images for images, _ in train])
    return Dataset(
        "cifar10", str(folder), normalise(stored), np.concatenate([labels for _, labels in train]),
        normalise(test_images), test_labels, stored if keep_stored else None,
    )


# --- Synthetic data -----------------------------------------------------------------------------

SYNTHETIC_TRAIN, SYNTHETIC_TEST = 10_000, 2_000


def synthetic(train_size: int = SYNTHETIC_TRAIN, test_size: int = SYNTHETIC_TEST) -> Dataset:
    """A learnable CIFAR-shaped set: each class is a smooth random pattern, shown shifted by up
    to 4 pixels under unit Gaussian noise. Fixed seed, so it is the same set on every machine."""
    rng = np.random.default_rng(2024)
    prototypes = np.kron(rng.standard_normal((NUM_CLASSES, 8, 8, 3)), np.ones((1, 4, 4, 1)))

    def draw(n):
        labels = rng.integers(0, NUM_CLASSES, n).astype(np.int32)
        shifts = rng.integers(-4, 5, (n, 2))
        images = np.stack([np.roll(prototypes[c], tuple(s), axis=(0, 1)) for c, s in zip(labels, shifts)])
        images = 0.5 * images + rng.standard_normal(images.shape)
        return images.astype(np.float32), labels

    train, test = draw(train_size), draw(test_size)
    return Dataset("synthetic", "synthetic (seeded class patterns + noise)", *train, *test)


# --- Batch order and augmentation ---------------------------------------------------------------

AUGMENTATIONS = ("none", "crop-flip", "crop-flip-cutout")
# As Myrtle.ai's cifar10-fast (DAWNBench ResNet-9) augments: dawn.py pads by 4 and applies
# [Crop(32, 32), FlipLR(), Cutout(8, 8)] in that order.
PAD = 4  # pixels reflected onto each side before the crop
CUTOUT = 8  # side of the square cutout zeroes, in pixels
# What a framework's own pipeline (frameworks.base.NativeInput) reproduces. Neither tf.data nor Grain has a
# stock cutout (Keras's RandomErasing draws a real-valued corner, so its square never starts at row or column
# 0), so crop-flip-cutout feeds the suite's pipeline alone and the three native pipelines stay alike.
NATIVE_AUGMENTATIONS = ("none", "crop-flip")
AUGMENT_STREAM = 1  # spawn key of the augmentation's draws: a stream of the epoch's seed apart from its shuffle
AUGMENT_CHUNK = 1024  # images padded at a time: the padded copy stays in cache, never a whole padded epoch


def epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffle of one epoch: a function of the run seed and the epoch only."""
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


def augmentation_rng(seed: int, epoch: int) -> np.random.Generator:
    """The augmentation's draws for one epoch, a function of the run seed and the epoch only. A
    spawn key, not a third entropy word: `default_rng([seed, epoch, 0])` is `default_rng([seed,
    epoch])`, because SeedSequence pads short entropy with zeros."""
    return np.random.default_rng(np.random.SeedSequence([seed, epoch], spawn_key=(AUGMENT_STREAM,)))


def crop_flip(images: np.ndarray, rng: np.random.Generator, out: np.ndarray | None = None) -> np.ndarray:
    """Each NHWC image reflect-padded by `PAD` pixels, cut to a random window of its own size
    (offsets 0..2*PAD per axis) and mirrored left to right with probability 1/2.

    Reflect padding copies pixels, so padding normalised images equals normalising padded ones
    (normalisation is per channel); zero padding would not. All draws are made up front, so the
    result depends on `rng` alone, not on the chunking. `out` may be `images` itself: each chunk
    is padded into a copy before its windows are written back."""
    n, height, width = images.shape[:3]
    offsets = rng.integers(0, 2 * PAD + 1, (n, 2))
    flips = rng.random(n) < 0.5
    out = np.empty_like(images) if out is None else out
    for start in range(0, n, AUGMENT_CHUNK):
        chunk = slice(start, start + AUGMENT_CHUNK)
        padded = np.pad(images[chunk], ((0, 0), (PAD, PAD), (PAD, PAD), (0, 0)), mode="reflect")
        # windows[i, dy, dx] is the (height, width, channels) window at offset (dy, dx) of image i, a view
        windows = sliding_window_view(padded, (height, width), axis=(1, 2)).transpose(0, 1, 2, 4, 5, 3)
        cropped = out[chunk]
        cropped[...] = windows[np.arange(len(padded)), offsets[chunk, 0], offsets[chunk, 1]]
        flipped = flips[chunk]
        cropped[flipped] = cropped[flipped, :, ::-1]
    return out


def cutout(images: np.ndarray, rng: np.random.Generator, out: np.ndarray | None = None) -> np.ndarray:
    """Each NHWC image with one `CUTOUT` x `CUTOUT` square set to 0 in every channel, its corner
    drawn uniformly from the places where the square lies wholly inside the image (cifar10-fast's
    `Cutout.options`: 0..32-8 per axis). The images are normalised, so 0 is each channel's mean, the
    value dawn.py's cutout writes (it too cuts after normalising). `out` may be `images` itself."""
    n, height, width = images.shape[:3]
    corners = rng.integers(0, (height - CUTOUT + 1, width - CUTOUT + 1), (n, 2))
    if out is None:
        out = images.copy()
    elif out is not images:
        out[...] = images
    rows, columns = np.arange(height), np.arange(width)
    for start in range(0, n, AUGMENT_CHUNK):
        top, left = (corners[start:start + AUGMENT_CHUNK, axis, None] for axis in (0, 1))
        inside_rows = (rows >= top) & (rows < top + CUTOUT)  # (chunk, height)
        inside_columns = (columns >= left) & (columns < left + CUTOUT)
        out[start:start + AUGMENT_CHUNK][inside_rows[:, :, None] & inside_columns[:, None, :]] = 0.0
    return out


def augment_images(images: np.ndarray, augment: str, rng: np.random.Generator) -> None:
    """Apply the named augmentation to `images` in place; crop-flip-cutout draws crop-flip's
    numbers first, so its crops and flips are crop-flip's for the same generator."""
    if augment in ("crop-flip", "crop-flip-cutout"):
        crop_flip(images, rng, out=images)
    if augment == "crop-flip-cutout":
        cutout(images, rng, out=images)


class Stopwatch:
    """Seconds accumulated over its `with` blocks: the pipeline's cost, kept apart from the timed
    windows of the training it feeds."""

    def __init__(self):
        self.seconds = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc_info) -> None:
        self.seconds += time.perf_counter() - self._start


# Where a batch's arrays start: TensorFlow's CPU kernels require EIGEN_MAX_ALIGN_BYTES (64 in its
# pip builds) and copy any array that is not so aligned; XLA's CPU client takes a 64-byte aligned
# NumPy array as it is and copies the others (jax.device_put). PyTorch takes any array.
ALIGNMENT = 64


def aligned_empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an `ALIGNMENT` boundary (NumPy's
    own allocations are only 16-byte aligned)."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    buffer = np.empty(size + ALIGNMENT, np.uint8)
    offset = -buffer.ctypes.data % ALIGNMENT
    return buffer[offset:offset + size].view(dtype).reshape(shape)


def train_batches(dataset: Dataset, batch_size: int, seed: int, epoch: int, augment: str = "none",
                  stopwatch: Stopwatch | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Fixed-size batches of one epoch (the last partial batch is dropped, so nothing retraces).
    The epoch is permuted and augmented once up front, when the first batch is drawn, so each
    batch is a contiguous view, not a copy, and starts on an `ALIGNMENT` boundary, so that a CPU
    framework can take it without copying it either; `stopwatch` accumulates the augmentation's
    seconds."""
    if augment not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {augment!r} (choose from: {', '.join(AUGMENTATIONS)})")
    order = epoch_order(len(dataset.train_labels), seed, epoch)
    steps = len(order) // batch_size
    images = np.take(dataset.train_images, order, axis=0, out=aligned_empty(dataset.train_images.shape,
                                                                            dataset.train_images.dtype))
    # One row per batch, each row padded to a whole number of alignment units, so that every batch's
    # labels start on a boundary too, whatever the batch size.
    per_unit = ALIGNMENT // dataset.train_labels.itemsize
    labels = aligned_empty((steps, -(-batch_size // per_unit) * per_unit), dataset.train_labels.dtype)
    labels[:, :batch_size] = dataset.train_labels[order[:steps * batch_size]].reshape(steps, batch_size)
    if augment != "none":
        with stopwatch or contextlib.nullcontext():
            augment_images(images, augment, augmentation_rng(seed, epoch))  # the permuted copy is ours
    for step in range(steps):
        yield images[step * batch_size:(step + 1) * batch_size], labels[step, :batch_size]


def steps_per_epoch(dataset: Dataset, batch_size: int) -> int:
    return len(dataset.train_labels) // batch_size


def test_batches(dataset: Dataset, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for start in range(0, len(dataset.test_labels), batch_size):
        yield dataset.test_images[start:start + batch_size], dataset.test_labels[start:start + batch_size]


def batch_digest(images: np.ndarray, labels: np.ndarray, digest=None):
    """SHA-256 over a batch's bytes, to prove every framework was fed the same data."""
    digest = digest or hashlib.sha256()
    digest.update(np.ascontiguousarray(images).tobytes())
    digest.update(np.ascontiguousarray(labels).tobytes())
    return digest
