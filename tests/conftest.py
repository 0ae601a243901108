"""Shared fixtures: tiny configs and the team's MNIST copy (skipped when absent)."""

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


def load_config(name, arg=None):
    """configs/<name>.py's get_config(arg), loaded as the training command does."""
    from gmdgm_tf import config  # pylint: disable=import-outside-toplevel
    return config.load(os.path.join(REPO, "configs", f"{name}.py") + (f":{arg}" if arg else ""))


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
