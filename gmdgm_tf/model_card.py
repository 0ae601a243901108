"""A short model card (MODEL_CARD.md) written into every export, from its metadata."""

from gmdgm_tf import registry


def _pct(value):
    return "n/a" if value is None else f"{100 * value:.1f} %"


def model_card(metadata):
    """gmdgm_export.json's metadata dict -> Markdown text."""
    names = metadata["class_names"]
    labelled = [names[c] for c in metadata["labelled_classes"]]
    unlabelled = [n for c, n in enumerate(names) if c not in metadata["labelled_classes"]]
    training = metadata.get("training", {})
    lines = [
        f"# Model card: {registry.title(metadata['model'], full=True)} on "
        f"{metadata['dataset']}", "",
        "**What it does.** Semi-unsupervised classification of "
        f"{metadata['image_shape'][0]} x {metadata['image_shape'][1]} grayscale images into "
        f"{len(names)} classes, through {metadata['num_slots']} class slots of q(y|x). "
        f"Classes trained with labels: {', '.join(labelled) or 'none'}; classes present "
        f"only without labels, found as clusters and named afterwards: "
        f"{', '.join(unlabelled) or 'none'}.", "",
        f"**Slot names.** Each slot is named after the majority class of the "
        f"{metadata['slot_map_protocol']} protocol's mapping set (heldout: the validation "
        "split); a slot no mapping point reached is unnamed (-1).", "",
        "**Measured accuracy** (test split, cluster-and-label):", "",
        "| protocol | overall | labelled classes | unlabelled classes | NMI |",
        "|---|---|---|---|---|"]
    for protocol, m in metadata.get("metrics", {}).items():
        nmi = "n/a" if m.get("nmi") is None else f"{m['nmi']:.3f}"
        lines.append(f"| {protocol} | {_pct(m.get('accuracy'))} | "
                     f"{_pct(m.get('accuracy_labelled_classes'))} | "
                     f"{_pct(m.get('accuracy_unlabelled_classes'))} | {nmi} |")
    lines += [
        "", f"**Training.** {training.get('epochs_run', '?')} epochs, epoch "
        f"{training.get('selected_epoch', '?')} " + (
            "(the last)" if training.get("selection") == "last" else
            "selected on validation accuracy") + "; "
        f"gmdgm_tf {metadata['package_version']}, TensorFlow {metadata['tensorflow_version']}.",
        "", "**Limits.** Inputs must look like the training images (same size, scale and "
        "polarity, e.g. white digit on black for MNIST); anything else still gets a class. "
        "Clusters of unlabelled classes can merge two classes or split one; the probabilities "
        "are the model's q(y|x), not calibrated. Research code: not for decisions about "
        "people.", "",
        "Functions, inputs and outputs: `gmdgm_export.json` (`signatures`) and gmdgm_tf's "
        "docs/export.md."]
    return "\n".join(lines) + "\n"
