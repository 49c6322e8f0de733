"""README's reference tables are produced from the committed runs (`python -m report.readme`),
not typed: each matches what its run's CSV files give today, and a stale one is caught."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

from report.readme import BLOCK, render
from tests.conftest import ROOT


def test_readme_reference_tables_are_those_of_the_committed_runs():
    text = (ROOT / "README.md").read_text()
    blocks = {(match["kind"], match["run"]) for match in BLOCK.finditer(text)}
    assert {("throughput", "results/reference"), ("curves", "results/reference-cifar10"),
            ("noise", "results/repeats-avx2"), ("gains", "results/tuning-cpu")} <= blocks
    _, changed = render(text)
    assert changed == [], f"README's tables differ from their runs: {changed}; run python -m report.readme"


def test_a_stale_table_is_named_and_rewritten(tmp_path):
    shutil.copytree(ROOT / "results" / "reference", tmp_path / "results" / "reference")
    readme = tmp_path / "README.md"
    readme.write_text("Intro.\n\n<!-- generated: throughput results/reference -->\n| job | 1 |\n"
                      "<!-- end generated -->\n\nAfter.\n")
    command = [sys.executable, "-m", "report.readme", str(readme)]
    check = subprocess.run([*command, "--check"], cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 1
    assert check.stderr.strip() == "out of date: throughput results/reference (python -m report.readme rewrites it)"
    assert subprocess.run(command, cwd=ROOT, capture_output=True, text=True).returncode == 0
    rewritten = readme.read_text()
    assert rewritten.startswith("Intro.\n\n<!-- generated: throughput results/reference -->\n| job ")
    assert re.search(r"\| tensorflow:function +\|( +\d+ \|){3}\n", rewritten), rewritten
    assert rewritten.endswith("<!-- end generated -->\n\nAfter.\n")
    assert subprocess.run([*command, "--check"], cwd=ROOT, capture_output=True, text=True).returncode == 0


def test_a_table_of_an_unknown_kind_or_run_exits_2(tmp_path):
    readme = tmp_path / "README.md"
    for block, message in [("<!-- generated: colours results/reference -->", "unknown generated table 'colours'"),
                           ("<!-- generated: throughput results/nowhere -->", "results/nowhere holds no summary.csv"),
                           ("<!-- generated: noise results/nowhere -->", "results/nowhere holds no run folders")]:
        readme.write_text(f"{block}\n<!-- end generated -->\n")
        completed = subprocess.run([sys.executable, "-m", "report.readme", str(readme), "--check"], cwd=ROOT,
                                   capture_output=True, text=True)
        assert completed.returncode == 2 and message in completed.stderr.strip().splitlines()[-1], completed.stderr
