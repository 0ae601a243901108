"""The Colab notebooks: how they open from GitHub, their forms, and a CPU run of each.

Parameters are injected the way papermill does it: a cell assigning the overrides is
inserted right after the cell tagged "parameters". Any cell error fails the test. The
static tests read the saved notebooks and take seconds; the two runs (what CI executes)
train tiny configs top to bottom.
"""

import ast
import base64
import json
import os
import re
import shlex
import time

import pytest

from conftest import MNIST_DIR, REPO
from gmdgm_tf.filenames import FIGURES

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

CELL_TIMEOUT_S = 600
NOTEBOOKS = ("quickstart", "train_tpu")
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
# A Colab form field: `NAME = value  # @param [options] {spec}`, nothing after the spec
# (Colab reads the rest of the line as the annotation; notes go in `# @markdown` lines).
FORM_FIELD = re.compile(r"^(\w+) = (.+?)  # @param ?(\[[^\]]*\])? ?(\{[^}]*\})?$")
FORM_TYPES = {"integer": int, "number": (int, float), "boolean": bool, "string": str}


def read_notebook(name):
    return nbformat.read(os.path.join(REPO, "colab", f"{name}.ipynb"), as_version=4)


def parameters_cell(nb):
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "a notebook needs exactly one cell tagged 'parameters'"
    return nb.cells.index(cells[0]), cells[0]


def parameter_defaults(nb):
    """{name: default value} of the parameters cell's assignments."""
    tree = ast.parse(parameters_cell(nb)[1].source)
    return {t.id: ast.literal_eval(node.value) for node in tree.body
            if isinstance(node, ast.Assign) for t in node.targets}


def setup_url():
    with open(os.path.join(REPO, "setup.py"), encoding="utf-8") as f:
        match = re.search(r'^\s*url\s*=\s*"([^"]+)"', f.read(), re.MULTILINE)
    assert match, "setup.py has no url="
    return match.group(1)


def run_notebook(name, cwd, **parameters):
    """Executes colab/<name>.ipynb with `parameters` injected; returns the executed notebook."""
    nb = read_notebook(name)
    index, _ = parameters_cell(nb)
    unknown = set(parameters) - set(parameter_defaults(nb))
    assert not unknown, f"{name} has no parameters {sorted(unknown)}"
    injected = nbformat.v4.new_code_cell(
        "\n".join(f"{k} = {v!r}" for k, v in parameters.items()))
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, injected)
    # The kernel imports this checkout's gmdgm_tf, wherever an installed one points.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (REPO, os.environ.get("PYTHONPATH")) if p))
    start = time.time()
    try:
        nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                resources={"metadata": {"path": str(cwd)}}).execute(env=env)
    finally:  # kept beside the run for a look at what the notebook showed
        nbformat.write(nb, os.path.join(cwd, f"{name}.executed.ipynb"))
    nb.metadata["seconds"] = time.time() - start
    return nb


def outputs(nb):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def outputs_text(nb):
    return "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/markdown", ""))
                     for o in outputs(nb))


def check_shows_run(nb, cwd, workdir):
    """The run's own PNGs are displayed, and TensorBoard was only pointed at, not started.

    workdir: as the notebook names it (relative to its directory cwd, or absolute)."""
    shown = [base64.b64decode(o["data"]["image/png"]) for o in outputs(nb)
             if "image/png" in o.get("data", {})]
    for name in FIGURES:
        with open(os.path.join(cwd, workdir, name), "rb") as f:
            assert f.read() in shown, f"{name} of the run is not displayed"
    assert "tensorboard --logdir " + shlex.quote(os.path.join(workdir, "tensorboard")) \
        in outputs_text(nb)
    launched = [o for o in outputs(nb) if {"text/html", "application/javascript"}
                & set(o.get("data", {}))]
    assert not launched, "TensorBoard (or other HTML) was displayed in CI"


# ------------------------------------------------------------------------ static checks


def test_notebooks_are_saved_without_outputs():
    for name in NOTEBOOKS:
        nb = read_notebook(name)
        nbformat.validate(nb)
        assert all(not c.outputs for c in nb.cells if c.cell_type == "code"), name


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_opens_from_github(name):
    """REPO_URL is setup.py's url, and the first cell's badge opens this notebook from it."""
    url = setup_url()
    nb = read_notebook(name)
    assert parameter_defaults(nb)["REPO_URL"] == url
    first = next(c for c in nb.cells if c.cell_type == "markdown")
    colab = url.replace("https://github.com/", "https://colab.research.google.com/github/")
    assert f"[![Open In Colab]({COLAB_BADGE})]({colab}/blob/main/colab/{name}.ipynb)" \
        in first.source


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_parameters_are_colab_form_fields(name):
    """Every parameter is a well-formed `# @param` field with a `# @markdown` note above it."""
    lines = parameters_cell(read_notebook(name))[1].source.splitlines()
    assert lines[0].startswith("# @title "), "the form needs a title"
    for i, line in enumerate(lines[1:], 1):
        if line.startswith("#"):
            assert line.startswith("# @markdown "), f"plain comment in the form: {line!r}"
            continue
        match = FORM_FIELD.match(line)
        assert match, f"not a form field: {line!r}"
        field, value, options, spec = match.groups()
        assert options or spec, line
        assert lines[i - 1].startswith("# @markdown "), f"{field} has no note above it"
        value = ast.literal_eval(value)
        if options and "allow-input: true" not in (spec or ""):
            assert value in ast.literal_eval(options), f"{field}'s default is not an option"
        kind = re.search(r'type:\s*"(\w+)"', spec or "")
        if kind:
            expected = FORM_TYPES[kind.group(1)]
            assert isinstance(value, expected) and (expected is bool) == isinstance(
                value, bool), f"{field} = {value!r} is not a form {kind.group(1)}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_uses_the_library(name):
    """Configs load through gmdgm_tf.config, figures come from the run: no local copies."""
    code = [c.source for c in read_notebook(name).cells if c.cell_type == "code"]
    defined = {node.name for source in code for node in ast.walk(ast.parse(source))
               if isinstance(node, ast.FunctionDef)}
    assert "load_config" not in defined
    assert any("config_lib.load(" in source for source in code)
    assert not any("imshow" in source or "confusion_matrix" in source for source in code)


def test_train_tpu_defaults_to_the_configs_own_settings():
    defaults = parameter_defaults(read_notebook("train_tpu"))
    assert os.path.isfile(os.path.join(REPO, defaults["CONFIG"]))
    assert defaults["EPOCHS"] == 0 and defaults["PRECISION"] == ""
    assert defaults["TENSORBOARD"] == "auto"


# ------------------------------------------------------------------------- executions


def test_quickstart_runs(tmp_path):
    workdir = str(tmp_path / "run")
    nb = run_notebook("quickstart", tmp_path, SMOKE=True, EPOCHS=1, WORKDIR=workdir,
                      INSTALL="auto")
    text = outputs_text(nb)
    assert "nothing to install" in text
    assert "| heldout |" in text and "| paper |" in text
    assert os.path.exists(os.path.join(workdir, "metrics.json"))
    check_shows_run(nb, tmp_path, workdir)


def test_train_tpu_runs_on_cpu_with_mnist(tmp_path):
    if not os.path.isfile(os.path.join(MNIST_DIR, "train-images-idx3-ubyte.gz")):
        pytest.skip(f"MNIST IDX files not found in {MNIST_DIR}")
    # EPOCHS, PRECISION, WORKDIR and EXPORT_DIR keep their defaults: the config's own
    # epochs and precision, directories named after the config. A wall-clock budget (never
    # reached here) with the fast recipe's restarts, which config.validate refuses together:
    # the notebook trains one initialisation then.
    nb = run_notebook("train_tpu", tmp_path, SMOKE=True, DATA_DIR=MNIST_DIR,
                      STRATEGY="auto", INSTALL="auto", MAX_MINUTES=30)
    text = outputs_text(nb)
    assert "nothing to install" in text
    assert "replica" in text  # the strategy line, e.g. "_DefaultDistributionStrategy with 1 replica"
    assert "| heldout |" in text
    workdir = os.path.join("runs", "mnist_gmdgm_fast")
    check_shows_run(nb, tmp_path, workdir)
    from gmdgm_tf import config as config_lib  # pylint: disable=import-outside-toplevel
    smoke = config_lib.load(os.path.join(REPO, "configs", "mnist_gmdgm_fast.py:smoke"))
    with open(tmp_path / workdir / "metrics.json", encoding="utf-8") as f:
        assert json.load(f)["training"]["epochs_run"] == smoke.train.epochs
    with open(tmp_path / workdir / "config.json", encoding="utf-8") as f:
        run_config = json.load(f)
    assert run_config["train"]["precision"] == smoke.train.precision == "float32"
    assert run_config["data"]["num_extra_slots"] == smoke.data.num_extra_slots
    assert smoke.train.restarts > 1 and run_config["train"]["restarts"] == 1
    assert run_config["train"]["max_minutes"] == 30
    try:
        from gmdgm_tf import export  # pylint: disable=import-outside-toplevel,unused-import
        assert os.path.isdir(tmp_path / "exports" / "mnist_gmdgm_fast"), \
            "export module present but nothing exported"
    except ImportError:
        assert "no export module" in text
