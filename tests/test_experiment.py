"""End to end: training beats chance, resume after SIGKILL, determinism, bad input."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from gmdgm_tf import callbacks, checkpoints, data, experiment, rundir
from conftest import REPO, load_config, plain_digits, plain_flags


def tiny_digits(model="gmdgm", **train):
    config = plain_digits()
    config.model.name = model
    config.train.update(train)
    return config


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@pytest.mark.parametrize("model", ["gmdgm", "m2"])
def test_training_beats_chance_and_writes_run(tmp_path, model):
    config = plain_digits(arg=None)
    config.model.name = model
    config.model.hidden_sizes = (128, 128)
    config.model.z_dim = 16
    config.train.epochs = 15
    config.train.figures = model == "gmdgm"
    metrics = experiment.train_and_evaluate(config, str(tmp_path))
    if config.train.figures:
        for name in ("confusion.png", "assignment.png", "samples.png"):
            assert os.path.getsize(tmp_path / name) > 10000, name
    # 10 classes: chance is 0.1 overall; 5 labelled classes with 10 labels each
    assert metrics["heldout"]["accuracy_labelled_classes"] > 0.6, metrics["heldout"]
    assert metrics["heldout"]["accuracy"] > 0.35, metrics["heldout"]
    assert metrics["heldout"]["nmi"] > 0.3
    for name in ("config.json", "metrics.json", "history.jsonl", "model.weights.h5",
                 "data_meta.json", "best.weights.h5"):
        assert os.path.exists(tmp_path / name), name
    assert os.listdir(tmp_path / "tensorboard")
    history = [json.loads(l) for l in open(tmp_path / "history.jsonl", encoding="utf-8")]
    assert [r["epoch"] for r in history] == list(range(1, 16))
    # the optimistic paper_selection protocol: the epoch best on the first 1000 test images
    best = max(history, key=lambda r: (r["test_paper_accuracy_first1000"], -r["epoch"]))
    assert metrics["paper_selection"]["epoch"] == best["epoch"]
    assert metrics["paper_selection"]["accuracy"] == best["test_paper_accuracy"]
    assert np.array(metrics["heldout"]["assignment_matrix"]).shape == (10, 15)
    # the saved run restores to the same predictions
    finished = rundir.load_run(str(tmp_path))
    split = data.load_split(config.data, config.seed)
    assert finished.meta.dim == split.dim and finished.model.objective is None
    slots = finished.model.predict_slots(split.x_test)
    test_map = np.array(metrics["heldout"]["slot_map"])[slots]
    assert np.mean(test_map == split.y_test) == pytest.approx(metrics["heldout"]["accuracy"])


def test_same_seed_same_metrics_different_seed_differs(tmp_path):
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        config = tiny_digits(deterministic=True, epochs=2, steps_per_epoch=4)
        config.seed = seed
        experiment.train_and_evaluate(config, str(tmp_path / name))
        runs[name] = read_json(tmp_path / name / "metrics.json")
        runs[name].pop("training")
        runs[name]["history"] = [
            {k: v for k, v in json.loads(l).items() if k != "seconds"}
            for l in open(tmp_path / name / "history.jsonl", encoding="utf-8")]
    assert runs["a"] == runs["b"]
    assert runs["a"]["history"] != runs["c"]["history"]


def test_learning_rate_decay_changes_the_steps_after_decay_epoch_only(tmp_path):
    histories = {}
    for factor in (1.0, 0.5):
        config = tiny_digits(deterministic=True, epochs=3, steps_per_epoch=4)
        config.optimizer.update(decay_epoch=2, decay_factor=factor)
        experiment.train_and_evaluate(config, str(tmp_path / str(factor)))
        histories[factor] = _without_seconds(tmp_path / str(factor))
    rate = config.optimizer.learning_rate
    assert [r["learning_rate"] for r in histories[0.5]] == [rate, rate, rate * 0.5]
    assert [r["learning_rate"] for r in histories[1.0]] == [rate] * 3
    # epochs 1-2 trained alike; epoch 3 took smaller steps
    assert histories[0.5][:2] == histories[1.0][:2]
    assert histories[0.5][2]["loss"] != histories[1.0][2]["loss"]


def _without_seconds(workdir):
    history = rundir.RunDir(str(workdir)).history()
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def test_restarts_train_on_the_candidate_best_on_validation_as_if_it_ran_alone(tmp_path):
    settings = dict(deterministic=True, epochs=3, steps_per_epoch=4)
    workdir = tmp_path / "restarts"
    metrics = experiment.train_and_evaluate(
        tiny_digits(restarts=2, restart_epochs=1, **settings), str(workdir))
    record = read_json(workdir / "restarts.json")
    candidates = [_without_seconds(workdir / "restarts" / f"restart_{k}") for k in (0, 1)]
    assert record["candidates"] == [0, 1] and record["epochs"] == 1
    assert [len(h) for h in candidates] == [1, 1] and candidates[0] != candidates[1]
    assert record["validation"] == [h[-1]["val_accuracy"] for h in candidates]
    assert record["chosen"] == int(np.argmax(record["validation"]))
    assert metrics["training"]["restarts"] == record
    history = rundir.RunDir(str(workdir)).history()
    assert metrics["training"]["seconds"] == pytest.approx(
        sum(r["seconds"] for r in history) + record["seconds"][1 - record["chosen"]], abs=0.2)

    # The run is the chosen initialisation trained alone, step for step.
    alone = tmp_path / "alone"
    expected = experiment.train_and_evaluate(
        tiny_digits(restart_index=record["chosen"], **settings), str(alone))
    assert _without_seconds(workdir) == _without_seconds(alone)
    assert {k: v for k, v in metrics.items() if k != "training"} == \
        {k: v for k, v in expected.items() if k != "training"}

    # Resumed or extended, it neither retrains the candidates nor chooses again; a run
    # that lost its own checkpoints (a crash while copying the chosen one) starts again
    # from the chosen candidate.
    stamps = [os.path.getmtime(workdir / "restarts" / f"restart_{k}" / "history.jsonl")
              for k in (0, 1)]
    choice = os.path.getmtime(workdir / "restarts.json")
    shutil.rmtree(workdir / "checkpoints")
    os.remove(workdir / "history.jsonl")
    extended = dict(settings, epochs=4)
    experiment.train_and_evaluate(tiny_digits(restarts=2, restart_epochs=1, **extended),
                                  str(workdir))
    assert stamps == [os.path.getmtime(workdir / "restarts" / f"restart_{k}" / "history.jsonl")
                      for k in (0, 1)]
    assert choice == os.path.getmtime(workdir / "restarts.json")
    experiment.train_and_evaluate(tiny_digits(restart_index=record["chosen"], **extended),
                                  str(alone))
    assert _without_seconds(workdir) == _without_seconds(alone)
    # the copied checkpoint is rotated out like the run's own
    keep = tiny_digits().train.keep_checkpoints
    assert len(rundir.checkpoint_prefixes(str(workdir / "checkpoints"))) == keep

    # --fresh forgets the candidates and the choice.
    experiment.train_and_evaluate(tiny_digits(**settings), str(workdir), fresh=True)
    assert not (workdir / "restarts").exists() and not (workdir / "restarts.json").exists()


def _train_cmd(workdir, *overrides):
    return [sys.executable, "-m", "gmdgm_tf.train", "--config=configs/digits_gmdgm.py:smoke",
            *plain_flags(), f"--workdir={workdir}", *overrides]


RESUME_OVERRIDES = ("--config.train.deterministic=True", "--config.train.epochs=5",
                    "--config.train.steps_per_epoch=30", "--config.train.checkpoint_every_steps=7",
                    "--config.model.hidden_sizes=(384,384)",
                    "--config.optimizer.decay_epoch=2")  # the kill lands in a decayed epoch


def _resume_overrides(model):
    return (*RESUME_OVERRIDES, f"--config.model.name={model}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """model name -> an uninterrupted run of RESUME_OVERRIDES with that model: what every
    interrupted run must end as (each trained once)."""
    runs = {}

    def get(model):
        if model not in runs:
            runs[model] = tmp_path_factory.mktemp("reference") / model
            subprocess.run(_train_cmd(runs[model], *_resume_overrides(model)), cwd=REPO,
                           check=True, capture_output=True)
        return runs[model]
    return get


@pytest.mark.parametrize("model", ["gmdgm", "am2"])  # am2: the auxiliary a's draws too
def test_sigkill_mid_epoch_then_rerun_resumes_and_matches(tmp_path, reference, model):
    workdir = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(workdir, *_resume_overrides(model)), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history, saved = workdir / "history.jsonl", workdir / "checkpoints"

    def position(prefix):
        """A checkpoint's [epoch, step]: [2, 0] is epoch 2's end, [2, k] epoch 3 at step k."""
        reader = tf.train.load_checkpoint(prefix)
        return [int(reader.get_tensor(f"{name}/.ATTRIBUTES/VARIABLE_VALUE"))
                for name in ("epoch", "step")]
    deadline, seen = time.time() + 120, None
    while time.time() < deadline and proc.poll() is None:
        if history.exists() and history.read_text().count("\n") >= 2:   # epoch 2 has ended
            newest = rundir.checkpoint_prefixes(str(saved))[0]
            if newest != seen:
                seen = newest
                epoch, step = position(newest)
                if epoch == 2 and step > 0:   # epoch 3's first mid-epoch checkpoint
                    proc.send_signal(signal.SIGKILL)
                    break
        time.sleep(0.01)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (workdir / "metrics.json").exists()
    newest = position(rundir.checkpoint_prefixes(str(saved))[0])
    assert newest[0] == 2 and newest[1] > 0, f"not a mid-epoch checkpoint: {newest}"

    rerun = subprocess.run(_train_cmd(workdir, *_resume_overrides(model)), cwd=REPO,
                           capture_output=True, text=True, check=True)
    assert "resuming from" in rerun.stderr
    final = read_json(workdir / "metrics.json")
    expected = read_json(reference(model) / "metrics.json")
    final.pop("training"), expected.pop("training")
    assert final == expected
    # the resumed epoch's history averages all of its steps, as the uninterrupted run's
    def history_of(run):
        return [{k: v for k, v in json.loads(l).items() if k != "seconds"}
                for l in open(run / "history.jsonl", encoding="utf-8")]
    assert [r["epoch"] for r in history_of(workdir)] == [1, 2, 3, 4, 5]
    rate = history_of(workdir)[0]["learning_rate"]
    assert [r["learning_rate"] for r in history_of(workdir)] == [rate] * 2 + [rate * 0.1] * 3
    assert history_of(workdir) == history_of(reference(model))


# --------------------------------------------------------------------- bad input


@pytest.mark.parametrize("field, value, message", [
    ("model.name", "vae", "unknown model 'vae'"),
    ("model.likelihood", "poisson", "unknown likelihood 'poisson'"),
    ("data.source", "cifar", "unknown dataset 'cifar'"),
    ("data.labelled_classes", (3, 11), r"\[11\] are not classes"),
    ("data.labels_per_class", 500, "class 0 has only"),
    ("data.num_extra_slots", -1, "num_extra_slots must be >= 0"),
    ("data.prior", (0.5,) * 15, "must sum to 1"),
    ("train.precision", "float16", "unknown precision"),
    ("data.unlabelled_batch_size", 100_000, "fewer than one batch"),
    ("data.pixel_std_threshold", 0.6, "keeps no pixel: the largest pixel std is"),
])
def test_bad_config_fails_before_writing(tmp_path, field, value, message):
    config = tiny_digits()
    section, key = field.split(".")
    with config.unlocked():
        config[section][key] = value
    workdir = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        experiment.train_and_evaluate(config, str(workdir))
    assert not workdir.exists()


def test_missing_data_dir_fails_before_writing(tmp_path):
    config = load_config("mnist_gmdgm", "smoke")
    config.data.dir = str(tmp_path / "no_such_dir")
    with pytest.raises(data.DataError, match="data directory does not exist"):
        experiment.train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_workdir_of_another_experiment_is_refused(tmp_path):
    experiment.train_and_evaluate(tiny_digits(epochs=1, steps_per_epoch=2), str(tmp_path))
    before = read_json(tmp_path / "metrics.json")
    other = tiny_digits(epochs=1, steps_per_epoch=2)
    other.model.name = "m2"
    with pytest.raises(rundir.RunDirError, match="model.name: 'gmdgm' -> 'm2'"):
        experiment.train_and_evaluate(other, str(tmp_path))
    assert read_json(tmp_path / "metrics.json") == before
    experiment.train_and_evaluate(other, str(tmp_path), fresh=True)
    assert read_json(tmp_path / "config.json")["model"]["name"] == "m2"


def test_a_stop_between_the_checkpoint_and_the_best_weights_loses_nothing(tmp_path):
    """The epoch's checkpoint is written first; a resume from it writes the best weights
    again, so the run ends as one that was never stopped."""
    config = tiny_digits(deterministic=True, epochs=1, steps_per_epoch=2)
    experiment.train_and_evaluate(config, str(tmp_path))
    before = read_json(tmp_path / "metrics.json")
    for name in ("best.weights.h5", "metrics.json", "model.weights.h5"):
        os.remove(tmp_path / name)                  # as if stopped right after the checkpoint
    experiment.train_and_evaluate(config, str(tmp_path))
    assert (tmp_path / "best.weights.h5").exists()
    after = read_json(tmp_path / "metrics.json")
    before.pop("training"), after.pop("training")
    assert after == before


def test_a_stop_just_after_the_epochs_checkpoint_keeps_its_history_line(tmp_path, monkeypatch):
    """The history line is written before the checkpoint: a stop after the checkpoint (here
    in the best-weights write that follows it) must not lose the line, which no resume
    would write again."""
    config = tiny_digits(deterministic=True, epochs=2, steps_per_epoch=2)
    experiment.train_and_evaluate(config, str(tmp_path / "whole"))
    save = rundir.RunDir.save_weights

    def stopped(self, model, name):
        if name == rundir.BEST_WEIGHTS:
            raise RuntimeError("stopped")
        save(self, model, name)
    monkeypatch.setattr(rundir.RunDir, "save_weights", stopped)
    with pytest.raises(RuntimeError, match="stopped"):       # at epoch 1 (always the best)
        experiment.train_and_evaluate(config, str(tmp_path / "run"))
    monkeypatch.setattr(rundir.RunDir, "save_weights", save)
    metrics = experiment.train_and_evaluate(config, str(tmp_path / "run"))

    def rows(workdir):
        with open(workdir / "history.jsonl", encoding="utf-8") as f:
            return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in f]
    assert [r["epoch"] for r in rows(tmp_path / "run")] == [1, 2]
    assert rows(tmp_path / "run") == rows(tmp_path / "whole")
    assert metrics["training"]["epochs_run"] == 2


def test_a_resume_behind_a_lost_best_epoch_drops_its_best_weights(tmp_path, monkeypatch):
    """Epoch 3 was the best and wrote best.weights.h5, then its checkpoint was damaged: the
    resume from epoch 2's checkpoint (best: epoch 1) must not claim epoch 1 while loading
    epoch 3's file. The file is dropped and the retrained epochs choose again."""
    scripted = iter([0.5, 0.4, 0.9, 0.45])          # validation accuracy of each epoch's end
    real = callbacks.validation_report
    monkeypatch.setattr(callbacks, "validation_report",
                        lambda model, split: dict(real(model, split), accuracy=next(scripted)))
    config = tiny_digits(epochs=3, steps_per_epoch=2, checkpoint_every_steps=0)
    workdir = tmp_path / "run"
    experiment.train_and_evaluate(config, str(workdir))
    assert read_json(workdir / "metrics.json")["training"]["selected_epoch"] == 3
    (workdir / "metrics.json").unlink()
    _corrupt_newest(workdir / "checkpoints", "truncated data")
    metrics = experiment.train_and_evaluate(config, str(workdir))   # epoch 3 again: 0.45
    history = [json.loads(line) for line in
               (workdir / "history.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["epoch"], r["val_accuracy"]) for r in history] == [(1, 0.5), (2, 0.4), (3, 0.45)]
    assert metrics["training"]["selected_epoch"] == 3             # the only one with weights


def test_metrics_say_how_the_evaluated_epoch_was_selected(tmp_path):
    metrics = experiment.train_and_evaluate(
        tiny_digits(epochs=2, steps_per_epoch=2, select="last"), str(tmp_path))
    assert (metrics["training"]["selection"], metrics["training"]["selected_epoch"]) == (
        "last", 2)


def test_a_checkpoint_at_an_epochs_last_step_is_refused_in_one_line(tmp_path):
    """This gmdgm_tf never saves one (the epoch's own checkpoint follows that step); an
    older one did, and resuming it would run an epoch with no steps."""
    config = tiny_digits(epochs=1, steps_per_epoch=4)
    experiment.train_and_evaluate(config, str(tmp_path))
    model = experiment.build(config, data.load_split(config.data, config.seed))
    checkpoints.TrainState(model, str(tmp_path / "checkpoints"), keep=5).save(0, 4)
    with pytest.raises(checkpoints.CheckpointError, match="step 4 of epoch 1, which has 4 st"):
        experiment.train_and_evaluate(config, str(tmp_path))


def test_a_workdir_trained_past_the_asked_epochs_is_refused(tmp_path):
    """Its best epoch may lie beyond the budget: metrics would claim a shorter run."""
    experiment.train_and_evaluate(tiny_digits(epochs=2, steps_per_epoch=2), str(tmp_path))
    before = read_json(tmp_path / "metrics.json")
    with pytest.raises(rundir.RunDirError, match="has trained 2 epochs, more than train.epochs=1"):
        experiment.train_and_evaluate(tiny_digits(epochs=1, steps_per_epoch=2), str(tmp_path))
    assert read_json(tmp_path / "metrics.json") == before
    assert read_json(tmp_path / "config.json")["train"]["epochs"] == 2


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    config = tiny_digits(epochs=3, steps_per_epoch=5, checkpoint_every_steps=0)
    experiment.train_and_evaluate(config, str(tmp_path))
    good = sorted(os.listdir(tmp_path / "checkpoints"))
    config.train.epochs = 6  # resume the same experiment with a poisoned optimizer
    with config.unlocked():
        config.optimizer.learning_rate = 1e30
    # learning rate is part of the experiment: start a fresh run and let it blow up
    with pytest.raises(callbacks.NonFiniteLossError, match=r"non-finite loss at epoch 1 step \d+: .*loss=nan"):
        experiment.train_and_evaluate(config, str(tmp_path / "blown"))
    assert sorted(os.listdir(tmp_path / "checkpoints")) == good
    assert not (tmp_path / "blown" / "metrics.json").exists()


def test_cli_prints_one_line_error_and_writes_nothing(tmp_path):
    workdir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(_train_cmd(workdir, "--config.model.name=vae"), cwd=REPO,
                            capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: unknown model 'vae'; choose one of ['gmdgm', 'm2', 'agmdgm', 'am2']")
    assert not workdir.exists()
    # the resolved config is logged first; TensorFlow's C++ INFO lines are off by default
    assert "config:\n" in result.stderr and "  name: vae" in result.stderr
    assert "cpu_feature_guard" not in result.stderr
    # ... and a user's own TF_CPP_MIN_LOG_LEVEL wins
    verbose = subprocess.run(_train_cmd(workdir, "--config.model.name=vae"), cwd=REPO,
                             capture_output=True, text=True,
                             env=dict(env, TF_CPP_MIN_LOG_LEVEL="0"))
    assert verbose.returncode == 2 and "cpu_feature_guard" in verbose.stderr


def test_cli_refuses_non_empty_export_dir_before_training(tmp_path):
    export_dir = tmp_path / "export"
    export_dir.mkdir()
    (export_dir / "keep.txt").write_text("mine")
    result = subprocess.run(_train_cmd(tmp_path / "run", f"--export_dir={export_dir}"),
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2 and "exists and is not empty" in result.stderr
    assert not (tmp_path / "run").exists() and (export_dir / "keep.txt").exists()


def test_cli_refuses_an_empty_workdir_before_writing(tmp_path):
    """--workdir=$UNSET (even with --fresh) is one line, and the run files in the current
    directory are left alone."""
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "history.jsonl").write_text("")
    result = subprocess.run([sys.executable, "-m", "gmdgm_tf.train",
                             f"--config={REPO}/configs/digits_gmdgm.py:smoke", "--workdir=",
                             "--fresh"], cwd=tmp_path, capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=REPO))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        "error: workdir is empty (an unset shell variable?); give a directory"]
    assert sorted(os.listdir(tmp_path)) == ["config.json", "history.jsonl"]
    assert (tmp_path / "config.json").read_text() == "{}"


INTERNAL_ERRORS = r"""
import sys
from gmdgm_tf import config, experiment, train

def raising(error):
    def train_and_evaluate(*args, **kwargs):
        raise error
    return train_and_evaluate

rest = train.parse_flags(sys.argv)
for error in (ValueError("a shape bug"), FileNotFoundError("a lost file"),
              config.ConfigError("a bad value")):
    experiment.train_and_evaluate = raising(error)
    try:
        train.main(rest)
    except SystemExit as e:
        print(type(error).__name__, "exit", e.code)
    except Exception as e:
        print(type(error).__name__, "raised", type(e).__name__)
"""


def test_cli_keeps_the_traceback_of_an_error_that_is_not_the_users(tmp_path):
    """Only the package's own error classes become one line and exit 2: a ValueError or
    FileNotFoundError from inside (Keras, TensorFlow, a bug) propagates."""
    result = subprocess.run([sys.executable, "-c", INTERNAL_ERRORS,
                             "--config=configs/digits_gmdgm.py:smoke",
                             f"--workdir={tmp_path / 'run'}"], cwd=REPO, capture_output=True,
                            text=True)
    assert result.stdout.splitlines() == ["ValueError raised ValueError",
                                          "FileNotFoundError raised FileNotFoundError",
                                          "ConfigError exit 2"], result.stderr[-2000:]
    assert result.stderr.count("error: a bad value") == 1


# ------------------------------------------------------------------- reliability


def _start(workdir, *overrides, model="gmdgm"):
    return subprocess.Popen(_train_cmd(workdir, *_resume_overrides(model), *overrides), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for_epochs(proc, workdir, epochs, timeout=180):
    history = workdir / "history.jsonl"
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if history.exists() and history.read_text().count("\n") >= epochs:
            return
        time.sleep(0.02)
    raise AssertionError(f"{workdir}: {epochs} epochs not reached")


@pytest.mark.parametrize("signum, model", [(signal.SIGTERM, "gmdgm"), (signal.SIGINT, "am2")])
def test_sigterm_and_sigint_checkpoint_exit_and_resume_exactly(tmp_path, reference, signum,
                                                               model):
    workdir = tmp_path / "stopped"
    proc = _start(workdir, model=model)
    _wait_for_epochs(proc, workdir, 2)
    time.sleep(0.3)  # into epoch 3
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"stopped: interrupted by {signal.Signals(signum).name} at epoch")
    assert "rerun the same command to resume" in last and "Traceback" not in stderr
    assert not (workdir / "metrics.json").exists()
    assert not list(workdir.glob("*.tmp*")), "no half-written file is left"

    rerun = subprocess.run(_train_cmd(workdir, *_resume_overrides(model)), cwd=REPO,
                           capture_output=True, text=True, check=True)
    assert "resuming from" in rerun.stderr
    final = read_json(workdir / "metrics.json")
    expected = read_json(reference(model) / "metrics.json")
    final.pop("training"), expected.pop("training")
    assert final == expected


def test_one_training_per_workdir_and_a_dead_holder_does_not_block(tmp_path):
    workdir = tmp_path / "run"
    first = _start(workdir, "--config.train.epochs=500")  # still running when checked
    _wait_for_epochs(first, workdir, 1)
    second = subprocess.run(_train_cmd(workdir, *RESUME_OVERRIDES), cwd=REPO,
                            capture_output=True, text=True)
    assert first.poll() is None, "the first training ended before the check"
    assert second.returncode == 2
    line = second.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: workdir {workdir} is in use by another training (pid "
                           f"{first.pid} on ")
    first.send_signal(signal.SIGKILL)
    first.wait()
    third = subprocess.run(_train_cmd(workdir, *RESUME_OVERRIDES, "--config.train.epochs=500",
                                      "--config.train.max_minutes=0.01"), cwd=REPO,
                           capture_output=True, text=True)
    assert third.returncode == 0, third.stderr[-2000:]
    assert "resuming from" in third.stderr and (workdir / "metrics.json").exists()


def _corrupt_newest(checkpoints, how):
    newest = max(checkpoints.glob("ckpt-*.index"), key=lambda p: int(p.stem.split("-")[1]))
    data = next(checkpoints.glob(newest.stem + ".data-*"))
    if how == "truncated data":
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    elif how == "overwritten bytes":
        raw = bytearray(data.read_bytes())
        raw[100:400] = b"\x07" * 300
        data.write_bytes(bytes(raw))
    elif how == "truncated index":
        newest.write_bytes(newest.read_bytes()[:20])
    elif how == "garbage state file":
        (checkpoints / "checkpoint").write_text("garbage ###")
    return newest.stem


@pytest.fixture(scope="module")
def three_epochs(tmp_path_factory):
    """A tiny run stopped after 3 epochs (metrics.json removed, so it is unfinished)."""
    workdir = tmp_path_factory.mktemp("three") / "run"
    config = tiny_digits(epochs=3, steps_per_epoch=4, checkpoint_every_steps=0)
    experiment.train_and_evaluate(config, str(workdir))
    (workdir / "metrics.json").unlink()
    return workdir


@pytest.mark.parametrize("how", ["truncated data", "overwritten bytes", "truncated index",
                                 "garbage state file"])
def test_damaged_checkpoints_fall_back_to_the_last_good_one(tmp_path, three_epochs, how):
    workdir = tmp_path / "run"
    shutil.copytree(three_epochs, workdir)
    config = tiny_digits(epochs=3, steps_per_epoch=4, checkpoint_every_steps=0)
    _corrupt_newest(workdir / "checkpoints", how)
    config.train.epochs = 4
    before = (workdir / "history.jsonl").read_text(encoding="utf-8").splitlines()
    metrics = experiment.train_and_evaluate(config, str(workdir))
    after = (workdir / "history.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(l)["epoch"] for l in after] == [1, 2, 3, 4]
    assert metrics["training"]["epochs_run"] == 4
    # a damaged state file still finds the newest checkpoint (epoch 3); a damaged newest
    # one falls back to epoch 2's and retrains epoch 3. The rows of the epochs kept are
    # the very lines written before, their seconds too (a run that restarted from
    # scratch would have rewritten them).
    kept = 3 if how == "garbage state file" else 2
    assert len(before) == 3 and after[:kept] == before[:kept]
    assert metrics["training"]["epochs_asked"] == 4   # what sweeps.run takes for "finished"


class _KilledAfter(keras.callbacks.Callback):
    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise RuntimeError("killed")


def test_a_run_killed_while_being_extended_loads_as_the_run_that_finished(tmp_path):
    workdir = str(tmp_path / "run")
    config = tiny_digits(epochs=2, steps_per_epoch=4, figures=False)
    metrics = experiment.train_and_evaluate(config, workdir)
    before = rundir.load_run(workdir)
    config.train.epochs = 4   # extended, and killed in its third epoch
    with pytest.raises(RuntimeError, match="killed"):
        experiment.train_and_evaluate(config, workdir, callbacks=[_KilledAfter(3)])
    assert read_json(os.path.join(workdir, "config.json"))["train"]["epochs"] == 4
    finished = rundir.load_run(workdir)
    assert finished.config.to_dict() == before.config.to_dict()   # train.epochs 2, not 4
    assert finished.metrics == metrics
    x = np.random.default_rng(0).random((8, finished.meta.dim), dtype=np.float32)
    np.testing.assert_array_equal(finished.model.predict_slots(x), before.model.predict_slots(x))


def test_no_readable_checkpoint_is_refused_in_one_line(tmp_path):
    workdir = tmp_path / "run"
    config = tiny_digits(epochs=1, steps_per_epoch=2, checkpoint_every_steps=0)
    experiment.train_and_evaluate(config, str(workdir))
    for data_file in (workdir / "checkpoints").glob("*.data-*"):
        data_file.write_bytes(b"")
    config.train.epochs = 2
    with pytest.raises(checkpoints.CheckpointError, match="no readable checkpoint .*--fresh"):
        experiment.train_and_evaluate(config, str(workdir))


@pytest.mark.parametrize("layout", ["file", "under a file"])
def test_unwritable_workdir_is_refused_before_loading_data(tmp_path, layout):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    workdir = blocker if layout == "file" else blocker / "run"
    with pytest.raises(rundir.RunDirError, match="a file, not a directory"):
        experiment.train_and_evaluate(tiny_digits(), str(workdir))


def _file_size_limit(limit_bytes):
    """preexec_fn: writes past limit_bytes fail (EFBIG) instead of killing the process:
    a full disk as a test can make it, without mounting a small filesystem."""
    import resource  # pylint: disable=import-outside-toplevel

    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return apply


def test_a_failed_write_ends_the_run_in_one_line_and_keeps_the_last_checkpoint(tmp_path):
    workdir = tmp_path / "run"
    overrides = ("--config.train.epochs=1", "--config.train.steps_per_epoch=4",
                 "--config.train.checkpoint_every_steps=0",
                 "--config.model.hidden_sizes=(384,384)")
    subprocess.run(_train_cmd(workdir, *overrides), cwd=REPO, check=True, capture_output=True)
    good = sorted(p.name for p in (workdir / "checkpoints").iterdir())
    metrics = (workdir / "metrics.json").read_bytes()
    # one more epoch, with files limited to 64 KiB: the weights and checkpoints cannot be
    # written (JSON can)
    longer = overrides[:1] + ("--config.train.epochs=2",) + overrides[1:]
    full = subprocess.run(_train_cmd(workdir, *longer), cwd=REPO, capture_output=True,
                          text=True, preexec_fn=_file_size_limit(64 * 1024))
    assert full.returncode == 2, full.stderr[-2000:]
    last = full.stderr.strip().splitlines()[-1]
    assert last.startswith("error: could not write ") and "rerun the same command" in last
    assert "Traceback" not in full.stderr
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == good
    assert (workdir / "metrics.json").read_bytes() == metrics
    assert not list(workdir.rglob("*tmp*")) and not list(workdir.rglob("*_temp*"))
    again = subprocess.run(_train_cmd(workdir, *longer), cwd=REPO, capture_output=True,
                           text=True)
    assert again.returncode == 0 and "resuming from" in again.stderr
    assert [json.loads(l)["epoch"] for l in open(workdir / "history.jsonl")] == [1, 2]


@contextlib.contextmanager
def tmpfs(mount, options):
    """A tmpfs mounted at `mount` with `options` (root only; the test is skipped where
    mounting is not allowed), unmounted afterwards."""
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs."""
    with tmpfs(tmp_path / "small", "size=3m") as mount:
        yield mount


def test_read_only_workdir_is_refused_in_one_line(tmp_path):
    """A read-only filesystem (a ro tmpfs: chmod does not stop root, EROFS does)."""
    with tmpfs(tmp_path / "ro", "ro,size=1m") as mount:
        with pytest.raises(rundir.RunDirError, match=r"cannot be written \(.* is read-only\)"):
            experiment.train_and_evaluate(tiny_digits(), str(mount / "run"))


def test_a_really_full_disk_ends_the_run_in_one_line_not_a_crash(small_disk):
    workdir = small_disk / "run"
    result = subprocess.run(_train_cmd(workdir, "--config.train.epochs=2",
                                       "--config.train.steps_per_epoch=4",
                                       "--config.model.hidden_sizes=(384,384)"),
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2, result.stderr[-2000:]  # h5py segfaulted here before
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(("error: not enough free space in ", "error: could not write "))
    assert "Traceback" not in result.stderr and not list(workdir.rglob("*tmp*"))


def test_cli_config_mistakes_are_one_line_with_the_closest_field(tmp_path):
    cases = {
        ("--config=configs/no_such.py",): "error: config file not found: configs/no_such.py",
        ("--config=configs/digits_gmdgm.py", "--config.train.epoch=3"):
            "error: unknown config field --config.train.epoch (did you mean "
            "--config.train.epochs?)",
        ("--config=configs/digits_gmdgm.py:smok",):
            "error: unknown config argument 'smok'; choose one of ['smoke'] or none",
        ("--config=configs/digits_gmdgm.py", "--config.train.epochs=abc"):
            "error: flag --config.train.epochs=abc: invalid literal for int() with base 10: 'abc'",
    }
    procs = {args: subprocess.Popen([sys.executable, "-m", "gmdgm_tf.train", *args,
                                     f"--workdir={tmp_path / 'run'}"], cwd=REPO, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for args in cases}
    for args, expected in cases.items():
        _, stderr = procs[args].communicate(timeout=120)
        assert procs[args].returncode == 2, stderr[-1500:]
        assert stderr.strip().splitlines()[-1] == expected
        assert "Traceback" not in stderr
    assert not (tmp_path / "run").exists()


def tensorboard_events(logdir):
    """{tag: {step: value proto}} of every event file under logdir (any TF filesystem)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    tags = {}
    for path in tf.io.gfile.glob(os.path.join(logdir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags.setdefault(value.tag, {})[event.step] = value
    return tags


def test_tensorboard_groups_scalars_and_draws_sample_grids(tmp_path):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    config = tiny_digits(epochs=3, steps_per_epoch=2, sample_grid_every=2)
    experiment.train_and_evaluate(config, str(tmp_path))
    tags = tensorboard_events(str(tmp_path / "tensorboard"))
    assert {"train/loss", "train/elbo_unlabelled", "val/accuracy",
            "test/paper_accuracy_first1000"} <= set(tags)
    assert sorted(tags["train/loss"]) == [1, 2, 3]
    grids = tags["samples/decoded_by_slot"]
    assert sorted(grids) == [2]  # every 2 epochs
    width, height, png = grids[2].tensor.string_val
    image = tf.io.decode_png(png).numpy()
    # one row of 8 tiles (8x8 digits, 1-pixel borders) per slot: 15 slots
    assert image.shape == (15 * 9 + 1, 8 * 9 + 1, 3) == (int(height), int(width), 3)


def test_run_and_export_on_a_tf_filesystem(tmp_path):
    """gs:// and every TF filesystem: data, workdir and export through tf.io.gfile, here on
    TF's in-memory ram:// filesystem (nothing lands on the local disk)."""
    import io  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from gmdgm_tf import export  # pylint: disable=import-outside-toplevel
    rng = np.random.RandomState(0)
    buffer = io.BytesIO()
    centres = rng.rand(4, 6, 6)
    labels = np.arange(300) % 4
    images = (np.clip(centres[labels] + 0.1 * rng.randn(300, 6, 6), 0, 1) * 255).astype(np.uint8)
    np.savez(buffer, x_train=images[:200], y_train=labels[:200], x_test=images[200:],
             y_test=labels[200:], class_names=np.array(["a", "b", "c", "d"]))
    root = f"ram://fs_test_{os.getpid()}"
    with tf.io.gfile.GFile(f"{root}/data/blobs.npz", "wb") as f:
        f.write(buffer.getvalue())
    config = tiny_digits(epochs=2, steps_per_epoch=3, figures=True)
    config.data.update(dict(source=f"npz:{root}/data/blobs.npz", validation_size=40,
                            labelled_classes=(0, 1), labels_per_class=5, num_extra_slots=1,
                            labelled_batch_size=8, unlabelled_batch_size=16))
    cwd_before = set(os.listdir("."))
    metrics = experiment.train_and_evaluate(config, f"{root}/run", export_dir=f"{root}/export")
    assert set(os.listdir(".")) == cwd_before  # no local folder named "ram:"
    assert np.array(metrics["heldout"]["assignment_matrix"]).shape == (4, 5)  # 4 classes, 5 slots
    files = set(tf.io.gfile.listdir(f"{root}/run"))
    assert {"config.json", "metrics.json", "history.jsonl", "model.weights.h5", "confusion.png",
            "samples.png", "data_meta.json", "checkpoints/", "tensorboard/"} <= files | {
                f + "/" for f in files}, files
    assert tensorboard_events(f"{root}/run/tensorboard")["val/accuracy"]
    finished = rundir.load_run(f"{root}/run")
    assert finished.meta.class_names == ["a", "b", "c", "d"]
    meta = json.loads(tf.io.gfile.GFile(f"{root}/export/{export.METADATA_FILE}").read())
    assert meta["class_names"] == ["a", "b", "c", "d"] and meta["run"] == "run"
    loaded = tf.saved_model.load(f"{root}/export")  # kept: its functions need its variables
    served = loaded.classify(images[200:210])
    assert served["label"].shape == (10,) and set(served["label"].numpy()) <= {-1, 0, 1, 2, 3}
    assert not [p for p in tf.io.gfile.listdir(root) if p.startswith(".")]  # no temporaries
    from gmdgm_tf import predict  # pylint: disable=import-outside-toplevel
    buffer = io.BytesIO()
    np.save(buffer, images[200:203])
    with tf.io.gfile.GFile(f"{root}/data/three.npy", "wb") as f:
        f.write(buffer.getvalue())
    result = predict.predict(f"{root}/export", f"{root}/data/three.npy")
    assert [p["label"] for p in result["predictions"]] == list(served["label"].numpy()[:3])
