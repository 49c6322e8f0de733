"""The float64 reference's cache: its key changes with every input and every source the outputs
depend on; an entry is used when nothing changed, written whole or not at all, and recomputed,
never trusted, when it is corrupt; "off" computes every time."""

from __future__ import annotations

import dataclasses
import os
import time
import warnings

import numpy as np
import pytest

import frameworks.base
from benchmarks.checks import definitions, reference_cache
from benchmarks.checks.reference_cache import CACHE_ENV, SOURCES, ReferenceInputs, load_or_compute, reference_key
from frameworks import reference


def _nudged(array: np.ndarray) -> np.ndarray:
    """`array` with one element moved to its next representable value: the smallest change there is."""
    changed = array.copy()
    changed.flat[0] = np.nextafter(changed.flat[0], np.inf)
    return changed


def _with_weight_nudged(inputs: ReferenceInputs) -> ReferenceInputs:
    return dataclasses.replace(inputs, params={**inputs.params, "conv1.weight": _nudged(inputs.params["conv1.weight"])})


def _with_pixel_nudged(inputs: ReferenceInputs) -> ReferenceInputs:
    (images, labels), *rest = inputs.batches
    return dataclasses.replace(inputs, batches=[(_nudged(images), labels), *rest])


def _with_label_changed(inputs: ReferenceInputs) -> ReferenceInputs:
    *first, (images, labels) = inputs.batches
    changed = labels.copy()
    changed[0] = (changed[0] + 1) % 10
    return dataclasses.replace(inputs, batches=[*first, (images, changed)])


def _with_config_changed(inputs: ReferenceInputs) -> ReferenceInputs:
    (setting, config), *rest = inputs.configs
    return dataclasses.replace(inputs, configs=((setting, dataclasses.replace(config, momentum=0.8)), *rest))


def _in_fp64(inputs: ReferenceInputs) -> ReferenceInputs:
    return dataclasses.replace(inputs, precision="fp64")


@pytest.mark.parametrize("change", [_with_weight_nudged, _with_pixel_nudged, _with_label_changed, _with_config_changed,
                                    _in_fp64], ids=lambda change: change.__name__.strip("_").replace("_", " "))
def test_a_changed_input_changes_the_key(change):
    inputs = ReferenceInputs.of("lenet", "fp32")
    assert reference_key(ReferenceInputs.of("lenet", "fp32")) == reference_key(inputs)
    assert reference_key(change(inputs)) != reference_key(inputs)


def test_a_changed_optimizer_table_or_plan_changes_the_key(monkeypatch):
    """The key hashes what the tables give the computation, so an edit of either is seen."""
    before = reference_key(ReferenceInputs.of("lenet", "fp32"))
    monkeypatch.setitem(definitions.TRAINING_CONFIGS, "momentum",
                        dataclasses.replace(definitions.TRAINING_CONFIGS["momentum"], learning_rate=0.04))
    edited_table = reference_key(ReferenceInputs.of("lenet", "fp32"))
    monkeypatch.setitem(definitions.PLANS, "lenet", dataclasses.replace(definitions.PLANS["lenet"], steps=19))
    edited_plan = reference_key(ReferenceInputs.of("lenet", "fp32"))
    assert len({before, edited_table, edited_plan}) == 3


@pytest.mark.parametrize("module", SOURCES, ids=lambda module: module.__name__)
def test_a_changed_source_changes_the_key(module, monkeypatch, tmp_path):
    """A source edited before the process starts changes its key; one edited while it runs does
    not, since the process still runs the code it imported."""
    inputs = ReferenceInputs.of("lenet", "fp32")
    before = reference_key(inputs)
    edited = tmp_path / "edited.py"
    edited.write_text(open(module.__file__).read() + "\n# one more line\n")
    monkeypatch.setattr(module, "__file__", str(edited))
    assert reference_key(inputs) == before
    monkeypatch.setattr(reference_cache, "SOURCE_DIGEST", reference_cache.source_digest())  # as a new process reads it
    assert reference_key(inputs) != before


def test_the_sources_are_the_modules_the_computation_runs():
    assert set(SOURCES) == {reference_cache, reference, definitions, frameworks.base}


def test_another_numpy_changes_the_key(monkeypatch):
    inputs = ReferenceInputs.of("lenet", "fp32")
    before = reference_key(inputs)
    monkeypatch.setattr(np, "__version__", "0.0.0")
    assert reference_key(inputs) != before


# --- The cache on disk ----------------------------------------------------------------------------


@pytest.fixture
def counted(monkeypatch, tmp_path):
    """The cache in `tmp_path`, its computation replaced by a fast one that counts its calls and
    returns every kind of value the reference returns: NumPy scalars, 0-d and larger arrays."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    calls = []

    def compute(inputs: ReferenceInputs) -> dict:
        calls.append(inputs)
        weight = inputs.params["conv1.weight"]
        return {"forward||0|logits": np.arange(100_000, dtype=np.float64) * float(weight.flat[0]),
                "state|momentum|0|params conv1.weight": weight, "loss|||loss": np.float64(weight.sum()),
                "step count|momentum|0|step count": np.int64(len(calls)),
                "state|momentum|0|step": np.asarray(np.int64(3))}
    monkeypatch.setattr(reference_cache, "compute", compute)
    return calls


def _assert_same(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for name in a:
        assert type(a[name]) is type(b[name]) and np.asarray(a[name]).dtype == np.asarray(b[name]).dtype, name
        assert np.array_equal(a[name], b[name]), name


def _entries(folder) -> list:
    return sorted(path.name for path in folder.iterdir())


def test_an_entry_is_used_when_nothing_changed(counted, tmp_path):
    inputs = ReferenceInputs.of("lenet", "fp32")
    computed = load_or_compute(inputs)
    assert _entries(tmp_path) == [f"lenet-fp32-{reference_key(inputs)}.npz"]
    read = load_or_compute(ReferenceInputs.of("lenet", "fp32"))
    assert len(counted) == 1
    _assert_same(read, computed)


def test_a_changed_input_is_computed_and_replaces_the_old_entry(counted, tmp_path):
    inputs = ReferenceInputs.of("lenet", "fp32")
    load_or_compute(inputs)
    load_or_compute(ReferenceInputs.of("lenet", "fp64"))
    changed = _with_weight_nudged(inputs)
    load_or_compute(changed)
    assert len(counted) == 3
    assert _entries(tmp_path) == sorted([f"lenet-fp32-{reference_key(changed)}.npz",
                                         f"lenet-fp64-{reference_key(ReferenceInputs.of('lenet', 'fp64'))}.npz"])


def _truncated(data: bytes) -> bytes:
    return data[:len(data) // 2]


def _byte_flipped(data: bytes) -> bytes:
    """One bit of the middle byte flipped: inside the largest array's data, where only the CRC sees it."""
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1:]


def _empty(data: bytes) -> bytes:
    return b""


def _not_an_archive(data: bytes) -> bytes:
    return b"not an npz file\n" * 100


@pytest.mark.parametrize("corrupt", [_truncated, _byte_flipped, _empty, _not_an_archive],
                         ids=lambda corrupt: corrupt.__name__.strip("_").replace("_", " "))
def test_a_corrupt_entry_is_recomputed(counted, tmp_path, corrupt):
    inputs = ReferenceInputs.of("lenet", "fp32")
    computed = load_or_compute(inputs)
    path = tmp_path / f"lenet-fp32-{reference_key(inputs)}.npz"
    path.write_bytes(corrupt(path.read_bytes()))
    recomputed = load_or_compute(inputs)
    assert len(counted) == 2
    assert recomputed["step count|momentum|0|step count"] == 2  # the second computation's, not the file's
    _assert_same(load_or_compute(inputs), recomputed)  # and the rewritten entry is whole
    assert len(counted) == 2
    assert np.array_equal(recomputed["forward||0|logits"], computed["forward||0|logits"])


def test_an_entry_under_another_key_is_not_trusted(counted, tmp_path):
    """A file renamed (or copied) to another key's name: the key stored inside it decides."""
    inputs, other = ReferenceInputs.of("lenet", "fp32"), _with_weight_nudged(ReferenceInputs.of("lenet", "fp32"))
    load_or_compute(inputs)
    (tmp_path / f"lenet-fp32-{reference_key(inputs)}.npz").rename(tmp_path / f"lenet-fp32-{reference_key(other)}.npz")
    outputs = load_or_compute(other)
    assert np.array_equal(outputs["state|momentum|0|params conv1.weight"], other.params["conv1.weight"])
    assert len(counted) == 2


def test_a_failed_write_leaves_no_entry_and_no_temporary_file(counted, tmp_path, monkeypatch):
    """Written to a temporary file and renamed: a write cut off (a full disk) leaves nothing a
    reader could take for an entry, and the outputs are still returned."""
    inputs = ReferenceInputs.of("lenet", "fp32")

    def cut_off(file, **arrays):
        file.write(b"PK\x03\x04 half an archive")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(np, "savez", cut_off)
    with pytest.warns(UserWarning, match="could not be cached"):
        outputs = load_or_compute(inputs)
    assert "loss|||loss" in outputs
    assert _entries(tmp_path) == []


def test_a_killed_writers_temporary_file_is_deleted_once_stale(counted, tmp_path):
    killed, writing = tmp_path / "lenet-fp32-abc.killed.tmp", tmp_path / "lenet-fp32-abc.writing.tmp"
    killed.write_bytes(b"PK")
    writing.write_bytes(b"PK")
    old = time.time() - 2 * reference_cache.STALE_TEMPORARY_S
    os.utime(killed, (old, old))
    inputs = ReferenceInputs.of("lenet", "fp32")
    load_or_compute(inputs)
    assert _entries(tmp_path) == sorted([writing.name, f"lenet-fp32-{reference_key(inputs)}.npz"])


def test_off_computes_every_time_and_writes_nothing(counted, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # where the default folder would be
    inputs = ReferenceInputs.of("lenet", "fp32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_or_compute(inputs)
        load_or_compute(inputs)
    assert len(counted) == 2
    assert _entries(tmp_path) == []


def test_the_default_folder_is_the_users_cache(monkeypatch, tmp_path):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert reference_cache.cache_folder() == tmp_path / "framework-bench" / "parity-reference"
