"""The README's tables (Table 1 on MNIST; the digits default over seeds; the other regimes)
are the committed tables, each written from its folder's runs/ and nothing else: a
regenerated table not copied into the README, or runs filed without regenerating the
table, fail here (that each report equals its regeneration: tests/test_results.py); so
does a mean (SD) quoted in the README's prose that no table shows.
The README and the docs/ pages it links to are checked as a user reads them: every link
and anchor resolves, every config, module, script and results path they name exists, and
none of them points at a folder that only the project's own machines have."""

import glob
import importlib.util
import json
import os
import re

import pytest

from gmdgm_tf.sweeps import markdown, records
from conftest import REPO, report_summaries

# README block name -> the results folder its table is written from
BLOCKS = {"table1": "table1", "digits": "digits", "regimes": "regimes"}


def readme_block(name):
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    begin, end = markdown.readme_markers(name)
    assert begin in text and end in text, f"README lacks the {name} block"
    return text.split(begin, 1)[1].split(end, 1)[0].strip("\n")


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_readme_table_equals_the_committed_table_and_its_runs(name):
    folder = os.path.join(REPO, "results", BLOCKS[name])
    runs_dir = os.path.join(folder, "runs")
    if not glob.glob(os.path.join(runs_dir, "*", "metrics.json")):   # no run filed yet
        assert readme_block(name) == "", f"the README quotes a {name} table but no runs"
        return
    with open(os.path.join(folder, "table1_summary.md"), encoding="utf-8") as f:
        committed = f.read().strip("\n")
    assert readme_block(name) == committed, f"copy {folder}/table1_summary.md into README"
    # ... written from runs/ and nothing else (that each committed report equals its
    # regeneration from the summaries it names is tests/test_results.py's check)
    named = set(report_summaries(folder))
    filed = {os.path.dirname(p) for p in glob.glob(os.path.join(runs_dir, "*", "metrics.json"))}
    assert named == filed, f"rerun gmdgm_tf.sweeps.report --summaries={runs_dir}"


def test_readme_prose_quotes_only_figures_its_tables_hold():
    """A 'mean (SD)' figure written by hand around the tables (e.g. 'the fast GM-DGM scores
    93.9 (0.4)') must be one the generated blocks show, so it cannot go stale unseen."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        prose = f.read()
    tables = ""
    for name in BLOCKS:
        tables += readme_block(name)
        begin, end = markdown.readme_markers(name)
        before, rest = prose.split(begin, 1)
        prose = before + rest.split(end, 1)[1]
    figure = re.compile(r"\d+\.\d+ \(\d+\.\d+\)")
    quoted = figure.findall(prose)
    assert quoted, "the pattern no longer finds the prose's figures"
    stale = sorted(set(quoted) - set(figure.findall(tables)))
    assert not stale, f"README prose quotes figures no table shows: {stale}"


def test_readme_train_step_figures_are_the_committed_benchmark():
    """The Performance section's ms per step and fraction of the GEMM peak are the AVX2
    benchmark's GM-DGM float32 row: rerunning the benchmark without the README fails."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        section = f.read().split("## Performance", 1)[1].split("\n## ", 1)[0]
    quoted = re.search(r"takes (\d+) ms, (\d+) % of the float32 GEMM peak", " ".join(section.split()))
    assert quoted, "the README's Performance section no longer quotes the train step"
    with open(os.path.join(REPO, "benchmarks", "results", "avx2", "train_step.json"),
              encoding="utf-8") as f:
        row = next(r for r in json.load(f)["results"] if (r["model"], r["precision"], r["mode"],
                   r["variant"]) == ("gmdgm", "float32", "graph", "vectorised"))
    assert (int(quoted[1]), int(quoted[2])) == (round(row["ms_per_step"]),
                                                round(100 * row["fraction_of_peak"]))


def test_readme_block_replacement_keeps_the_rest():
    text = f"intro\n{markdown.README_BEGIN}\nold\n{markdown.README_END}\noutro\n"
    new = markdown.replace_readme_block(text, "| new |\n")
    assert new == f"intro\n{markdown.README_BEGIN}\n| new |\n{markdown.README_END}\noutro\n"
    with pytest.raises(records.ReportError, match="no .* block"):
        markdown.replace_readme_block("no markers", "x")
    begin, end = markdown.readme_markers("digits")
    assert markdown.replace_readme_block(f"{begin}\nold\n{end}", "new\n", "digits") == (
        f"{begin}\nnew\n{end}")


def test_ci_runs_the_readme_test_command():
    """CI must run exactly the command the README gives for testing."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = re.search(r"^(python -m pytest [^#\n]*?)\s*# test", f.read(), re.M).group(1)
    with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as f:
        ci = [line.strip() for line in f if line.startswith("python -m pytest")]
    assert ci == [readme]


def test_readme_digits_numbers_are_runs_of_the_current_default_config():
    """The README quotes the digits runs as the main job's numbers: they must be runs of
    configs/digits_gmdgm.py as it is now (a changed default needs new runs)."""
    from gmdgm_tf import config  # pylint: disable=import-outside-toplevel
    from conftest import load_config  # pylint: disable=import-outside-toplevel
    runs_dir = os.path.join(REPO, "results", "digits", "runs")
    if not os.path.isdir(runs_dir):
        pytest.skip("no digits runs committed")
    for name in sorted(os.listdir(runs_dir)):
        with open(os.path.join(runs_dir, name, "config.json"), encoding="utf-8") as f:
            filed = json.load(f)
        current = load_config("digits_gmdgm")
        current.seed = filed["seed"]
        assert config.config_differences(filed, json.loads(current.to_json())) == [], name


# ------------------------------------------------------------- the README and docs/ pages

# The README's own text, outside the tables the report writes into it (those grow with the
# rows the issues ask for): the rest belongs in docs/.
README_MAX_PROSE_LINES = 175


def read(path):
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        return f.read()


def pages():
    """README.md and every docs/ page, as repo-relative paths."""
    docs = sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "*.md")))
    return ["README.md"] + docs


def anchors(markdown):
    """The anchors GitHub gives a page's headings ("## Table 1: the recipes" ->
    "table-1-the-recipes")."""
    text = re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S)  # no headings in code
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.*)$", text, re.M)}


def local_links(markdown):
    """(target, anchor) of every relative markdown link and image."""
    for target in re.findall(r"\]\(([^)\s]+)\)", markdown):
        if "://" not in target:
            path, _, anchor = target.partition("#")
            yield path, anchor


def test_readme_is_short_and_opens_with_what_install_test_run_results():
    text = read("README.md")
    tables = sum(len(readme_block(name).splitlines()) for name in BLOCKS)
    prose_lines = len(text.splitlines()) - tables
    assert prose_lines <= README_MAX_PROSE_LINES, "move details to docs/"
    order = ["Willetts, Roberts & Holmes", "pip install", "python -m pytest",
             "python -m gmdgm_tf.train", "## Table 1", "results/table1/figure2.png"]
    where = [text.find(s) for s in order]
    assert -1 not in where and where == sorted(where), dict(zip(order, where))


def test_readme_install_command_is_the_one_ci_runs():
    """CI installs as the README says (CI adds only -q)."""
    readme = re.search(r"^(python -m pip install [^#\n]*?)\s*# install", read("README.md"),
                       re.M).group(1)
    ci = [line.strip().replace(" -q", "") for line in read(".ci/run").splitlines()
          if line.startswith("python -m pip install")]
    assert ci == [readme]


@pytest.mark.parametrize("page", pages())
def test_links_and_anchors_resolve(page):
    text = read(page)
    for path, anchor in local_links(text):
        target = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        assert os.path.exists(os.path.join(REPO, target)), f"{page} links {path}"
        if anchor and target.endswith(".md"):
            assert anchor in anchors(read(target)), f"{page} links {path}#{anchor}"


def test_readme_links_every_docs_page():
    """Each docs/ page is reached from the README (a page no link reaches is lost)."""
    linked = {os.path.normpath(p) for p, _ in local_links(read("README.md"))}
    for page in pages()[1:]:
        assert page in linked, f"README does not link {page}"


@pytest.mark.parametrize("page", pages())
def test_no_paths_that_only_the_project_machines_have(page):
    """Users have no ../shared (the tests' MNIST copy) and no worktree paths."""
    text = read(page)
    for local in ("../shared", "/work/", "shared/data"):
        assert local not in text, f"{page} mentions {local}"


@pytest.mark.parametrize("page", pages())
def test_named_configs_modules_scripts_and_results_exist(page):
    text = read(page)
    for path in set(re.findall(r"(?<![\w/.-])((?:configs|benchmarks|colab|tests|gmdgm_tf)/[\w/]+\.(?:py|ipynb))",
                               text)):
        placeholder = os.path.basename(path).split(".")[0].isupper()  # configs/X.py
        assert placeholder or os.path.isfile(os.path.join(REPO, path)), f"{page} names {path}"
    for module in set(re.findall(r"python -m (gmdgm_tf[\w.]*)", text)):
        assert importlib.util.find_spec(module) is not None, f"{page} runs {module}"
    for path in set(re.findall(r"(?<![\w/.-])(results/[\w./-]*\w)", text)):
        if "<" not in path:
            assert os.path.exists(os.path.join(REPO, path)), f"{page} names {path}"


@pytest.mark.parametrize("page", pages())
def test_report_commands_rewrite_the_readme_blocks_they_name(page):
    """A quoted `sweeps.report ... --readme=README.md` command reads committed summaries and
    writes the folder its README block is checked against (BLOCKS above)."""
    text = read(page).replace("\\\n", " ")
    for command in re.findall(r"python -m gmdgm_tf\.sweeps\.report [^\n`]*--readme=README\.md[^\n`]*",
                              text):
        flags = dict(re.findall(r"--(\w+)=(\S+)", command))
        block = flags.get("readme_block", "table1")
        assert flags["summaries"] == f"results/{BLOCKS[block]}/runs", command
        assert flags["out"] == f"results/{BLOCKS[block]}", command


@pytest.mark.parametrize("page", pages())
def test_sweep_commands_are_the_experiments_their_summaries_filed(page):
    """A quoted `sweeps.run` command whose summaries are committed resolves, run by run, to
    the config each filed run trained (what the sweep itself checks before training): a
    config file or an override edited since, and not the command, fails here."""
    import shlex  # pylint: disable=import-outside-toplevel
    from gmdgm_tf.sweeps import run  # pylint: disable=import-outside-toplevel
    text = read(page).replace("\\\n", " ")
    for command in re.findall(r"python -m gmdgm_tf\.sweeps\.run [^\n`]*", text):
        args = [a.partition("=")[::2] for a in shlex.split(command)[3:]]
        options = dict(args)
        summaries = os.path.join(REPO, options.get("--summaries", ""))
        if "NAME" in command or not glob.glob(os.path.join(summaries, "*", "config.json")):
            continue                                   # a template, or nothing filed
        recipes = [run.Recipe.parse(value.replace("configs/", f"{REPO}/configs/", 1),
                                    [tuple(v.split("=", 1)) for k, v in args if k == "--set"])
                   for key, value in args if key == "--recipe"]
        runs = run.plan(recipes, run.parse_seeds(options["--seeds"]), "/nonexistent/out")
        run.check_filed(runs, summaries)
