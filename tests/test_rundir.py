"""rundir.py: the run directory's files, their damage and the config diff."""

import json

import numpy as np
import pytest

from gmdgm_tf import config as config_lib
from gmdgm_tf import rundir


def test_history_append_read_and_lost_epochs(tmp_path):
    run = rundir.RunDir(str(tmp_path))
    for epoch in (1, 2, 3):
        run.append_history({"epoch": epoch, "loss": 1.0 / epoch})
    assert [r["epoch"] for r in run.history()] == [1, 2, 3]
    assert [r["epoch"] for r in run.history(upto_epoch=2)] == [1, 2]


def test_cut_short_last_history_line_is_dropped_damage_elsewhere_is_named(tmp_path):
    run = rundir.RunDir(str(tmp_path))
    path = tmp_path / rundir.HISTORY
    path.write_text('{"epoch": 1}\n{"epoch": 2}\n{"epoch": 3, "lo')  # crash mid-append
    assert [r["epoch"] for r in run.history()] == [1, 2]
    path.write_text('{"epoch": 1}\ngarbage\n{"epoch": 3}\n')
    with pytest.raises(rundir.RunDirError, match=r"history.jsonl line 2 is damaged .*--fresh"):
        run.history()


def test_damaged_config_json_is_one_line_error(tmp_path):
    (tmp_path / rundir.CONFIG).write_text('{"seed": 0, "data": {')
    with pytest.raises(rundir.RunDirError, match=r"config.json is damaged"):
        rundir.RunDir(str(tmp_path)).prepare(config_lib.base_config())


def test_prepare_refuses_another_experiment_but_not_another_budget(tmp_path):
    run = rundir.RunDir(str(tmp_path / "w"))
    config = config_lib.base_config()
    run.prepare(config)
    run.append_history({"epoch": 1})      # some training happened
    config.train.epochs = 7               # a budget field: the same experiment
    config.data.dir = "/elsewhere"
    run.prepare(config)
    config.optimizer.learning_rate = 1e-3
    with pytest.raises(rundir.RunDirError, match=r"optimizer.learning_rate: 0.0003 -> 0.001"):
        run.prepare(config)
    run.prepare(config, fresh=True)
    assert json.loads((tmp_path / "w" / rundir.CONFIG).read_text())["optimizer"][
        "learning_rate"] == 1e-3


def test_a_config_filed_before_a_field_existed_ran_with_that_field_s_added_value():
    """config.ADDED_FIELDS: config.json files written before a field was added (data.prior_rule
    in the digits tuning runs, ...) compare as the value those runs used."""
    new = json.loads(config_lib.base_config().to_json())
    old = json.loads(config_lib.base_config().to_json())
    for field in config_lib.ADDED_FIELDS:
        section, key = field.split(".")
        del old[section][key]
    assert config_lib.config_differences(old, new) == []
    new["data"]["prior_rule"] = "uniform"
    assert config_lib.config_differences(old, new) == ["data.prior_rule: 'paper' -> 'uniform'"]


def test_data_meta_round_trip(tmp_path):
    meta = rundir.DataMeta("mnist", ["0", "1"], (2, 2), np.array([True, False, True, True]),
                           (0,), np.array([0.5, 0.25, 0.25]), 7.0)
    run = rundir.RunDir(str(tmp_path))
    run.write_data_meta(meta)
    back = run.read_data_meta()
    assert back.dim == 3 and back.image_shape == (2, 2) and back.labelled_classes == (0,)
    np.testing.assert_array_equal(back.pixel_mask, meta.pixel_mask)
    np.testing.assert_allclose(back.prior, meta.prior)
    assert back.uint8_divisor == 7.0  # the run's record, whatever the source


@pytest.mark.parametrize("source, divisor", [("digits", 16.0), ("mnist", 255.0),
                                             ("npz:my.npz", 255.0)])
def test_data_meta_filed_before_the_pixel_scale_reads_the_scale_its_run_used(source, divisor):
    meta = rundir.DataMeta(source, ["0", "1"], (1, 2), np.ones(2, bool), (0,),
                           np.array([0.5, 0.5]), divisor).to_json()
    assert meta.pop("uint8_divisor") == divisor
    assert rundir.DataMeta.from_json(meta).uint8_divisor == divisor


@pytest.mark.parametrize("path, remote", [
    ("gs://bucket/runs/a", True), ("ram://run", True), ("s3://b/k", True),
    ("runs/a", False), ("/abs/run", False), ("./gs:/not_a_url", False), ("", False),
])
def test_is_remote_and_the_standalone_predict_s_copy_agree(path, remote):
    from gmdgm_tf import predict  # pylint: disable=import-outside-toplevel
    assert rundir.is_remote(path) is remote and predict.is_remote(path) is remote


def test_json_and_history_work_on_another_tf_filesystem():
    """Every run file goes through tf.io.gfile: TF's in-memory ram:// stands in for gs://."""
    run = rundir.RunDir("ram://gmdgm_test_run")
    run.prepare(config_lib.base_config())
    run.append_history({"epoch": 1})
    run.write_metrics({"heldout": {"accuracy": 0.5}})
    assert run.read_config().seed == 0 and run.history() == [{"epoch": 1}]
    assert run.read_metrics()["heldout"]["accuracy"] == 0.5


def test_a_workdir_with_nothing_trained_takes_a_corrected_config(tmp_path):
    """A run that failed before any training (e.g. a non-finite loss at step 1) must not
    block the corrected rerun as "a different experiment"."""
    run = rundir.RunDir(str(tmp_path))
    config = config_lib.base_config()
    config.optimizer.learning_rate = 1e9
    run.prepare(config)
    config.optimizer.learning_rate = 1e-3
    run.prepare(config)
    assert run.read_config().optimizer.learning_rate == 1e-3


def test_run_state_without_config_json_is_refused(tmp_path):
    """Checkpoints or history without config.json cannot be checked: never resumed blind."""
    run = rundir.RunDir(str(tmp_path))
    run.append_history({"epoch": 1})
    with pytest.raises(rundir.RunDirError, match="no config.json, so it cannot be checked"):
        run.prepare(config_lib.base_config())
