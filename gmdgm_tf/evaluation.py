"""Cluster-and-label evaluation.

A prediction is the argmax slot of q(y|x). Slots of labelled classes are that class; every
other slot (masked-class slots and extra slots) is named after the majority true class of
the mapping-set points assigned to it. A slot that no mapping-set point lands in stays
unnamed (-1) and every point predicted there counts as wrong.

Protocols (both reported):
  heldout: mapping set = validation split, scored on the test split;
  paper:   mapping set = the scored set itself (what the paper did on the test set).
"""

import numpy as np
from sklearn import metrics as skm

UNMAPPED = -1


def assignment_matrix(labels, slots, num_classes, num_slots):
    """Counts [num_classes, num_slots]: entry (c, k) = points of class c assigned to slot k."""
    counts = np.zeros((num_classes, num_slots), np.int64)
    np.add.at(counts, (np.asarray(labels), np.asarray(slots)), 1)
    return counts


def cluster_to_class_map(labels, slots, num_classes, num_slots, labelled_classes):
    """-> slot_map [num_slots] int: the class each slot stands for (-1 if unnamed)."""
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


def evaluate_protocols(val_labels, val_slots, test_labels, test_slots, *, num_classes,
                       num_slots, labelled_classes):
    """Both protocols on the test split, plus the validation view used for selection.

    Returns {"heldout": {...}, "paper": {...}, "validation": {...}}; each holds the slot
    map, accuracies, confusion matrix, NMI/ARI and the class x slot assignment matrix.
    """
    def protocol(map_labels, map_slots, labels, slots, name):
        slot_map = cluster_to_class_map(map_labels, map_slots, num_classes, num_slots,
                                        labelled_classes)
        report = accuracy_report(labels, slots, slot_map, labelled_classes, num_classes)
        report.update(protocol=name, slot_map=slot_map.tolist(),
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
