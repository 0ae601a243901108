"""Which regime a run's split puts it in, and the published numbers that sit beside it.

  semi-unsupervised  some classes labelled, the others not: the paper's Table 1
                     (its numbers are the registry's `paper_table1`);
  unsupervised       no class labelled: every class is found by cluster-and-label;
  semi-supervised    every class labelled and no extra slot: the slots are the classes,
                     accuracy the plain argmax of q(y|x) (extra slots would make it
                     cluster-and-label, so such a run counts as semi-unsupervised).

Free of TensorFlow, like the report that reads it.
"""

from gmdgm_tf import evaluation

SEMI_UNSUPERVISED, UNSUPERVISED, SEMI_SUPERVISED = (
    "semi-unsupervised", "unsupervised", "semi-supervised")

# Published MNIST test accuracy (%) of the neighbouring regimes: regime -> {model name:
# (mean, SD, who)}. Semi-supervised: 100 labels (10 per class), errors 11.97 +- 1.71 and
# 0.96 +- 0.02 as published. Unsupervised: the authors' later version of the paper
# (arXiv:1901.08560), with their Gaussian-mixture models (GM-DGM, AGM-DGM).
LITERATURE = {
    UNSUPERVISED: {name: (96.3, 0.9, "Willetts, Roberts & Holmes, 2019")
                   for name in ("gmdgm", "agmdgm")},
    SEMI_SUPERVISED: {"m2": (88.03, 1.71, "Kingma et al., 2014"),
                      "am2": (99.04, 0.02, "Maaloe et al., 2016 (ADGM)")},
}
SEMI_SUPERVISED_LABELS_PER_CLASS = 10  # the literature's MNIST with 100 labels


def regime(config, num_classes):
    """A filed config.json (dict) and the dataset's class count -> its regime's name."""
    data = config.get("data", {})
    labelled = data.get("labelled_classes") or ()
    if not labelled:
        return UNSUPERVISED
    num_slots = num_classes + (data.get("num_extra_slots") or 0)
    return (SEMI_SUPERVISED if evaluation.slots_are_classes(len(labelled), num_slots)
            else SEMI_UNSUPERVISED)


def published(model, name, configs):
    """MNIST runs of one model in regime `name` (None: their regimes differ), their filed
    config.json dicts -> (mean, SD, who) published for it, or None: with 100 labels for
    the semi-supervised regime, and never for the semi-unsupervised one (the paper's
    Table 1 has its own columns). The caller checks that the runs are on MNIST."""
    if name == SEMI_SUPERVISED and any(c.get("data", {}).get("labels_per_class")
                                       != SEMI_SUPERVISED_LABELS_PER_CLASS for c in configs):
        return None
    return LITERATURE.get(name, {}).get(model)


def format_published(entry):
    """(88.03, 1.71, 'Kingma et al., 2014') -> '88.03 (1.71), Kingma et al., 2014'; None -> '-'."""
    if entry is None:
        return "-"
    mean, sd, who = entry
    return f"{mean:g} ({sd:g}), {who}"
