"""What a run's evaluations scored: the test set's size and the images evaluated (recorded, or read off the
accuracies of a run that did not record them), each job's seed, and each evaluation's per-image predictions
(`RUN/predictions/<job_id>-a<attempt>.npz`), compared image by image between two jobs (McNemar's test)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from report.migrate import SchemaError
from report.paired import mcnemar, mcnemar_detectable

PREDICTIONS = "predictions"  # the run folder's sub-folder of per-image predictions


def seed_of(table: pd.DataFrame) -> pd.Series:
    """Each row's seed: a run written before seeds were recorded trained every job from seed 0."""
    if "seed" not in table:
        return pd.Series(0, index=table.index, dtype=int)
    return table["seed"].fillna(0).astype(int)


def evaluated_images(accuracies: pd.Series) -> int | None:
    """The number of test images behind a run's accuracies, read off the accuracies themselves:
    each is correct / n, so n is a multiple of every reduced denominator, and their least common
    multiple is the smallest n consistent with all of them (exact unless every count shares a
    factor with n, which a handful of evaluations makes unlikely)."""
    values = accuracies.dropna()
    if values.empty:
        return None
    return math.lcm(*(Fraction(float(value)).limit_denominator(10**7).denominator for value in values))


@dataclass(frozen=True)
class ImageCount:
    """The images behind a run's accuracies: `size` in the test set, `evaluated` by each evaluation (None where
    unknown); `recorded`: epochs.csv says so, else both were read off the accuracies' denominators."""
    size: int | None
    evaluated: int | None
    recorded: bool

    def note(self) -> str:
        """How the count is known, for a sentence that uses it."""
        if self.evaluated is None:
            return "the test set's size is neither recorded nor readable off the accuracies"
        if not self.recorded:
            return (f"{self.evaluated:,} test images, inferred from the accuracies' denominators (the run did not "
                    f"record them)")
        short = f" of the {self.size:,} in the test set" if self.size and self.size != self.evaluated else ""
        return f"{self.evaluated:,} test images evaluated{short}"


def image_count(epochs: pd.DataFrame, accuracies: pd.Series | None = None) -> ImageCount:
    """The run's test set as epochs.csv records it (`test_size`, `evaluated`); where a run did not record it,
    read off the accuracies of `epochs` and of `accuracies` (e.g. summary.csv's). A run whose evaluations scored
    different numbers of images has no one count: None."""
    recorded = epochs["evaluated"].dropna() if "evaluated" in epochs else pd.Series(dtype=float)
    if len(recorded):
        sizes = epochs["test_size"].dropna().unique() if "test_size" in epochs else []
        one = recorded.nunique() == 1
        return ImageCount(int(sizes[0]) if len(sizes) == 1 else None, int(recorded.iloc[0]) if one else None, True)
    values = epochs["test_accuracy"] if accuracies is None else pd.concat([epochs["test_accuracy"], accuracies])
    inferred = evaluated_images(values)
    return ImageCount(inferred, inferred, False)


@dataclass(frozen=True)
class Predictions:
    """One process's per-image predictions: `steps` (E,), as epochs.csv's `step`; `predictions` (E, evaluated),
    the class it predicted for each test image at each evaluation, in test-set order; `labels` (evaluated,)."""
    steps: np.ndarray
    predictions: np.ndarray
    labels: np.ndarray

    def correct(self, step: int) -> np.ndarray:
        """Which images the evaluation at `step` classified correctly."""
        rows = np.flatnonzero(self.steps == step)
        if not len(rows):
            raise KeyError(step)
        return self.predictions[rows[-1]] == self.labels


def predictions_path(run_dir: Path, job_id: str, attempt: int) -> Path:
    return run_dir / PREDICTIONS / f"{job_id}-a{int(attempt)}.npz"


def read_predictions(run_dir: Path, job_id: str, attempt: int) -> Predictions | None:
    """A process's predictions; None where the run saved none for it. Raises SchemaError for a file that does not
    hold the three arrays in their shapes."""
    path = predictions_path(run_dir, job_id, attempt)
    if not path.is_file():
        return None
    try:
        with np.load(path) as arrays:
            found = Predictions(arrays["steps"], arrays["predictions"], arrays["labels"])
    except (OSError, ValueError, KeyError) as error:
        raise SchemaError(f"{path} is not a predictions file (steps, predictions, labels): {error}") from None
    rows, images = found.predictions.shape if found.predictions.ndim == 2 else (-1, -1)
    if found.steps.shape != (rows,) or found.labels.shape != (images,):
        raise SchemaError(f"{path}: predictions of shape {found.predictions.shape} do not match steps "
                          f"{found.steps.shape} and labels {found.labels.shape}")
    return found


def all_predictions(run_dir: Path, summary: pd.DataFrame) -> dict[tuple[str, int], Predictions]:
    """Every saved predictions file of the jobs in `summary`, by (job_id, attempt)."""
    found = {}
    for job_id, attempt in summary[["job_id", "attempt"]].drop_duplicates().itertuples(index=False):
        predictions = read_predictions(run_dir, job_id, attempt)
        if predictions is not None:
            found[(job_id, int(attempt))] = predictions
    return found


@dataclass(frozen=True)
class PairedAccuracy:
    """Two evaluations compared image by image: each one's accuracy, the images only the first and only the
    second classified correctly, McNemar's p-value, and the smallest difference it could find (paired.POWER)."""
    first: float
    second: float
    only_first: int
    only_second: int
    images: int
    p: float
    detectable: float


def paired_accuracy(first: Predictions, second: Predictions, first_step: int, second_step: int) -> PairedAccuracy:
    """McNemar's test between two evaluations of the same test images. Raises ValueError where they were not
    scored on the same images in the same order."""
    if not np.array_equal(first.labels, second.labels):
        raise ValueError("the two evaluations scored different test images")
    right, other = first.correct(first_step), second.correct(second_step)
    only_first, only_second = int(np.sum(right & ~other)), int(np.sum(other & ~right))
    images = len(right)
    return PairedAccuracy(float(right.mean()), float(other.mean()), only_first, only_second, images,
                          mcnemar(only_first, only_second),
                          mcnemar_detectable(max(only_first + only_second, 1) / images, images))
