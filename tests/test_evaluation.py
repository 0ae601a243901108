"""Cluster-and-label arithmetic on hand-made assignments with known answers."""

import numpy as np
import pytest

from gmdgm_tf import evaluation

# 3 classes, 5 slots; class 0 is labelled (slot 0), classes 1 and 2 are not.
LABELS = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
SLOTS = np.array([0, 0, 3, 3, 3, 3, 1, 4, 4, 0])


def test_assignment_matrix_counts():
    counts = evaluation.assignment_matrix(LABELS, SLOTS, 3, 5)
    np.testing.assert_array_equal(counts, [[2, 0, 0, 1, 0],
                                           [0, 1, 0, 3, 0],
                                           [1, 0, 0, 0, 2]])


def test_map_labelled_slots_fixed_others_majority_empty_unmapped():
    slot_map = evaluation.cluster_to_class_map(LABELS, SLOTS, 3, 5, labelled_classes=(0,))
    # slot 0: labelled class 0; slot 1: only a 1; slot 2: empty; slot 3: 3x1 vs 1x0; slot 4: 2s
    np.testing.assert_array_equal(slot_map, [0, 1, evaluation.UNMAPPED, 1, 2])


def test_labelled_slot_is_never_remapped_by_majority():
    labels, slots = np.array([1, 1, 1, 0]), np.array([0, 0, 0, 0])
    slot_map = evaluation.cluster_to_class_map(labels, slots, 2, 2, labelled_classes=(0,))
    assert slot_map[0] == 0


def test_accuracy_report_groups():
    slot_map = evaluation.cluster_to_class_map(LABELS, SLOTS, 3, 5, labelled_classes=(0,))
    report = evaluation.accuracy_report(LABELS, SLOTS, slot_map, (0,), 3)
    # predicted: [0,0,1,1,1,1,1,2,2,0] -> correct on 0,1,3,4,5,6,7,8 = 8 of 10
    assert report["accuracy"] == pytest.approx(0.8)
    assert report["accuracy_labelled_classes"] == pytest.approx(2 / 3)
    assert report["accuracy_unlabelled_classes"] == pytest.approx(6 / 7)
    np.testing.assert_array_equal(report["confusion_matrix"],
                                  [[2, 1, 0], [0, 4, 0], [1, 0, 2]])


def test_unmapped_slot_counts_as_wrong_and_is_left_out_of_confusion():
    slot_map = np.array([0, evaluation.UNMAPPED])
    report = evaluation.accuracy_report([0, 1], [0, 1], slot_map, (0,), 2)
    assert report["accuracy"] == 0.5
    assert np.sum(report["confusion_matrix"]) == 1


def test_group_without_points_is_none():
    report = evaluation.accuracy_report([0, 0], [0, 0], np.array([0]), (0,), 2)
    assert report["accuracy_unlabelled_classes"] is None


def test_heldout_protocol_maps_from_validation_paper_from_test():
    # Validation says slot 1 is class 1; test points in slot 1 are all class 2.
    val_labels, val_slots = np.array([0, 1, 1]), np.array([0, 1, 1])
    test_labels, test_slots = np.array([0, 2, 2]), np.array([0, 1, 1])
    out = evaluation.evaluate_protocols(val_labels, val_slots, test_labels, test_slots,
                                        num_classes=3, num_slots=2, labelled_classes=(0,))
    assert out["heldout"]["slot_map"] == [0, 1]
    assert out["heldout"]["accuracy"] == pytest.approx(1 / 3)
    assert out["paper"]["slot_map"] == [0, 2]
    assert out["paper"]["accuracy"] == pytest.approx(1.0)
    assert out["validation"]["accuracy"] == pytest.approx(1.0)


def test_nmi_ari_perfect_clustering_is_one_whatever_slot_names():
    report = evaluation.accuracy_report([0, 0, 1, 1], [3, 3, 2, 2], np.array([0, 1, 1, 0]),
                                        (), 2)
    assert report["nmi"] == pytest.approx(1.0)
    assert report["ari"] == pytest.approx(1.0)


def test_nmi_ari_score_the_slots_not_the_classes_they_are_named():
    """Two slots for class 0: the named predictions are perfect, the clustering is not.
    By hand: NMI = 2 I / (H(labels) + H(slots)) = 2 ln2 / (ln2 + 1.5 ln2) = 0.8; ARI =
    (1 - 2 * 1 / 6) / ((2 + 1) / 2 - 2 * 1 / 6) = 4 / 7 (pair counts: within cells 1,
    within classes 2, within slots 1, of 6 pairs)."""
    report = evaluation.accuracy_report([0, 0, 1, 1], [2, 3, 4, 4],
                                        np.array([-1, -1, 0, 0, 1]), (), 2)
    assert report["accuracy"] == 1.0
    assert report["nmi"] == pytest.approx(0.8)
    assert report["ari"] == pytest.approx(4 / 7)


def test_a_tied_slot_is_named_after_the_lowest_class():
    slot_map = evaluation.cluster_to_class_map([2, 1, 0], [1, 1, 0], 3, 2, labelled_classes=())
    np.testing.assert_array_equal(slot_map, [0, 1])


def test_paper_selection_logs_map_on_the_test_split_and_its_first_1000_images():
    rng = np.random.default_rng(0)
    n = evaluation.PAPER_SELECTION_IMAGES + 500
    labels = rng.integers(0, 3, n)
    slots = np.where(rng.random(n) < 0.8, labels + 2, 1)  # mostly class c in slot c + 2
    slots[evaluation.PAPER_SELECTION_IMAGES:] = 1  # the last 500 all in one slot
    logs = evaluation.paper_selection_logs(labels, slots, num_classes=3, num_slots=5,
                                           labelled_classes=(0,))

    def by_hand(lab, slo):  # slot 0 -> class 0, every other slot its majority class
        names = {k: np.bincount(lab[slo == k], minlength=3).argmax() for k in set(slo)}
        names[0] = 0
        return np.mean([names[k] == c for c, k in zip(lab, slo)])

    first = slice(0, evaluation.PAPER_SELECTION_IMAGES)
    assert logs["test_paper_accuracy_first1000"] == pytest.approx(
        by_hand(labels[first], slots[first]))
    assert logs["test_paper_accuracy"] == pytest.approx(by_hand(labels, slots))
    assert logs["test_paper_accuracy"] < logs["test_paper_accuracy_first1000"]
    assert set(logs) == {"test_paper_accuracy_first1000", "test_paper_accuracy",
                         "test_paper_accuracy_labelled_classes",
                         "test_paper_accuracy_unlabelled_classes", "test_paper_nmi",
                         "test_paper_ari"}


def test_paper_selection_takes_the_epoch_best_on_the_first_1000_not_on_the_full_test():
    def epoch(e, first1000, full):
        return {"epoch": e, "val_accuracy": 0.5, "test_paper_accuracy_first1000": first1000,
                "test_paper_accuracy": full, "test_paper_accuracy_labelled_classes": full,
                "test_paper_accuracy_unlabelled_classes": full, "test_paper_nmi": 0.1 * e,
                "test_paper_ari": 0.0}
    history = [epoch(1, 0.6, 0.9), epoch(2, 0.8, 0.7), epoch(3, 0.8, 0.95), epoch(4, 0.7, 0.99)]
    report = evaluation.paper_selection(history)
    assert report["epoch"] == 2 and report["accuracy"] == 0.7  # first of the tied best
    assert report["nmi"] == pytest.approx(0.2)
    assert "optimistic" in report["protocol"]
    # runs filed before the numbers were recorded (or only partly) have no such protocol
    assert evaluation.paper_selection([{"epoch": 1, "val_accuracy": 0.5}]) is None
    assert evaluation.paper_selection([{"epoch": 0}] + history) is None
