"""The README's Table 1 is the committed table, and the committed table is what the
committed run summaries give: a regenerated table not copied into the README, or runs
filed without regenerating the table, fail here."""

import os

import pytest

from gmdgm_tf.sweeps import report
from conftest import REPO

TABLE1 = os.path.join(REPO, "results", "table1")


def readme_block():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    assert report.README_BEGIN in text and report.README_END in text
    return text.split(report.README_BEGIN, 1)[1].split(report.README_END, 1)[0].strip("\n")


def test_readme_table1_equals_the_committed_table_and_its_runs():
    runs_dir = os.path.join(TABLE1, "runs")
    if not os.path.isdir(runs_dir) or not os.listdir(runs_dir):
        assert readme_block() == "", "the README quotes a Table 1 but no runs are committed"
        return
    with open(os.path.join(TABLE1, "table1_summary.md"), encoding="utf-8") as f:
        committed = f.read().strip("\n")
    assert readme_block() == committed, "copy results/table1/table1_summary.md into README"
    recipes, runs = report.read_runs(runs_dir)
    fresh = report.summary_markdown(report.aggregate(runs, recipes)).strip("\n")
    assert committed == fresh, "rerun gmdgm_tf.sweeps.report: the table is stale"


def test_readme_block_replacement_keeps_the_rest():
    text = f"intro\n{report.README_BEGIN}\nold\n{report.README_END}\noutro\n"
    new = report.replace_readme_block(text, "| new |\n")
    assert new == f"intro\n{report.README_BEGIN}\n| new |\n{report.README_END}\noutro\n"
    with pytest.raises(report.ReportError, match="no .* block"):
        report.replace_readme_block("no markers", "x")
