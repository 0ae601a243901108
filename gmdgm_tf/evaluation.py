"""Cluster-and-label evaluation.

A prediction is the argmax slot of q(y|x). Slots of labelled classes are that class; every
other slot (masked-class slots and extra slots) is named after the majority true class of
the mapping-set points assigned to it. A slot that no mapping-set point lands in stays
unnamed (-1) and every point predicted there counts as wrong.

Protocols:
  heldout: mapping set = validation split, scored on the test split;
  paper:   mapping set = the scored set itself (what the paper did on the test set);
  paper_selection (optimistic): the paper protocol at the epoch whose paper-protocol
           accuracy on the first PAPER_SELECTION_IMAGES test images is best, which is how
           the authors' code chose its checkpoint. It reads the test split to choose, so it
           is reported beside the honest protocols for comparison with the paper only and
           never used to choose a recipe. Training records its per-epoch numbers
           (`paper_selection_logs`) in history.jsonl.
"""

import numpy as np
from sklearn import metrics as skm

UNMAPPED = -1
# Where every slot is a labelled class (semi-supervised: all classes labelled, no extra
# slots) the map is the identity, and every protocol is the plain argmax of q(y|x).
ARGMAX_NOTE = "every slot is its labelled class: the plain argmax of q(y|x)"
PAPER_SELECTION_IMAGES = 1000
PAPER_SELECTION = "paper_selection"
PAPER_SELECTION_NOTE = (f"paper_selection (optimistic): the paper protocol at the epoch whose "
                        f"accuracy on the first {PAPER_SELECTION_IMAGES} test images is best, "
                        "as the authors' code chose its checkpoint; it chooses on the test "
                        "split, so it is shown for comparison with the paper only")
# The history.jsonl keys of one epoch's paper-protocol report on the test split, and of the
# accuracy on its first PAPER_SELECTION_IMAGES images (the choice).
_TEST_PREFIX, SELECTION_KEY = "test_paper_", "test_paper_accuracy_first1000"
REPORTED = ("accuracy", "accuracy_labelled_classes", "accuracy_unlabelled_classes", "nmi",
            "ari")


def assignment_matrix(labels, slots, num_classes, num_slots):
    """labels, slots: [n] ints -> counts [num_classes, num_slots]: entry (c, k) = points of
    class c assigned to slot k."""
    counts = np.zeros((num_classes, num_slots), np.int64)
    np.add.at(counts, (np.asarray(labels), np.asarray(slots)), 1)
    return counts


def cluster_to_class_map(labels, slots, num_classes, num_slots, labelled_classes):
    """labels, slots: [n] ints (the split the map is read from) -> slot_map [num_slots]
    int: each labelled class's slot is that class; every other slot is named by the
    majority class of its points (a tie goes to the lowest class index), UNMAPPED (-1)
    if it has none."""
    counts = assignment_matrix(labels, slots, num_classes, num_slots)
    slot_map = np.where(counts.sum(0) > 0, counts.argmax(0), UNMAPPED)
    for c in labelled_classes:
        slot_map[c] = c
    return slot_map


def accuracy_report(labels, slots, slot_map, labelled_classes, num_classes):
    """Accuracies (overall, labelled classes, unlabelled classes), confusion, NMI/ARI.

    labels, slots: [n] ints. Group accuracies are over the points whose *true* class is
    in the group; a group with no points reports None.
    """
    labels, slots = np.asarray(labels), np.asarray(slots)
    predicted = np.asarray(slot_map)[slots]
    correct = predicted == labels
    in_labelled = np.isin(labels, list(labelled_classes))
    mean_or_none = lambda m: float(correct[m].mean()) if m.any() else None  # pylint: disable=unnecessary-lambda-assignment
    confusion = np.zeros((num_classes, num_classes), np.int64)
    ok = predicted != UNMAPPED
    np.add.at(confusion, (labels[ok], predicted[ok]), 1)
    return {
        "accuracy": float(correct.mean()),
        "accuracy_labelled_classes": mean_or_none(in_labelled),
        "accuracy_unlabelled_classes": mean_or_none(~in_labelled),
        "nmi": float(skm.normalized_mutual_info_score(labels, slots)),
        "ari": float(skm.adjusted_rand_score(labels, slots)),
        "confusion_matrix": confusion.tolist(),
    }


def self_mapped_report(labels, slots, num_classes, num_slots, labelled_classes):
    """accuracy_report with the slots named on the scored points themselves (the paper
    protocol on a test set; the validation view used for selection on validation)."""
    slot_map = cluster_to_class_map(labels, slots, num_classes, num_slots, labelled_classes)
    return accuracy_report(labels, slots, slot_map, labelled_classes, num_classes)


def paper_selection_logs(test_labels, test_slots, *, num_classes, num_slots,
                         labelled_classes):
    """One epoch's numbers for the paper_selection protocol: test_labels, test_slots [n]
    -> {"test_paper_<accuracy, ..., nmi, ari>": full test split, paper protocol;
        "test_paper_accuracy_first1000": the same on its first PAPER_SELECTION_IMAGES images}."""
    test_labels, test_slots = np.asarray(test_labels), np.asarray(test_slots)
    args = (num_classes, num_slots, labelled_classes)
    full = self_mapped_report(test_labels, test_slots, *args)
    first = self_mapped_report(test_labels[:PAPER_SELECTION_IMAGES],
                            test_slots[:PAPER_SELECTION_IMAGES], *args)
    logs = {_TEST_PREFIX + k: full[k] for k in REPORTED}
    logs[SELECTION_KEY] = first["accuracy"]
    return logs


def paper_selection(history):
    """history.jsonl records -> the paper_selection report (the `REPORTED` numbers of the
    epoch with the best SELECTION_KEY, the first such epoch on ties, plus "epoch" and
    "protocol"); None when the history does not record them (runs filed before it did)."""
    recorded = [h for h in history if SELECTION_KEY in h]
    if not recorded or len(recorded) != len(history):
        return None
    best = max(recorded, key=lambda h: (h[SELECTION_KEY], -h["epoch"]))
    report = {k: best[_TEST_PREFIX + k] for k in REPORTED}
    report.update(epoch=best["epoch"], protocol=PAPER_SELECTION_NOTE)
    return report


def slots_are_classes(num_labelled, num_slots):
    """Whether every slot is a labelled class's own (no slot is left for cluster-and-label
    to name): then both protocols are the plain argmax of q(y|x) (ARGMAX_NOTE)."""
    return num_labelled == num_slots


def evaluate_protocols(val_labels, val_slots, test_labels, test_slots, *, num_classes,
                       num_slots, labelled_classes):
    """Both protocols on the test split, plus the validation view used for selection
    (their names say ARGMAX_NOTE where every slot is a labelled class).

    *_labels: [n] true classes; *_slots: [n] predicted slots (argmax of q(y|x)) of the
    validation and the test split. heldout names the slots on validation, paper on test.

    Returns {"heldout": {...}, "paper": {...}, "validation": {...}}; each holds the slot
    map, accuracies, confusion matrix, NMI/ARI and the class x slot assignment matrix.
    """
    identity = slots_are_classes(len(labelled_classes), num_slots)

    def protocol(map_labels, map_slots, labels, slots, name):
        slot_map = cluster_to_class_map(map_labels, map_slots, num_classes, num_slots,
                                        labelled_classes)
        report = accuracy_report(labels, slots, slot_map, labelled_classes, num_classes)
        report.update(protocol=f"{name} ({ARGMAX_NOTE})" if identity else name,
                      slot_map=slot_map.tolist(),
                      assignment_matrix=assignment_matrix(
                          labels, slots, num_classes, num_slots).tolist())
        return report

    return {
        "heldout": protocol(val_labels, val_slots, test_labels, test_slots,
                            "heldout: map from validation, scored on test"),
        "paper": protocol(test_labels, test_slots, test_labels, test_slots,
                          "paper: map from test, scored on test"),
        "validation": protocol(val_labels, val_slots, val_labels, val_slots,
                               "validation: map from validation, scored on validation"),
    }


def summary_line(metrics):
    """One human line: the headline accuracies of both protocols."""
    parts = []
    for name in ("heldout", "paper"):
        m = metrics[name]
        fmt = lambda v: "n/a" if v is None else f"{100 * v:.1f}"  # pylint: disable=unnecessary-lambda-assignment
        parts.append(f"{name}: overall {fmt(m['accuracy'])} labelled-classes "
                     f"{fmt(m['accuracy_labelled_classes'])} unlabelled-classes "
                     f"{fmt(m['accuracy_unlabelled_classes'])} NMI {m['nmi']:.3f}")
    return " | ".join(parts)
