"""The committed results read the same on any machine: no absolute path in any of them;
and every committed report (a folder with all_runs.json) is what `gmdgm_tf.sweeps.report`
writes from the summaries it names, each of which is still where it says."""

import glob
import os

import pytest

from gmdgm_tf.sweeps import records, report
from conftest import REPO, absolute_paths, report_summaries

RESULTS = ("results", os.path.join("benchmarks", "results"))
BINARY = (".png", ".h5", ".npz", ".npy")
# Reports made by the runner of an earlier day, which kept no run summaries to regenerate
# them from (docs/performance.md says so where it quotes them).
NO_SUMMARIES = {os.path.join("results", "table1_3epochs")}


def committed_reports():
    found = glob.glob(os.path.join(REPO, "results", "**", "all_runs.json"), recursive=True)
    return sorted(os.path.relpath(os.path.dirname(p), REPO) for p in found)


def result_files():
    for top in RESULTS:
        for root, _, names in os.walk(os.path.join(REPO, top)):
            yield from (os.path.join(root, n) for n in sorted(names) if not n.endswith(BINARY))


def test_no_committed_result_holds_an_absolute_path():
    found = {}
    for path in result_files():
        with open(path, encoding="utf-8") as f:
            paths = absolute_paths(f.read())
        if paths:
            found[os.path.relpath(path, REPO)] = paths[:2]
    assert not found, f"{len(found)} files hold absolute paths, e.g. {list(found.items())[:3]}"


def test_the_scan_reads_the_run_records():
    """A scan that read nothing would pass: it reads every kind of record filed."""
    names = {os.path.basename(p) for p in result_files()}
    assert {"runner.json", "config.json", "all_runs.json", "metrics.json", "table1.md",
            "README.md", "train_step.json"} <= names


def test_the_report_scan_finds_every_kind_of_report():
    reports = committed_reports()
    assert {os.path.join("results", "table1"), os.path.join("results", "regimes"),
            os.path.join("results", "digits", "probe8", "report")} <= set(reports)
    assert NO_SUMMARIES <= set(reports), "a legacy report named here no longer exists"


@pytest.mark.parametrize("folder", [r for r in committed_reports() if r not in NO_SUMMARIES])
def test_every_committed_report_is_its_summaries_regenerated(folder):
    """Summaries moved after their report was written (a baseline refiled under another
    folder) leave it naming paths that are gone; a report format changed without
    rerunning the report leaves its files stale. Rerun the command in the folder's
    recipe.md (`python -m gmdgm_tf.sweeps.report --summaries=... --out=FOLDER`)."""
    out = os.path.join(REPO, folder)
    named = report_summaries(out)
    gone = [os.path.relpath(p, REPO) for p in named if not os.path.isdir(p)]
    assert not gone, f"{folder}/all_runs.json names summaries that are gone: {gone[:3]}"
    summaries = sorted({os.path.dirname(p) for p in named})
    recipes, runs = records.read_runs(summaries)   # every run filed there, as the command reads
    _, texts = report.report_texts(runs, recipes, out)
    for file_name, fresh in texts.items():
        with open(os.path.join(out, file_name), encoding="utf-8", newline="") as f:
            assert f.read() == fresh, f"rerun gmdgm_tf.sweeps.report: {folder}/{file_name} is stale"
