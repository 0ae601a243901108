"""The multi-seed Table 1 runner: aggregation on hand-made runs, every file from a tiny run."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from matplotlib import image as mpimg

from gmdgm_tf import experiment
from gmdgm_tf.experiments import table1
from conftest import REPO

MACHINE = {"platform": "TestOS", "cpu": "test cpu", "cpu_count": 2, "gpus": 0,
           "python": "3", "tensorflow": "2", "workers": 1}


def protocol(overall, labelled, unlabelled, nmi=0.5, ari=0.4):
    return {"accuracy": overall, "accuracy_labelled_classes": labelled,
            "accuracy_unlabelled_classes": unlabelled, "nmi": nmi, "ari": ari,
            "confusion_matrix": np.eye(10, dtype=int).tolist(),
            "assignment_matrix": np.eye(10, 15, dtype=int).tolist(),
            "slot_map": list(range(10)) + [-1] * 5}


def hand_made_run(model, seed, heldout, paper=None, val=0.5, epochs=10, seconds=100.0,
                  wall=120.0):
    metrics = {"heldout": protocol(*heldout), "paper": protocol(*(paper or heldout)),
               "validation": protocol(val, val, val),
               "training": {"epochs_run": epochs, "selected_epoch": epochs - 1,
                            "seconds": seconds}}
    return {"model": model, "seed": seed, "workdir": f"runs/{model}_seed{seed}",
            "status": "finished", "wall_seconds": wall, "metrics": metrics, "history": [],
            "train_config": {"epochs": epochs}, "data_config": {
                "source": "mnist", "labelled_classes": [0, 1, 2, 8, 9],
                "labels_per_class": 100, "num_extra_slots": 5}}


def hand_made_runs():
    return [
        hand_made_run("gmdgm", 0, (0.90, 0.95, 0.85), paper=(0.92, 0.95, 0.89), val=0.91,
                      epochs=10, wall=100.0),
        hand_made_run("gmdgm", 1, (0.80, 0.90, 0.70), paper=(0.82, 0.90, 0.74), val=0.93,
                      epochs=20, wall=200.0),
        hand_made_run("gmdgm", 2, (0.70, 0.85, None), val=0.80, epochs=30, wall=None),
        hand_made_run("m2", 0, (0.74, 0.86, 0.63), val=0.7),
        {**hand_made_run("m2", 1, (0, 0, 0)), "metrics": None, "status": "failed: boom"},
    ]


def test_aggregate_mean_and_sample_sd():
    rows = table1.aggregate(hand_made_runs(), ["m2", "gmdgm"])
    by = {(r["model"], r["protocol"]): r for r in rows}
    assert [(r["model"], r["protocol"]) for r in rows] == [
        ("m2", "heldout"), ("m2", "paper"), ("gmdgm", "heldout"), ("gmdgm", "paper")]
    g = by["gmdgm", "heldout"]
    assert g["n_seeds"] == 3 and g["seeds"] == [0, 1, 2]
    assert g["overall"]["mean"] == pytest.approx(80.0)
    assert g["overall"]["sd"] == pytest.approx(10.0)           # ddof=1: sqrt(200 / 2)
    assert g["labelled"]["mean"] == pytest.approx(90.0)
    assert g["labelled"]["sd"] == pytest.approx(5.0)
    # a None group accuracy (no test points) is left out, not counted as 0
    assert g["unlabelled"] == {"mean": pytest.approx(77.5), "sd": pytest.approx(
        np.std([85.0, 70.0], ddof=1)), "n": 2}
    assert g["epochs_run"]["mean"] == pytest.approx(20.0) and g["epochs_run"]["sd"] == 10.0
    assert g["wall_seconds"]["mean"] == pytest.approx(150.0)   # the unknown wall time skipped
    assert g["nmi"] == {"mean": pytest.approx(0.5), "sd": pytest.approx(0.0), "n": 3}
    assert g["paper"] == table1.PAPER["gmdgm"]
    p = by["gmdgm", "paper"]
    assert p["overall"]["mean"] == pytest.approx(np.mean([92, 82, 70]))
    m2 = by["m2", "heldout"]   # the failed seed does not count; one seed has no SD
    assert m2["n_seeds"] == 1 and m2["overall"] == {"mean": pytest.approx(74.0), "sd": None,
                                                    "n": 1}
    assert table1.format_mean_sd(m2["overall"]) == "74.0 (n/a)"
    assert table1.format_mean_sd(g["overall"]) == "80.0 (10.0)"
    assert table1.format_mean_sd({"mean": None, "sd": None, "n": 0}) == "n/a"


def test_markdown_and_csv_from_hand_made_runs():
    runs = hand_made_runs()
    rows = table1.aggregate(runs, ["m2", "gmdgm"])
    text = table1.table_markdown(rows, runs, budget="3 epochs", machine=MACHINE)
    assert "| GM-DGM | heldout | 3 | 90.0 (5.0) | 93.7 (1.9) | 77.5 (10.6) | 87.4 (4.5) " \
           "| 80.0 (10.0) | 90.7 (2.0) |" in text
    assert "| M2 | paper | 1 | 86.0 (n/a) | 86.3 (2.2) | 63.0 (n/a) | 63.4 (8.3) " \
           "| 74.0 (n/a) | 74.3 (4.4) |" in text
    assert "ddof=1" in text and "3 epochs" in text and "2 CPUs" in text and "TestOS" in text
    assert "m2 seed 1: failed: boom" in text
    flat = table1.table_csv_rows(rows, budget="3 epochs", machine=MACHINE)
    assert len(flat) == 4 and set(flat[0]) == set(table1.CSV_FIELDS)
    g = next(r for r in flat if r["model"] == "gmdgm" and r["protocol"] == "heldout")
    assert (g["overall_mean"], g["overall_sd"], g["paper_overall_mean"]) == (80.0, 10.0, 90.7)


def test_best_run_is_chosen_on_validation_never_test():
    runs = hand_made_runs()
    best = table1.best_runs(runs)
    # gmdgm seed 0 has the best test accuracy, seed 1 the best validation accuracy
    assert best["gmdgm"]["seed"] == 1
    assert best["m2"]["seed"] == 0


def test_specs_configs_and_commands(tmp_path):
    specs = table1.make_specs(str(tmp_path), models=["m2", "gmdgm"], seeds=2,
                              dataset="digits", smoke=True, budget_epochs=3,
                              budget_minutes=1.5, data_dir="ignored")
    assert [s.name for s in specs] == ["m2_seed0", "m2_seed1", "gmdgm_seed0", "gmdgm_seed1"]
    config = specs[1].config()
    assert (config.model.name, config.seed, config.train.epochs) == ("m2", 1, 3)
    assert config.train.max_minutes == 1.5 and config.model.hidden_sizes == (32, 32)
    assert config.data.source == "digits" and "data.dir" not in specs[1].overrides
    command = specs[1].command()
    assert command[1:3] == ["-m", "gmdgm_tf.train"]
    assert command[3].endswith("configs/digits_gmdgm.py:smoke")
    assert {"--config.model.name=m2", "--config.seed=1", "--config.train.epochs=3",
            "--config.train.max_minutes=1.5"} <= set(command)
    assert specs[1].workdir == os.path.join(str(tmp_path), "runs", "m2_seed1")

    mnist = table1.make_specs("out", models=["gmdgm"], seeds=1, data_dir="/data/mnist")[0]
    assert mnist.config().model.name == "gmdgm" and mnist.config().train.epochs == 100
    assert mnist.config().data.dir == "/data/mnist" and mnist.config_arg is None
    for bad in (dict(models=["m3"]), dict(seeds=0), dict(dataset="cifar"),
                dict(budget_epochs=0), dict(budget_minutes=-1.0)):
        with pytest.raises(ValueError):
            table1.make_specs("out", **bad)


EXPECTED_FILES = ("table1.md", "table1.csv", "all_runs.json", "figure2.png",
                  "samples_m2.png", "samples_gmdgm.png", "learning_curves.png")


def check_png(path, shape=None):
    pixels = mpimg.imread(path)
    assert pixels[..., :3].std() > 0.01, path
    if shape:
        assert pixels.shape[:2] == shape, (path, pixels.shape)


def test_runner_writes_every_file_and_does_not_rerun(tmp_path):
    out = str(tmp_path / "t1")
    result = table1.run(out, models=["m2", "gmdgm"], seeds=2, dataset="digits", smoke=True,
                        budget_epochs=1)
    assert not result["failed"]
    for name in EXPECTED_FILES:
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    for model in ("m2", "gmdgm"):
        for seed in (0, 1):
            workdir = os.path.join(out, "runs", f"{model}_seed{seed}")
            with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
                config = json.load(f)
            assert (config["model"]["name"], config["seed"]) == (model, seed)
            assert os.path.exists(os.path.join(workdir, "metrics.json"))
    check_png(os.path.join(out, "figure2.png"), (1250, 1520))
    check_png(os.path.join(out, "samples_gmdgm.png"), (760, 1034))
    check_png(os.path.join(out, "learning_curves.png"), (460, 1200))
    with open(os.path.join(out, "table1.csv"), encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], r["protocol"], r["n_seeds"]) for r in rows] == [
        ("m2", "heldout", "2"), ("m2", "paper", "2"), ("gmdgm", "heldout", "2"),
        ("gmdgm", "paper", "2")]
    with open(os.path.join(out, "all_runs.json"), encoding="utf-8") as f:
        everything = json.load(f)
    assert len(everything["runs"]) == 4
    assert all(r["metrics"]["heldout"]["confusion_matrix"] for r in everything["runs"])
    assert everything["machine"]["cpu_count"] == os.cpu_count()
    with open(os.path.join(out, "table1.md"), encoding="utf-8") as f:
        text = f.read()
    assert "| GM-DGM | heldout | 2 |" in text and "not comparable" in text

    # finished seeds are not retrained (rerunning the command only rebuilds the report)
    metrics_path = os.path.join(out, "runs", "m2_seed0", "metrics.json")
    stamp = os.path.getmtime(metrics_path)
    specs = table1.make_specs(out, models=["m2", "gmdgm"], seeds=2, dataset="digits",
                              smoke=True, budget_epochs=1)
    assert table1.train_all(specs) == {s.name: "finished" for s in specs}
    assert os.path.getmtime(metrics_path) == stamp
    with open(os.path.join(out, "runs", "m2_seed0", "runner.json"), encoding="utf-8") as f:
        assert len(json.load(f)["sessions"]) == 1

    # a finished run of another experiment in the same --out is refused, not reused
    with pytest.raises(experiment.ConfigError, match="different experiment"):
        table1.run(out, models=["m2"], seeds=1, dataset="digits", smoke=False,
                   budget_epochs=1)


def test_commands_parse_as_the_train_entry_point_does(tmp_path, monkeypatch):
    from absl import flags  # pylint: disable=import-outside-toplevel
    from ml_collections import config_flags  # pylint: disable=import-outside-toplevel
    spec = table1.make_specs(str(tmp_path), models=["m2"], seeds=4, dataset="digits",
                             smoke=True, budget_epochs=2, budget_minutes=0.5)[3]
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True)
    flags.DEFINE_string("workdir", None, "", flag_values=fv)
    argv = ["train"] + spec.command()[3:]
    monkeypatch.setattr(sys, "argv", argv)   # config_flags reads its overrides there
    fv(argv)
    assert fv.workdir == spec.workdir
    assert fv.config.to_json() == spec.config().to_json()


class FakeSpec(table1.RunSpec):
    """A 'run' that is a tiny Python process: exercises the worker pool without TF."""

    def command(self):
        code = ("import sys, time; time.sleep(0.5); print('hello from', sys.argv[1]); "
                "sys.exit(3 if sys.argv[1].endswith('seed1') else 0)")
        return [sys.executable, "-c", code, self.name]


def test_subprocess_pool_runs_in_parallel_and_records_failures(tmp_path):
    specs = [FakeSpec("m2", seed, str(tmp_path / f"m2_seed{seed}"), "unused", None, {})
             for seed in range(4)]
    statuses = table1.run_subprocesses(specs, workers=4, poll_seconds=0.05)
    assert statuses["m2_seed0"] == "finished"
    assert statuses["m2_seed1"].startswith("failed: exit code 3")
    assert "hello from m2_seed1" in statuses["m2_seed1"]          # the log's tail is shown
    for spec in specs:
        with open(os.path.join(spec.workdir, "train.log"), encoding="utf-8") as f:
            assert f"hello from {spec.name}" in f.read()
        with open(os.path.join(spec.workdir, "runner.json"), encoding="utf-8") as f:
            session = json.load(f)["sessions"][0]
        assert session["mode"] == "subprocess"
        assert 0.4 < session["seconds"] < 60
        assert session["status"].startswith("failed" if spec.seed == 1 else "finished")


def test_cli_on_the_paper_mnist_split(tmp_path, mnist_dir):
    out = str(tmp_path / "t1")
    proc = subprocess.run(
        [sys.executable, "-m", "gmdgm_tf.experiments.table1", f"--out={out}", "--seeds=1",
         "--models=gmdgm", "--smoke", "--budget_epochs=1", f"--data_dir={mnist_dir}"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| GM-DGM | heldout | 1 |" in proc.stdout
    for name in EXPECTED_FILES:
        if "m2" not in name:
            assert os.path.getsize(os.path.join(out, name)) > 0, name
    with open(os.path.join(out, "runs", "gmdgm_seed0", "data_meta.json"), encoding="utf-8") as f:
        assert sum(json.load(f)["pixel_mask"]) == 444     # the paper's MNIST pixels
    check_png(os.path.join(out, "samples_gmdgm.png"), (760, 1034))
    check_png(os.path.join(out, "figure2.png"), (1250, 760))   # one model: one column
