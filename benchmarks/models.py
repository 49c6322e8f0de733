"""`python -m benchmarks.models`: the model catalogue as a Markdown table, every figure computed
from the model's definition: trainable parameters, BatchNorm buffers, and forward multiply-adds per
32x32 image, counted on the float64 reference's graph (each convolution and dense layer: output
values x kernel inputs per output). README's table is this command's output, and a test keeps it so."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmarks.harness.efficiency import multiply_adds
from frameworks.base import MODELS


def catalogue() -> pd.DataFrame:
    rows = []
    for name, spec in MODELS.items():
        rows.append({"model": f"`{name}`",
                     "parameters": sum(int(np.prod(spec.shapes[n])) for n in spec.trainable),
                     "BatchNorm buffers": sum(int(np.prod(spec.shapes[n])) for n in spec.buffers),
                     "forward multiply-adds per image": multiply_adds(name)})
    return pd.DataFrame(rows)


def markdown() -> str:
    table = catalogue()
    for column in table.columns[1:]:
        table[column] = table[column].map("{:,}".format)
    return table.to_markdown(index=False, disable_numparse=True)


if __name__ == "__main__":
    print(markdown())
