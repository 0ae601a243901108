"""Figures: non-empty PNGs of the expected pixel size; a run's figures reach TensorBoard."""

import glob
import os

import numpy as np
from matplotlib import image as mpimg

from gmdgm_tf import data, evaluation, experiment, filenames, plots
from conftest import plain_digits

LABELLED = (0, 1, 2, 8, 9)


def read_png(path):
    """-> float RGB(A) array; checks the file is a non-blank picture."""
    assert os.path.getsize(path) > 1000, path
    pixels = mpimg.imread(path)
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4)
    assert pixels[..., :3].std() > 0.01, f"{path} is blank"
    return pixels


def hand_made_metrics(seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, 500)
    slots = np.where(rng.random(500) < 0.7, labels, rng.integers(0, 15, 500))
    return evaluation.evaluate_protocols(labels, slots, labels, slots, num_classes=10,
                                         num_slots=15, labelled_classes=LABELLED)


def test_matrix_figures_have_expected_size(tmp_path):
    metrics = hand_made_metrics()["heldout"]
    fig = plots.confusion_figure(metrics["confusion_matrix"], labelled_classes=LABELLED,
                                 title="confusion")
    assert plots.figure_pixels(fig) == (640, 600)
    assert read_png(plots.save_png(fig, str(tmp_path / "c.png"))).shape[:2] == (600, 640)

    fig = plots.assignment_figure(metrics["assignment_matrix"], slot_map=metrics["slot_map"],
                                  labelled_classes=LABELLED)
    assert read_png(plots.save_png(fig, str(tmp_path / "a.png"))).shape[:2] == (560, 985)

    both = {"m2": (3, hand_made_metrics(1)), "gmdgm": (7, hand_made_metrics(2))}
    fig = plots.figure2(both, labelled_classes=LABELLED)
    assert read_png(plots.save_png(fig, str(tmp_path / "f2.png"))).shape[:2] == (1250, 1520)
    # the in-memory pixels are what the PNG holds
    assert plots.figure_to_rgb(fig).shape == (1250, 1520, 3)


def test_unnamed_slots_and_empty_rows_draw():
    confusion = np.zeros((10, 10), int)
    confusion[3, 3] = 5                     # most classes have no test points at all
    assignment = np.zeros((10, 15), int)
    assignment[3, 12] = 5
    slot_map = [0, 1, 2, -1, -1, -1, -1, -1, 8, 9, -1, -1, 3, -1, -1]
    assert plots.figure_to_rgb(plots.confusion_figure(confusion)).std() > 1
    assert plots.figure_to_rgb(plots.assignment_figure(assignment, slot_map=slot_map)).std() > 1


def test_sample_grid_and_learning_curves(tmp_path):
    rng = np.random.default_rng(0)
    generated = [rng.random((8, 28, 28)) for _ in range(15)]
    assigned = [rng.random((k % 9, 28, 28)) for k in range(15)]   # some slots get none
    labels = [f"slot {k} -> {k % 10}" for k in range(15)]
    fig = plots.sample_grid_figure(generated, assigned, labels, title="t",
                                   num_generated=8, num_assigned=8)
    width, height = plots.sample_grid_size(15, 8, 8)
    assert plots.figure_pixels(fig) == (round(100 * width), round(100 * height)) == (1034, 760)
    assert read_png(plots.save_png(fig, str(tmp_path / "s.png"))).shape[:2] == (760, 1034)

    histories = {m: {s: [{"epoch": e, "val_accuracy": 0.1 * e + 0.01 * s} for e in (1, 2, 3)]
                     for s in range(3)} for m in ("m2", "gmdgm")}
    fig = plots.learning_curves_figure(histories)
    assert read_png(plots.save_png(fig, str(tmp_path / "l.png"))).shape[:2] == (460, 1200)


def test_write_run_figures_writes_pngs_and_tensorboard_images(tmp_path):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    config = plain_digits()
    split = data.load_split(config.data, config.seed)
    model = experiment.build(config, split)          # untrained is enough to draw
    slots = model.predict_slots(split.x_test)
    metrics = evaluation.evaluate_protocols(
        split.y_val, model.predict_slots(split.x_val), split.y_test, slots,
        num_classes=split.num_classes, num_slots=split.num_slots,
        labelled_classes=split.labelled_classes)
    metrics["training"] = {"epochs_run": 4}

    generated, assigned, counts = plots.slot_images(
        model, split.x_test, slots, split.pixel_mask, split.image_shape, num_assigned=5)
    assert len(generated) == len(assigned) == split.num_slots
    assert generated[0].shape == (8, 8, 8)           # 8 draws of full 8x8 images
    assert sum(counts) == len(split.x_test)
    assert all(len(a) == min(5, c) for a, c in zip(assigned, counts))

    paths = plots.write_run_figures(str(tmp_path), model, split, metrics, test_slots=slots)
    assert sorted(os.path.basename(p) for p in paths) == sorted(filenames.FIGURES)
    sizes = {os.path.basename(p): read_png(p).shape[:2] for p in paths}
    assert sizes["confusion.png"] == (600, 640)
    assert sizes["samples.png"] == (760, 1034)

    tags = {}
    for path in glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags[value.tag] = (event.step, value.metadata.plugin_data.plugin_name)
    for name in ("confusion", "assignment", "samples"):
        assert tags[f"figures/{name}"] == (4, "images"), tags
    # the same call without precomputed slots predicts them itself
    plots.write_run_figures(str(tmp_path), model, split, metrics)
