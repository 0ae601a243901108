"""The three regimes from one code, at smoke size on MNIST: unsupervised, semi-supervised
(every class labelled) and the refusal of a regime no map can serve."""

import json
import os

import numpy as np
import pytest

from gmdgm_tf import data, evaluation, experiment, rundir
from gmdgm_tf.sources import DataError
from conftest import load_config


def regime(name, mnist_dir):
    config = load_config(f"mnist_{name}", "smoke")
    config.data.dir = mnist_dir
    return config


def test_unsupervised_mnist_has_no_labels_and_is_scored_by_cluster_and_label(
        mnist_dir, tmp_path):
    config = regime("gmdgm_unsup", mnist_dir)
    config.train.update(restarts=1, restart_epochs=0)  # restarts: tests/test_experiment.py
    split = data.load_split(config.data, config.seed)
    assert len(split.x_labelled) == 0 and len(split.x_unlabelled) == 50000
    assert split.num_slots == 30 and np.allclose(split.prior, 1 / 30)
    metrics = experiment.train_and_evaluate(config, str(tmp_path))
    heldout = metrics["heldout"]
    assert evaluation.ARGMAX_NOTE not in heldout["protocol"]
    assert heldout["accuracy_labelled_classes"] is None  # no class has labels
    assert 0 <= heldout["nmi"] <= 1 and "ari" in heldout
    # slots are named on validation, every one that validation points reach
    named = np.asarray(heldout["slot_map"]) != evaluation.UNMAPPED
    used = np.asarray(metrics["validation"]["assignment_matrix"]).sum(0) > 0
    np.testing.assert_array_equal(named, used)


@pytest.mark.parametrize("name", ["m2_semisup", "gmdgm_semisup"])
def test_semi_supervised_mnist_scores_the_plain_argmax(mnist_dir, tmp_path, name):
    config = regime(name, mnist_dir)
    metrics = experiment.train_and_evaluate(config, str(tmp_path))
    split = data.load_split(config.data, config.seed)
    assert np.all(np.bincount(split.y_labelled, minlength=10) == 10)
    assert split.num_slots == 10
    assert len(split.x_unlabelled) == 50000 - 100  # the labelled images left the pool
    for protocol in ("heldout", "paper"):
        assert metrics[protocol]["slot_map"] == list(range(10))
        assert evaluation.ARGMAX_NOTE in metrics[protocol]["protocol"]
    model_ = rundir.load_run(str(tmp_path)).model
    argmax = model_.predict_slots(split.x_test)
    assert metrics["heldout"]["accuracy"] == pytest.approx(np.mean(argmax == split.y_test))


def test_a_regime_no_prior_can_serve_is_refused_before_anything_is_written(mnist_dir,
                                                                           tmp_path):
    """Every class labelled and extra slots under the paper's prior rule: the rule leaves
    those slots no mass, so no map could ever name a point in them."""
    config = regime("gmdgm_semisup", mnist_dir)
    config.data.num_extra_slots = 5
    with pytest.raises(DataError, match="leaves no mass for the extra slots"):
        experiment.train_and_evaluate(config, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run")


def test_the_report_says_when_accuracy_is_the_plain_argmax():
    from gmdgm_tf.sweeps import report  # pylint: disable=import-outside-toplevel
    metrics = evaluation.evaluate_protocols(
        [0, 1, 1], [0, 1, 1], [0, 1], [1, 1], num_classes=2, num_slots=2,
        labelled_classes=(0, 1))
    run = {"recipe": "semisup", "seed": 0, "config": {"data": {"source": "mnist"}},
           "metrics": dict(metrics, training={}), "runner": {}, "data_meta": {},
           "history": [], "model": "m2", "folder": "x"}
    text = report.table_markdown(report.aggregate([run]), [run], "Machine: test")
    assert "both protocols are the plain argmax of q(y|x)" in text
    assert json.dumps(metrics["heldout"]["accuracy"]) == "0.5"
