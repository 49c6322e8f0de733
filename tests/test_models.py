"""The model catalogue: README's table is what the code computes, and the multiply-add counter
agrees with LeNet's layer geometry worked out by hand."""

from __future__ import annotations

from benchmarks.harness.efficiency import multiply_adds
from benchmarks.models import catalogue, markdown
from tests.conftest import ROOT


def test_readme_lists_every_model_as_the_code_computes_it():
    assert markdown() in (ROOT / "README.md").read_text(), "rerun python -m benchmarks.models into README"


def test_multiply_adds_follow_the_layer_geometry():
    conv1 = 6 * 28 * 28 * (3 * 5 * 5)  # output values x inputs per output
    conv2 = 16 * 10 * 10 * (6 * 5 * 5)
    dense = 400 * 120 + 120 * 84 + 84 * 10
    assert multiply_adds("lenet") == conv1 + conv2 + dense


def test_resnet9_counts_its_convolutions_and_batchnorm_buffers():
    row = catalogue().set_index("model").loc["`resnet9`"]
    convs = [(3, 64, 32), (64, 128, 32), (128, 128, 16), (128, 128, 16), (128, 256, 16), (256, 512, 8),
             (512, 512, 4), (512, 512, 4)]  # (in, out, output side)
    assert row["forward multiply-adds per image"] == sum(o * side * side * i * 9 for i, o, side in convs) + 512 * 10
    assert row["BatchNorm buffers"] == sum(2 * o + 1 for _, o, _ in convs)
