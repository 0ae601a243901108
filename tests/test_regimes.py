"""The three regimes from one code, at smoke size on MNIST: unsupervised, semi-supervised
(every class labelled) and the refusal of a regime no map can serve; an auxiliary model
(model.name=agmdgm|am2) runs each regime as well."""

import json
import os

import numpy as np
import pytest

from gmdgm_tf import data, evaluation, experiment, rundir
from gmdgm_tf.sources import DataError
from conftest import load_config


def regime(name, mnist_dir, model=None):
    """The regime's config at smoke size; `model` swaps its model (as --config.model.name)."""
    config = load_config(f"mnist_{name}", "smoke")
    config.data.dir = mnist_dir
    if model:
        config.model.name = model
    return config


@pytest.mark.parametrize("model", ["gmdgm", "agmdgm"])
def test_unsupervised_mnist_has_no_labels_and_is_scored_by_cluster_and_label(
        mnist_dir, tmp_path, model):
    config = regime("gmdgm_unsup", mnist_dir, model)
    config.train.update(restarts=1, restart_epochs=0)  # restarts: tests/test_experiment.py
    split = data.load_split(config.data, config.seed)
    assert len(split.x_labelled) == 0 and len(split.x_unlabelled) == 50000
    assert split.num_slots == 30 and np.allclose(split.prior, 1 / 30)
    metrics = experiment.train_and_evaluate(config, str(tmp_path))
    heldout = metrics["heldout"]
    assert evaluation.ARGMAX_NOTE not in heldout["protocol"]
    assert heldout["accuracy_labelled_classes"] is None  # no class has labels
    assert 0 <= heldout["nmi"] <= 1 and "ari" in heldout
    # heldout names the slots on validation, paper on test: each map is the majority
    # vote of its own split's points, recomputed here from the saved model's predictions
    model = rundir.load_run(str(tmp_path)).model
    for protocol, labels, x in (("heldout", split.y_val, split.x_val),
                                ("paper", split.y_test, split.x_test)):
        expected = evaluation.cluster_to_class_map(labels, model.predict_slots(x), 10, 30, ())
        assert metrics[protocol]["slot_map"] == expected.tolist(), protocol


@pytest.mark.parametrize("name,model", [("m2_semisup", "m2"), ("gmdgm_semisup", "gmdgm"),
                                        ("m2_semisup", "am2")])
def test_semi_supervised_mnist_scores_the_plain_argmax(mnist_dir, tmp_path, name, model):
    config = regime(name, mnist_dir, model)
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


def hand_made_run(recipe, model, labelled_classes, labels_per_class=10, source="mnist",
                  num_extra_slots=0):
    """A run record as records.read_run returns it: two classes, three test points."""
    metrics = evaluation.evaluate_protocols(
        [0, 1, 1], [0, 1, 1], [0, 1], [1, 1], num_classes=2, num_slots=2 + num_extra_slots,
        labelled_classes=labelled_classes)
    config = {"data": {"source": source, "labelled_classes": list(labelled_classes),
                       "labels_per_class": labels_per_class, "num_extra_slots": num_extra_slots}}
    return {"recipe": recipe, "seed": 0, "config": config, "model": model, "folder": "x",
            "metrics": dict(metrics, training={}), "runner": {}, "history": [],
            "data_meta": {"class_names": ["0", "1"]}}


def test_the_report_says_when_accuracy_is_the_plain_argmax():
    from gmdgm_tf.sweeps import markdown, tables  # pylint: disable=import-outside-toplevel
    run = hand_made_run("semisup", "m2", (0, 1))
    text = markdown.table_markdown(tables.aggregate([run]), [run], "Machine: test")
    assert "both protocols are the plain argmax of q(y|x)" in text
    assert json.dumps(run["metrics"]["heldout"]["accuracy"]) == "0.5"
    assert "with 10 labels each, every class labelled." in text
    paper_split = hand_made_run("semi_unsup", "gmdgm", (0,))
    text = markdown.table_markdown(tables.aggregate([paper_split]), [paper_split], "Machine: t")
    assert ", the other classes unlabelled." in text
    # every class labelled but extra slots to name: cluster-and-label, so both protocols
    extra = hand_made_run("extra", "gmdgm", (0, 1), num_extra_slots=3)
    assert "heldout (" not in json.dumps(extra["metrics"])  # no argmax note
    rows = tables.aggregate([extra])
    assert {r["regime"] for r in rows} == {"semi-unsupervised"}
    text = markdown.table_markdown(rows, [extra], "Machine: t")
    assert "every class labelled." in text and "plain argmax" not in text


def test_each_regime_sits_beside_its_own_published_numbers_never_table_1s():
    from gmdgm_tf.sweeps import markdown, regimes, tables  # pylint: disable=import-outside-toplevel
    runs = [hand_made_run("unsup", "gmdgm", ()), hand_made_run("m2_semi", "m2", (0, 1)),
            hand_made_run("gm_semi", "gmdgm", (0, 1)),
            hand_made_run("m2_semi1000", "m2", (0, 1), labels_per_class=100),
            hand_made_run("am2_npz", "am2", (0, 1), source="npz:x.npz")]
    rows = {r["recipe"]: r for r in tables.aggregate(runs) if r["protocol"] == "heldout"}
    assert {name: (r["regime"], r["paper"], r["published"]) for name, r in rows.items()} == {
        "unsup": (regimes.UNSUPERVISED, None, regimes.LITERATURE["unsupervised"]["gmdgm"]),
        "m2_semi": (regimes.SEMI_SUPERVISED, None, (88.03, 1.71, "Kingma et al., 2014")),
        "gm_semi": (regimes.SEMI_SUPERVISED, None, None),       # nobody published it
        "m2_semi1000": (regimes.SEMI_SUPERVISED, None, None),   # not the 100-label task
        "am2_npz": (regimes.SEMI_SUPERVISED, None, None)}       # not MNIST
    summary = markdown.summary_markdown(tables.aggregate(runs[:2]))
    assert summary.splitlines()[0].startswith("| Regime | Recipe | Protocol |")
    assert "| semi-supervised | M2 semi | heldout | 1 | 50.0 (n/a) |" in summary
    assert summary.count("88.03 (1.71), Kingma et al., 2014") == 1  # paper = heldout here
    assert "| unsupervised | unsup | paper | 1 |" in summary  # cluster-and-label on test
    assert "paper_selection" not in summary
    text = markdown.table_markdown(tables.aggregate(runs[:2]), runs[:2], "Machine: test")
    assert text.startswith("# Regimes: unsupervised, semi-supervised\n\nData: mnist; no labels")
    assert "Willetts et al., Table 1" not in text
    assert "- `unsup` (unsupervised): 96.3 (0.9), Willetts, Roberts & Holmes, 2019" in text
    # the paper's split keeps Table 1's form and the paper's numbers
    paper_split = hand_made_run("gm_paper", "gmdgm", (0,))
    row = tables.aggregate([paper_split])[0]
    assert (row["regime"], row["paper"], row["published"]) == (
        regimes.SEMI_UNSUPERVISED, tables.PAPER["gmdgm"], None)
    assert markdown.summary_markdown([row]).startswith("| Recipe | Protocol | Seeds |")
