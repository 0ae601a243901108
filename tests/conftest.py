"""Shared fixtures: tiny configs and the team's MNIST copy (skipped when absent)."""

import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST_DIR = os.path.join(os.path.dirname(REPO), "shared", "data", "mnist")


@pytest.fixture
def mnist_dir():
    if not os.path.isfile(os.path.join(MNIST_DIR, "train-images-idx3-ubyte.gz")):
        pytest.skip(f"MNIST IDX files not found in {MNIST_DIR}")
    return MNIST_DIR


def load_config(name, arg=None):
    """Loads configs/<name>.py the way config_flags does and returns get_config(arg)."""
    import importlib.util  # pylint: disable=import-outside-toplevel
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)
