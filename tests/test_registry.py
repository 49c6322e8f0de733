"""The framework registry: names, aliases, variants, and lazy imports."""

import subprocess
import sys

import pytest

from frameworks import REGISTRY, UnknownFramework, resolve
from tests.conftest import ROOT


@pytest.mark.parametrize("name, expected", [("pytorch", "pytorch"), ("torch", "pytorch"), ("tensorflow", "tensorflow"),
                                            ("tf", "tensorflow"), ("jax", "jax")], ids=str)
def test_resolve_accepts_names_and_aliases(name, expected):
    assert resolve(name).name == expected


def test_unknown_framework_is_a_clear_error_naming_the_accepted_ones():
    with pytest.raises(UnknownFramework, match=r"unknown framework 'mxnet' \(choose from: all, jax, pytorch, "
                                               r"tensorflow, tf, torch\)"):
        resolve("mxnet")


def test_every_framework_has_a_default_variant_first():
    assert {name: entry.default_variant for name, entry in REGISTRY.items()} == {
        "pytorch": "eager", "tensorflow": "function", "jax": "jit"}


def test_importing_the_harness_imports_no_framework():
    code = ("import sys, benchmarks.run, benchmarks.parity, report.render; "
            "print(sorted({'torch', 'tensorflow', 'jax'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_report_reads_data_and_the_harness_never_imports_the_report():
    code = ("import sys, report.render, report.readme, report.compare, report.merge, report.noise; "
            "print(sorted(m for m in sys.modules if m.startswith('frameworks')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", "the report reads CSV files and env.json, never a framework or the float64 model"
    code = "import sys, benchmarks.run; print(sorted(m for m in sys.modules if m.split('.')[0] == 'report'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", "the runner renders the report in a process of its own"
