"""The reference tables of README.md and docs/ are produced from the committed runs
(`python -m report.readme`), not typed: each matches what its run's CSV files give today, a stale
one is caught, and every page of docs/ is linked and links only to files that exist."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from report.readme import BLOCK, documents, render
from tests.conftest import ROOT, require

LINK = re.compile(r"\]\((?P<target>[^)#\s]+)(?:#[^)]*)?\)")


def test_readme_and_docs_reference_tables_are_those_of_the_committed_runs():
    blocks, stale = set(), []
    for document in documents():
        text = document.read_text()
        blocks |= {(match["kind"], match["run"]) for match in BLOCK.finditer(text)}
        _, changed = render(text)
        stale += [f"{document.relative_to(ROOT)}: {name}" for name in changed]
    assert {("answer", "results/reference"), ("throughput", "results/reference"), ("findings", "results/reference"),
            ("curves", "results/time-to-accuracy"), ("findings", "results/time-to-accuracy"),
            ("answer", "results/reference-resnet9"),
            ("noise", "results/repeats-avx2"), ("gains", "results/tuning-cpu"),
            ("parity", "results/reference"), ("input", "results/native-cpu/20261203-090312"),
            ("hotpath", "results/hotpath-cpu/20261203-082628"), ("overhead", "results/overhead-cpu/20261207-130857"),
            ("copy", "results/overhead-cpu/20261207-130857"), ("profile-ops", "results/profile-cpu/lenet"),
            ("profile-ops", "results/profile-cpu/resnet9"), ("profile-shares", "results/profile-cpu/resnet9"),
            ("profile-ops", "results/profile-cpu/lenet-compile-kernels")} <= blocks
    assert stale == [], f"tables differ from their runs: {stale}; run python -m report.readme"


def test_a_profile_table_keeps_the_jobs_its_pattern_matches_and_refuses_one_that_matches_none():
    text, _ = render("<!-- generated: profile-ops results/profile-cpu/lenet jax:.*bs512 -->\n<!-- end generated -->")
    jobs = {line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| jax")}
    assert jobs == {"jax:jit [stock] bs512", "jax:jit [tuned] bs512"}
    assert len(text.splitlines()) == 2 + 2 + 2 * 3  # markers, header, three operations per job
    with pytest.raises(ValueError, match="no profiled job's label matches 'mxnet'"):
        render("<!-- generated: profile-shares results/profile-cpu/lenet mxnet -->\n<!-- end generated -->")
    with pytest.raises(ValueError, match="is no regular expression"):
        render("<!-- generated: profile-ops results/profile-cpu/lenet jax:[ -->\n<!-- end generated -->")
    with pytest.raises(ValueError, match="takes no third word"):
        render("<!-- generated: throughput results/reference jax -->\n<!-- end generated -->")


def test_every_run_the_documents_generate_from_is_tracked_by_git():
    """A run folder that .gitignore keeps out renders here and fails on every clean checkout."""
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout: nothing to compare the runs against")
    runs = {match["run"] for document in documents() for match in BLOCK.finditer(document.read_text())}
    assert runs, "no generated table in README.md or docs/"
    untracked = [run for run in sorted(runs)
                 if not subprocess.run(["git", "ls-files", run], cwd=ROOT, capture_output=True,
                                       text=True, check=True).stdout.strip()]
    assert untracked == [], f"runs the documents cite are not tracked by git (see .gitignore): {untracked}"


def test_every_docs_page_is_linked_from_readme_and_every_relative_link_resolves():
    readme = (ROOT / "README.md").read_text()
    pages = documents()[1:]
    assert pages, "docs/ holds no page"
    for page in pages:
        assert f"(docs/{page.name})" in readme, f"README does not link docs/{page.name}"
    for document in documents():
        for match in LINK.finditer(document.read_text()):
            target = match["target"]
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (document.parent / target).exists(), f"{document.relative_to(ROOT)} links to missing {target}"


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


def test_a_docs_page_names_its_runs_from_the_project_root_and_each_stale_file_is_named(tmp_path):
    shutil.copytree(ROOT / "results" / "reference", tmp_path / "results" / "reference")
    (tmp_path / "docs").mkdir()
    stale = "<!-- generated: throughput results/reference -->\n| job | 1 |\n<!-- end generated -->\n"
    readme, page = tmp_path / "README.md", tmp_path / "docs" / "results.md"
    readme.write_text(stale)
    page.write_text(f"# Results\n\n{stale}")
    command = [sys.executable, "-m", "report.readme", str(readme), str(page)]
    check = subprocess.run([*command, "--check"], cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 1
    assert check.stderr.strip().splitlines() == [
        f"{name}: out of date: throughput results/reference (python -m report.readme rewrites it)"
        for name in (readme, page)]
    assert subprocess.run(command, cwd=ROOT, capture_output=True, text=True).returncode == 0
    assert re.search(r"\| tensorflow:function +\|( +\d+ \|){3}\n", page.read_text())
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


@pytest.mark.parametrize("command, options, row", [
    ("hotpath", ["--batch-size", "16"], "| step "),
    ("overhead", ["--batch-size", "16", "--input", "all"], "| resident "),
], ids=["hot path", "overhead"])
def test_a_side_measurement_writes_a_run_that_its_generated_table_reads(command, options, row, tmp_path):
    """`python -m benchmarks.hotpath --out` writes hotpath.csv and env.json, `benchmarks.overhead`
    overhead.csv and env.json; the blocks of docs/tuning.md and docs/testing.md are made from such folders."""
    require("jax")
    completed = subprocess.run([sys.executable, "-m", f"benchmarks.{command}", "--framework", "jax", "--pairs", "2",
                                "--window", "2", *options, "--out", str(tmp_path / "results" / "side")],
                               cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode in (0, 1), completed.stdout + completed.stderr  # 1: a ratio over the bound
    (run_dir,) = (tmp_path / "results" / "side").iterdir()
    assert {f"{command}.csv", "env.json"} <= {path.name for path in run_dir.iterdir()}
    page = f"<!-- generated: {command} results/side/{run_dir.name} -->\n<!-- end generated -->\n"
    text, changed = render(page, tmp_path)
    assert changed == [f"{command} results/side/{run_dir.name}"]
    assert "| jax:jit " in text and row in text and f"-m benchmarks.{command} --framework jax" in text
