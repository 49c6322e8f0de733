"""Every number the report's tables show is in a CSV file of the run, under the column name the
table shows it with: checked on a short real run (the NumPy stand-in and the fault-injecting
stand-in in its harmless variant, two batch sizes, two repeats, two epochs), so no table
can print a figure a pandas user cannot read back."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from frameworks import EXTRA_ENV
from tests.conftest import ROOT
from tests.faulty_framework import EXTRA_FRAMEWORKS as FAULTY
from tests.standin_framework import EXTRA_FRAMEWORKS as STANDIN

NUMBER = re.compile(r"-?[\d,]*\.?\d+(e[-+]?\d+)?")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("results")
    command = [sys.executable, "-m", "benchmarks.run", "--framework", "standin,faulty",
               "--variant", "standin:numpy,faulty:ok", "--data", "synthetic", "--train-size", "128",
               "--test-size", "64", "--batch-size", "16,32", "--epochs", "2", "--warmup", "1", "--window", "2",
               "--threads", "1", "--repeats", "2", "--no-parity", "--out", str(out)]
    env = {**os.environ, EXTRA_ENV: f"{STANDIN};{FAULTY}"}
    completed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    (folder,) = out.iterdir()
    assert (folder / "report.md").exists(), completed.stdout  # the runner says why a report was not rendered
    return folder


def markdown_tables(text: str) -> list[pd.DataFrame]:
    """Each Markdown table of `text`, its cells as text under its header's names."""
    tables, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif block:
            tables.append(pd.DataFrame(block[2:], columns=block[0]))  # block[1]: the alignment row
            block = []
    return tables


def half_unit(shown: str) -> float:
    """Half of the last digit's place of a number as printed: how far the value may lie from it."""
    mantissa, _, exponent = shown.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 0.5 * 10 ** (int(exponent or 0) - decimals)


def test_every_number_of_the_reports_tables_is_in_a_csv_under_its_column_name(run_dir):
    csvs = {path.name: pd.read_csv(path) for path in sorted(run_dir.glob("*.csv"))}
    tables = markdown_tables((run_dir / "report.md").read_text())
    shown = {column for table in tables for column in table.columns}
    assert {"ratio", "ratio_low", "ratio_high", "images_per_s", "step_ms_median", "gflops", "repeat_spread",
            "contention", "test_accuracy", "train_s"} <= shown, shown
    checked, missing = 0, []
    for table in tables:
        for column in table.columns:
            holders = [frame[column] for frame in csvs.values() if column in frame]
            for cell in table[column]:
                if not NUMBER.fullmatch(cell):
                    continue
                value = float(cell.replace(",", ""))
                numbers = [pd.to_numeric(values, errors="coerce") for values in holders]
                if not any(((values - value).abs() <= half_unit(cell) * (1 + 1e-9)).any() for values in numbers):
                    missing.append(f"{column} = {cell}")
                checked += 1
    assert checked > 100 and missing == [], f"not in any CSV under the same name: {missing}"


def test_no_table_prints_a_number_in_scientific_notation(run_dir):
    for table in markdown_tables((run_dir / "report.md").read_text()):
        for column in table.columns:
            assert not table[column].str.fullmatch(r"-?[\d.]+e[-+]\d+").any(), (column, table[column].tolist())


def test_the_rendered_csv_files_read_back_with_pandas(run_dir):
    ranking = pd.read_csv(run_dir / "ranking.csv")
    assert {"ratio", "ratio_low", "ratio_high", "gflops", "repeat_spread"} <= set(ranking.columns)
    assert not math.isnan(ranking["repeat_spread"].max()), "two repeats: a spread per job"
    frameworks = pd.read_csv(run_dir / "frameworks.csv")
    assert set(frameworks["framework"]) <= {"standin", "faulty"} and (frameworks["ratio"] >= 1).all()
