"""The committed results read the same on any machine: no absolute path in any of them."""

import os

from conftest import REPO, absolute_paths

RESULTS = ("results", os.path.join("benchmarks", "results"))
BINARY = (".png", ".h5", ".npz", ".npy")


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
