"""Shared fixtures: tiny configs and the team's MNIST copy (skipped when absent)."""

import json
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST_DIR = os.path.join(os.path.dirname(REPO), "shared", "data", "mnist")


@pytest.fixture
def mnist_dir():
    if not os.path.isfile(os.path.join(MNIST_DIR, "train-images-idx3-ubyte.gz")):
        pytest.skip(f"MNIST IDX files not found in {MNIST_DIR}")
    return MNIST_DIR


def load_config(name, arg=None, overrides=()):
    """configs/<name>.py's get_config(arg), loaded as the training command does."""
    from gmdgm_tf import config  # pylint: disable=import-outside-toplevel
    return config.load(os.path.join(REPO, "configs", f"{name}.py") + (f":{arg}" if arg else ""),
                       overrides)


# The training loop's tests train the main job (configs/digits_gmdgm.py) with these fields
# at base_config's values (the paper's: one initialisation, 15 slots, alpha 1.1): they test
# the loop, not the main job's recipe, whose best of 3 initialisations and 35 slots would
# double their time, and whose alpha of 10 steepens the gradients that the two-replica
# tests compare with a single device's. The main job as it is still runs end to end in
# test_sweeps and test_notebooks.
PLAIN_FIELDS = ("train.restarts", "train.restart_epochs", "data.num_extra_slots",
                "data.prior_rule", "model.alpha")


def plain_overrides():
    """{field: base_config's value} for PLAIN_FIELDS."""
    from gmdgm_tf import config  # pylint: disable=import-outside-toplevel
    base = config.base_config()
    return {field: base[field.split(".")[0]][field.split(".")[1]] for field in PLAIN_FIELDS}


def plain_flags():
    """plain_overrides() as the training command's --config.* flags."""
    return tuple(f"--config.{field}={value}" for field, value in plain_overrides().items())


def plain_digits(arg="smoke"):
    """configs/digits_gmdgm.py[:arg] with plain_overrides()."""
    return load_config("digits_gmdgm", arg, plain_overrides())


def data_config(**fields):
    """A validated config.data: base_config's fields with `fields` set, as the package
    receives it (it reads every field directly, trusting validate)."""
    from gmdgm_tf import config  # pylint: disable=import-outside-toplevel
    whole = config.base_config()
    whole.data.update(fields)
    return config.validate(whole).data


# A path from the root of a file system: "/" opening a token (after a space, quote, "=",
# "(", "[" or backquote) and followed by a name and another "/" (not "https://...").
_ABSOLUTE_PATH = re.compile(r"""(?:^|[\s"'=(\[`])(/[\w.-]+/[^\s"'`)\],]*)""")


def absolute_paths(text):
    """-> the absolute paths in text (a run record, a report...)."""
    return _ABSOLUTE_PATH.findall(text)


def report_summaries(folder):
    """A committed report folder -> the summary folders its all_runs.json names (each stored
    relative to the report), as absolute paths in the file's order."""
    with open(os.path.join(folder, "all_runs.json"), encoding="utf-8") as f:
        return [os.path.normpath(os.path.join(folder, r["summary"])) for r in json.load(f)["runs"]]
