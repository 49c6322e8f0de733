"""Each adapter on its own: training lowers the loss without recompiling after warm-up,
evaluation predicts and sums what its logits say, and its registry entry tells the truth about its hooks."""

import importlib.metadata

import numpy as np
import pytest

from benchmarks.checks.definitions import parity_batches
from benchmarks.harness import data as datasets
from benchmarks.harness.stats import relative_error
from frameworks import REGISTRY
from frameworks.base import Adapter, TrainConfig, init_params
from tests.conftest import FRAMEWORKS, VARIANTS, require, tiered

pytestmark = pytest.mark.in_process  # adapters built here (conftest: a Keras backend apart runs them apart)


@pytest.mark.parametrize("variant", [tiered(variant, id=variant) for variant in VARIANTS])
def test_training_steps_lower_the_loss_on_a_fixed_batch(variant):
    framework, name = variant.split(":")
    adapter = require(framework)("lenet", "cpu", name, TrainConfig(learning_rate=0.01, momentum=0.9))
    adapter.set_params(init_params("lenet", seed=0))
    images, labels = parity_batches(1)[0]
    before, _ = adapter.evaluate(images, labels)
    losses = [adapter.train_step(images, labels) for _ in range(3)]  # warm-up: compiles
    compiles = adapter.compile_count()
    losses = adapter.losses_to_numpy(losses + [adapter.train_step(images, labels) for _ in range(7)])
    after, _ = adapter.evaluate(images, labels)
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0] and after < before, f"{variant}: loss {before:.4f} -> {after:.4f}"
    assert adapter.compile_count() == compiles, f"{variant} recompiled after warm-up on the same batch shape"


@pytest.mark.parametrize("variant", [tiered(variant, id=variant) for variant in VARIANTS])
def test_a_scheduled_learning_rate_compiles_the_step_once(variant):
    """Every step of a schedule has its own rate: a compiled step must take it as data, not
    compile again for each value (torch.compile guards on a float rate)."""
    framework, name = variant.split(":")
    config = TrainConfig(learning_rate=0.05, momentum=0.9, lr_schedule="cosine", total_steps=12)
    adapter = require(framework)("lenet", "cpu", name, config)
    adapter.set_params(init_params("lenet", seed=0))
    images, labels = parity_batches(1)[0]
    adapter.losses_to_numpy([adapter.train_step(images, labels) for _ in range(2)])  # warm-up: compiles
    compiles = adapter.compile_count()
    adapter.losses_to_numpy([adapter.train_step(images, labels) for _ in range(8)])
    assert adapter.compile_count() == compiles, f"{variant} compiled again as the learning rate changed"


@pytest.mark.parametrize("variant", [tiered(variant, id=variant) for variant in VARIANTS])
def test_a_placed_batch_trains_exactly_as_its_numpy_arrays_without_retracing(variant):
    """`place` (the prefetching and resident input paths) hands the step the same bytes, in the
    framework's own tensors, and the step takes them without compiling again."""
    framework, name = variant.split(":")
    adapter_cls = require(framework)
    batches = parity_batches(4)
    losses = {}
    for placed in (False, True):
        adapter = adapter_cls("lenet", "cpu", name, TrainConfig(learning_rate=0.01, momentum=0.9))
        adapter.set_params(init_params("lenet", seed=0))
        adapter.train_step(*batches[0])  # compiles on NumPy arrays
        compiles = adapter.compile_count()
        feed = [adapter.place(*batch) for batch in batches[1:]] if placed else batches[1:]
        if placed:
            assert not isinstance(feed[0][0], np.ndarray), f"{variant}: place returned NumPy arrays"
            adapter.wait(feed[-1])
        losses[placed] = adapter.losses_to_numpy([adapter.train_step(*batch) for batch in feed])
        assert adapter.compile_count() == compiles, f"{variant} recompiled for a placed batch"
    np.testing.assert_array_equal(losses[True], losses[False])


@pytest.mark.parametrize("framework", FRAMEWORKS, ids=str)
def test_placing_a_batch_on_the_cpu_copies_nothing_the_framework_can_take_as_it_is(framework):
    """On a CPU there is no device to copy to, so a placed batch of the suite's pipeline is a view
    of its own memory (read back through DLPack), as its users' zero-copy handover makes it: the
    images in every framework, and the labels wherever the framework keeps their dtype (PyTorch's
    loss takes int64, so it converts them, as its users do). A copy here is paid in every timed
    step of the prefetching input path, by one framework and not the others."""
    adapter = require(framework)("lenet", "cpu", REGISTRY[framework].default_variant, TrainConfig())
    batches = datasets.train_batches(datasets.synthetic(train_size=300, test_size=10), 100, seed=0, epoch=0)
    for images, labels in batches:
        placed = adapter.place(images, labels)
        adapter.wait(placed)
        placed_images, placed_labels = (np.from_dlpack(array) for array in placed)
        assert np.shares_memory(placed_images, images), f"{framework} copied the images"
        if placed_labels.dtype == labels.dtype:
            assert np.shares_memory(placed_labels, labels), f"{framework} copied the labels"
        np.testing.assert_array_equal(placed_labels, labels)


@pytest.mark.parametrize("framework", FRAMEWORKS, ids=str)
@pytest.mark.filterwarnings("ignore:The given NumPy array is not writable")  # PyTorch's, on the read-only labels
def test_a_batch_that_cannot_be_taken_as_it_is_is_placed_as_a_copy(framework):
    """Memory a framework cannot use in place (off its alignment, read-only) is copied, never used
    unaligned (TensorFlow's kernels abort on that) and never refused."""
    adapter = require(framework)("lenet", "cpu", REGISTRY[framework].default_variant, TrainConfig())
    images, labels = parity_batches(1)[0]
    storage = np.empty(images.size + 1, np.float32)
    offset = storage[1:].reshape(images.shape)  # 4 bytes past NumPy's own (16-byte) alignment
    offset[...] = images
    readonly = labels.copy()
    readonly.flags.writeable = False
    placed = adapter.place(offset, readonly)
    adapter.wait(placed)
    (placed_loss, placed_predicted), (loss, predicted) = adapter.evaluate(*placed), adapter.evaluate(images, labels)
    assert placed_loss == loss
    np.testing.assert_array_equal(placed_predicted, predicted)
    np.testing.assert_array_equal(np.from_dlpack(placed[1]).astype(labels.dtype), labels)


@pytest.mark.parametrize("framework", FRAMEWORKS, ids=str)
def test_evaluate_predicts_the_class_of_the_largest_logit_and_sums_the_loss(framework):
    adapter_cls = require(framework)
    adapter = adapter_cls("lenet", "cpu", REGISTRY[framework].default_variant, TrainConfig())
    adapter.set_params(init_params("lenet", seed=1))
    images, labels = parity_batches(1)[0]
    logits = adapter.logits(images)
    labels = logits.argmax(1).astype(np.int32)  # every prediction right...
    labels[:5] = (labels[:5] + 1) % 10  # ...but five
    loss_sum, predicted = adapter.evaluate(images, labels)
    assert isinstance(predicted, np.ndarray) and np.issubdtype(predicted.dtype, np.integer)
    np.testing.assert_array_equal(predicted, logits.argmax(1))
    assert (predicted == labels).sum() == len(labels) - 5
    shifted = logits - logits.max(1, keepdims=True)
    expected = -(shifted[np.arange(len(labels)), labels] - np.log(np.exp(shifted).sum(1))).sum()
    assert loss_sum == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("framework", FRAMEWORKS, ids=str)
def test_bf16_computes_the_same_function_in_lower_precision(framework):
    adapter_cls = require(framework)
    variant = REGISTRY[framework].default_variant
    images, labels = parity_batches(1)[0]
    logits = {}
    for precision in ("fp32", "bf16"):
        adapter = adapter_cls("lenet", "cpu", variant, TrainConfig(precision=precision))
        adapter.set_params(init_params("lenet", seed=1))
        logits[precision] = adapter.logits(images)
        losses = adapter.losses_to_numpy([adapter.train_step(images, labels) for _ in range(5)])
        assert losses[-1] < losses[0], f"{framework} {precision} did not learn"
        assert {name: value.dtype for name, value in adapter.get_params().items()} == {
            name: np.float32 for name in init_params("lenet", seed=1)}, "weights must stay float32"
    error = relative_error(logits["fp32"], logits["bf16"])
    assert 1e-5 < error < 5e-2, f"{framework}: bf16 logits differ from fp32 by {error:.1e}"


@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
def test_pytorch_sets_tf32_so_that_both_of_its_apis_agree(precision):
    """torch.compile reads PyTorch's legacy TF32 state while kernels read the per-backend flags;
    where the two disagree, reading either raises, and a compiled step fails on a GPU. Every reader
    of both must give the precision's answer (the flags are process state: readable on a CPU)."""
    adapter_cls = require("pytorch")
    import torch

    try:
        adapter_cls("lenet", "cpu", "eager", TrainConfig(precision=precision))
        tf32 = precision == "tf32"
        assert torch.get_float32_matmul_precision() == ("high" if tf32 else "highest")
        assert torch.backends.cuda.matmul.allow_tf32 is tf32 and torch.backends.cudnn.allow_tf32 is tf32
        if hasattr(torch.backends.cudnn, "conv"):  # PyTorch >= 2.9
            flags = {torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision,
                     torch.backends.cudnn.rnn.fp32_precision}
            assert flags == {"tf32" if tf32 else "ieee"}
    finally:
        adapter_cls("lenet", "cpu", "eager", TrainConfig())  # the fp32 state every other test's adapter sets


@pytest.mark.parametrize("framework", FRAMEWORKS, ids=str)
def test_the_registry_entry_says_which_hooks_the_adapter_offers(framework):
    """The parent process trusts the entry (it never imports the framework): --profile and the GPU
    peak must find the hooks the entry promises, and its first package must be the one whose
    version the rows record."""
    adapter_cls, entry = require(framework), REGISTRY[framework]
    assert entry.profiler == (adapter_cls.profile is not Adapter.profile)
    assert entry.profiler == (adapter_cls.op_category is not Adapter.op_category)
    assert entry.device_matmul == (adapter_cls.device_matmul.__func__ is not Adapter.device_matmul.__func__)
    # a local build tag ("+cu130") is the module's, not the distribution's
    assert adapter_cls.version().split("+")[0] == importlib.metadata.version(entry.packages[0])


@pytest.mark.parametrize("framework", FRAMEWORKS, ids=str)
def test_each_side_of_a_builtin_equivalent_runs_on_a_placed_batch_and_can_be_waited_for(framework):
    adapter = require(framework)("lenet", "cpu", REGISTRY[framework].default_variant, TrainConfig())
    adapter.set_params(init_params("lenet", seed=0))
    placed = adapter.place(*parity_batches(1)[0])
    equivalents = adapter.builtin_equivalents()
    assert "step" in equivalents, "no whole step against the framework's plain one"
    for part, sides in equivalents.items():
        for side in sides:
            results = [side(*placed) for _ in range(2)]
            adapter.wait(tuple(results[-1:]))
            assert results[-1] is not None, f"{part}: nothing to wait for"


@pytest.mark.parametrize("framework", FRAMEWORKS, ids=str)
def test_keras_trained_variants_record_the_jit_compile_keras_resolved(framework):
    """A Keras-trained variant records its `jit_compile` as Keras resolved it (`fit`: Keras's own
    "auto"), and a framework's Keras-trained variants differ in it; a step the suite writes records none."""
    adapter_cls, entry = require(framework), REGISTRY[framework]
    settings = {variant: adapter_cls("lenet", "cpu", variant, TrainConfig()).jit_compile for variant in entry.variants}
    keras_trained = {variant: value for variant, value in settings.items() if variant in entry.counterparts}
    assert all(isinstance(value, bool) for value in keras_trained.values()), keras_trained
    assert len(set(keras_trained.values())) == len(keras_trained), f"two variants of one setting: {keras_trained}"
    assert all(value is None for variant, value in settings.items() if variant not in entry.counterparts), settings
    if "fit" in keras_trained:
        assert adapter_cls.JIT_COMPILE["fit"] == "auto", "fit is Keras's own default"
