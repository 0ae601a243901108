"""The README's tables (Table 1 on MNIST; the digits default over seeds) are the committed
tables, and each committed table is what its committed run summaries give: a regenerated
table not copied into the README, or runs filed without regenerating the table, fail here."""

import os

import pytest

from gmdgm_tf.sweeps import report
from conftest import REPO

# README block name -> the results folder its table is written from
BLOCKS = {"table1": "table1", "digits": "digits"}


def readme_block(name):
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    begin, end = report.readme_markers(name)
    assert begin in text and end in text, f"README lacks the {name} block"
    return text.split(begin, 1)[1].split(end, 1)[0].strip("\n")


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_readme_table_equals_the_committed_table_and_its_runs(name):
    folder = os.path.join(REPO, "results", BLOCKS[name])
    runs_dir = os.path.join(folder, "runs")
    if not os.path.isdir(runs_dir) or not os.listdir(runs_dir):
        assert readme_block(name) == "", f"the README quotes a {name} table but no runs"
        return
    with open(os.path.join(folder, "table1_summary.md"), encoding="utf-8") as f:
        committed = f.read().strip("\n")
    assert readme_block(name) == committed, f"copy {folder}/table1_summary.md into README"
    recipes, runs = report.read_runs(runs_dir)
    fresh = report.summary_markdown(report.aggregate(runs, recipes)).strip("\n")
    assert committed == fresh, "rerun gmdgm_tf.sweeps.report: the table is stale"


def test_readme_block_replacement_keeps_the_rest():
    text = f"intro\n{report.README_BEGIN}\nold\n{report.README_END}\noutro\n"
    new = report.replace_readme_block(text, "| new |\n")
    assert new == f"intro\n{report.README_BEGIN}\n| new |\n{report.README_END}\noutro\n"
    with pytest.raises(report.ReportError, match="no .* block"):
        report.replace_readme_block("no markers", "x")
    begin, end = report.readme_markers("digits")
    assert report.replace_readme_block(f"{begin}\nold\n{end}", "new\n", "digits") == (
        f"{begin}\nnew\n{end}")


def test_ci_runs_the_readme_test_command():
    """CI must run exactly the command the README gives for testing."""
    import re  # pylint: disable=import-outside-toplevel
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = re.search(r"^(python -m pytest [^#\n]*?)\s*# test", f.read(), re.M).group(1)
    with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as f:
        ci = [line.strip() for line in f if line.startswith("python -m pytest")]
    assert ci == [readme]


def test_readme_digits_numbers_are_runs_of_the_current_default_config():
    """The README quotes the digits runs as the main job's numbers: they must be runs of
    configs/digits_gmdgm.py as it is now (a changed default needs new runs)."""
    import json  # pylint: disable=import-outside-toplevel
    from gmdgm_tf import rundir  # pylint: disable=import-outside-toplevel
    from conftest import load_config  # pylint: disable=import-outside-toplevel
    runs_dir = os.path.join(REPO, "results", "digits", "runs")
    if not os.path.isdir(runs_dir):
        pytest.skip("no digits runs committed")
    for name in sorted(os.listdir(runs_dir)):
        with open(os.path.join(runs_dir, name, "config.json"), encoding="utf-8") as f:
            filed = json.load(f)
        current = load_config("digits_gmdgm")
        current.seed = filed["seed"]
        assert rundir.config_differences(filed, json.loads(current.to_json())) == [], name
