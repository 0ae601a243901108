"""Figures people can look at: confusion and slot-assignment matrices, per-slot sample
grids, learning curves; `write_run_figures` puts them into a run's workdir and TensorBoard.

Everything draws on `matplotlib.figure.Figure` objects with an Agg canvas, never pyplot,
so importing this module changes no global matplotlib state (notebooks keep their backend)
and figures are not kept alive by a pyplot registry. Figure sizes are fixed (inches x DPI,
no tight bounding box), so a PNG's pixel size depends only on what is plotted:
`figure_pixels(fig)` says what it will be.
"""

import io
import os

import numpy as np
from matplotlib import image as mpimg
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from gmdgm_tf import filenames, registry
from gmdgm_tf.evaluation import UNMAPPED

DPI = 100
_LABELLED_COLOUR, _UNLABELLED_COLOUR = "black", "tab:red"


# ------------------------------------------------------------------------------ basics


def new_figure(width_in, height_in):
    """A Figure with an Agg canvas and constrained layout (no pyplot)."""
    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_pixels(fig):
    """(width, height) in pixels of the PNG `save_png` writes for fig."""
    w, h = fig.get_size_inches() * fig.dpi
    return int(round(w)), int(round(h))


def save_png(fig, path):
    """Writes fig as PNG to path, any TF filesystem (rundir.write_atomic)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi)
    return _write(path, buffer.getvalue())


def save_rgb_png(rgb, path):
    """Writes a uint8 [height, width, 3] array as PNG, any TF filesystem."""
    buffer = io.BytesIO()
    mpimg.imsave(buffer, rgb, format="png")
    return _write(path, buffer.getvalue())


def _write(path, png):
    from gmdgm_tf import rundir  # pylint: disable=import-outside-toplevel  # TensorFlow
    rundir.write_atomic(path, png)
    return path


def figure_to_rgb(fig):
    """fig -> uint8 [height, width, 3], the pixels `save_png` would write."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def model_title(name):
    """'gmdgm' -> 'GM-DGM'; a recipe name 'gmdgm_fast_uniform' -> 'GM-DGM fast uniform'."""
    head, _, rest = str(name).partition("_")
    return " ".join([registry.title(head)] + rest.split("_")).strip()


def _class_names(class_names, n):
    return [str(c) for c in class_names] if class_names is not None else [str(c) for c in range(n)]


def _colour_ticklabels(labels, labelled_classes):
    labelled = set(int(c) for c in labelled_classes)
    for i, label in enumerate(labels):
        label.set_color(_LABELLED_COLOUR if i in labelled else _UNLABELLED_COLOUR)
        label.set_fontweight("bold" if i in labelled else "normal")


def _annotate_counts(ax, counts, shade, fontsize):
    """Writes every count in its cell, white on dark cells, grey for zeros."""
    for (i, j), n in np.ndenumerate(counts):
        colour = "white" if shade[i, j] > 0.55 else ("0.6" if n == 0 else "black")
        ax.text(j, i, str(int(n)), ha="center", va="center", fontsize=fontsize, color=colour)


def _row_fractions(counts):
    counts = np.asarray(counts, np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


# ---------------------------------------------------------------------------- matrices


def plot_confusion(ax, confusion, *, class_names=None, labelled_classes=(), title=None,
                   fontsize=8):
    """10 x 10 confusion matrix on ax: rows true class, columns predicted class (after
    cluster-and-label); cells show counts, colour is the fraction of the true class's row.
    Labelled classes' tick labels are bold black, unlabelled ones red."""
    confusion = np.asarray(confusion, np.int64)
    n = confusion.shape[0]
    names = _class_names(class_names, n)
    shade = _row_fractions(confusion)
    ax.imshow(shade, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    _annotate_counts(ax, confusion, shade, fontsize)
    ax.set_xticks(range(n), names)
    ax.set_yticks(range(n), names)
    _colour_ticklabels(ax.get_xticklabels(), labelled_classes)
    _colour_ticklabels(ax.get_yticklabels(), labelled_classes)
    ax.set_xlabel("predicted class (slot named by cluster-and-label)")
    ax.set_ylabel("true class (bold: labelled, red: unlabelled)")
    total = confusion.sum()
    ax.set_title(title or "confusion matrix", fontsize=fontsize + 3)
    if total:
        ax.text(0.5, -0.16, f"{int(np.trace(confusion))} of {int(total)} correct; points in "
                "unnamed slots are not in any column", transform=ax.transAxes, ha="center",
                va="top", fontsize=fontsize)


def plot_assignment(ax, assignment, *, slot_map=None, class_names=None, labelled_classes=(),
                    title=None, fontsize=7):
    """num_classes x num_slots counts on ax: rows true class, columns the argmax slot of
    q(y|x). Each column's label says the slot index and the class the slot is named after
    ('?' when no mapping-set point landed in it); colour is the row fraction."""
    assignment = np.asarray(assignment, np.int64)
    n, num_slots = assignment.shape
    names = _class_names(class_names, n)
    shade = _row_fractions(assignment)
    ax.imshow(shade, cmap="Greens", vmin=0.0, vmax=1.0, interpolation="nearest",
              aspect="auto")
    _annotate_counts(ax, assignment, shade, fontsize)
    slot_map = list(slot_map) if slot_map is not None else [UNMAPPED] * num_slots
    columns = [f"{k}\n={names[c]}" if c != UNMAPPED else f"{k}\n=?"
               for k, c in enumerate(slot_map)]
    ax.set_xticks(range(num_slots), columns, fontsize=fontsize + 1)
    ax.set_yticks(range(n), names)
    _colour_ticklabels(ax.get_yticklabels(), labelled_classes)
    labelled = set(int(c) for c in labelled_classes)
    for k, label in enumerate(ax.get_xticklabels()):
        label.set_fontweight("bold" if k in labelled else "normal")
    ax.set_xlabel("slot k = argmax q(y|x)  (=class it is named after; bold: labelled-class slot)")
    ax.set_ylabel("true class")
    ax.set_title(title or "slot assignment", fontsize=fontsize + 4)


def confusion_figure(confusion, **kwargs):
    fig = new_figure(6.4, 6.0)
    plot_confusion(fig.add_subplot(), confusion, **kwargs)
    return fig


def assignment_figure(assignment, **kwargs):
    num_slots = np.asarray(assignment).shape[1]
    fig = new_figure(max(6.0, 1.6 + 0.55 * num_slots), 5.6)
    plot_assignment(fig.add_subplot(), assignment, **kwargs)
    return fig


def _percent(value):
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _run_caption(name, seed, report, protocol):
    pct = _percent
    who = model_title(name) + ("" if seed is None else f", seed {seed}")
    return (f"{who} ({protocol})\noverall {pct(report['accuracy'])}, labelled classes "
            f"{pct(report['accuracy_labelled_classes'])}, unlabelled "
            f"{pct(report['accuracy_unlabelled_classes'])}")


def figure2(best, *, protocol="heldout", class_names=None, labelled_classes=()):
    """The paper's Figure 2 and more: for each model (columns), its confusion matrix (top)
    and class x slot assignment matrix (bottom) under `protocol`.

    best: {model_name: (seed, metrics)} in the order to draw; metrics as metrics.json.
    """
    fig = new_figure(7.6 * len(best), 12.5)
    grid = fig.add_gridspec(2, len(best), height_ratios=[1.1, 1.0])
    for col, (name, (seed, metrics)) in enumerate(best.items()):
        report = metrics[protocol]
        caption = _run_caption(name, seed, report, protocol)
        plot_confusion(fig.add_subplot(grid[0, col]), report["confusion_matrix"],
                       class_names=class_names, labelled_classes=labelled_classes,
                       title="confusion: " + caption)
        plot_assignment(fig.add_subplot(grid[1, col]), report["assignment_matrix"],
                        slot_map=report["slot_map"], class_names=class_names,
                        labelled_classes=labelled_classes,
                        title=f"test points per slot: {model_title(name)}"
                              + ("" if seed is None else f", seed {seed}"))
    fig.suptitle(f"Best run per recipe by validation accuracy; test split, {protocol} protocol",
                 fontsize=13)
    return fig


# ------------------------------------------------------------------------ sample grids


_BORDER_RGB = (0.25, 0.45, 0.75)   # tile borders: a colour no image pixel has
_EMPTY_RGB = (0.96, 0.92, 0.78)    # a slot with fewer test images than columns (beige)


def tile_rows(rows, num_columns, tile_shape):
    """rows: list of [m_i, H, W] grey images in [0, 1] (m_i <= num_columns) -> one RGB
    mosaic [R*(H+1)+1, C*(W+1)+1, 3] with 1-pixel coloured borders; missing tiles beige."""
    h, w = tile_shape
    mosaic = np.empty((len(rows) * (h + 1) + 1, num_columns * (w + 1) + 1, 3), np.float32)
    mosaic[:] = _BORDER_RGB
    for r, images in enumerate(rows):
        for c in range(num_columns):
            top, left = 1 + r * (h + 1), 1 + c * (w + 1)
            if c < len(images):
                mosaic[top:top + h, left:left + w] = np.clip(images[c], 0.0, 1.0)[..., None]
            else:
                mosaic[top:top + h, left:left + w] = _EMPTY_RGB
    return mosaic


def sample_grid_size(num_slots, num_generated=8, num_assigned=8):
    """(width, height) in inches of `sample_grid_figure` for these counts."""
    columns = num_generated + num_assigned + 1
    return 3.2 + 0.42 * columns, 1.3 + 0.42 * num_slots


def sample_grid_figure(generated, assigned, row_labels, *, title="",
                       num_generated=None, num_assigned=None):
    """One row per slot: images decoded from the slot's p(z|y) on the left, test images
    assigned to the slot on the right (beige tiles where a slot got fewer).

    generated, assigned: lists (one entry per slot) of [n, H, W] arrays in [0, 1].
    row_labels: one string per slot.
    """
    num_slots = len(generated)
    tile_shape = np.asarray(generated[0]).shape[1:]
    num_generated = num_generated or max(len(g) for g in generated)
    num_assigned = num_assigned or max(1, max(len(a) for a in assigned))
    left = tile_rows(generated, num_generated, tile_shape)
    right = tile_rows(assigned, num_assigned, tile_shape)
    gap = np.ones((left.shape[0], tile_shape[1] + 1, 3), np.float32)
    mosaic = np.concatenate([left, gap, right], axis=1)
    fig = new_figure(*sample_grid_size(num_slots, num_generated, num_assigned))
    ax = fig.add_subplot()
    ax.imshow(mosaic, interpolation="nearest")
    h, w = tile_shape
    ax.set_yticks([1 + r * (h + 1) + h / 2 for r in range(num_slots)], row_labels, fontsize=9)
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xticks([left.shape[1] / 2, left.shape[1] + gap.shape[1] + right.shape[1] / 2],
                  [f"decoded: mean of p(x|y,z), z ~ p(z|y=slot)  ({num_generated} draws)",
                   f"test images with argmax q(y|x) = slot  (up to {num_assigned})"],
                  fontsize=9)
    ax.tick_params(axis="both", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_ylabel("slot -> class it is named after (test images in slot)")
    if title:
        ax.set_title(title, fontsize=12)
    return fig


def slot_label(slot, slot_map, class_names, labelled_classes, count):
    mapped = slot_map[slot]
    if slot in set(int(c) for c in labelled_classes):
        name = f"{class_names[mapped]} (labelled)"
    elif mapped == UNMAPPED:
        name = "unnamed"
    else:
        name = str(class_names[mapped])
    return f"slot {slot} -> {name}  [n={count}]"


def slot_images(model, x_test, test_slots, pixel_mask, image_shape, *, num_generated=8,
                num_assigned=8, seed=0):
    """-> (generated, assigned, counts): per slot, decoded samples and (a seeded random
    choice of) the test images in that slot, both restored to full images."""
    from gmdgm_tf import data  # pylint: disable=import-outside-toplevel
    pixel_mask = np.asarray(pixel_mask, bool)
    rng = np.random.default_rng(seed)
    generated, assigned, counts = [], [], []
    for slot in range(model.num_slots):
        drawn = np.asarray(model.sample(slot, num_generated, seed=(seed, slot)), np.float32)
        generated.append(data.unfilter(drawn, pixel_mask, image_shape))
        members = np.flatnonzero(np.asarray(test_slots) == slot)
        counts.append(len(members))
        if len(members) > num_assigned:
            members = np.sort(rng.choice(members, num_assigned, replace=False))
        assigned.append(data.unfilter(np.asarray(x_test)[members], pixel_mask, image_shape))
    return generated, assigned, counts


def samples_figure(model, x_test, test_slots, *, slot_map, pixel_mask, image_shape,
                   class_names, labelled_classes, title="", num_generated=8, num_assigned=8,
                   seed=0):
    """A trained model -> its per-slot sample grid (see sample_grid_figure)."""
    generated, assigned, counts = slot_images(
        model, x_test, test_slots, pixel_mask, image_shape, num_generated=num_generated,
        num_assigned=num_assigned, seed=seed)
    labels = [slot_label(k, slot_map, class_names, labelled_classes, counts[k])
              for k in range(len(generated))]
    return sample_grid_figure(generated, assigned, labels, title=title,
                              num_generated=num_generated, num_assigned=num_assigned)


# --------------------------------------------------------------------- learning curves


_CURVE_LABELS = {"val_accuracy": "validation accuracy",
                 "val_accuracy_labelled_classes": "validation accuracy, labelled classes",
                 "val_accuracy_unlabelled_classes": "validation accuracy, unlabelled classes"}


def learning_curves_figure(histories, *, key="val_accuracy", ylabel=None):
    """histories: {model_name: {seed: [history.jsonl records]}} -> one panel per model,
    a thin line per seed and the mean over seeds (at epochs every seed reached) thick."""
    fig = new_figure(6.0 * max(1, len(histories)), 4.6)
    axes = fig.subplots(1, max(1, len(histories)), squeeze=False, sharey=True)[0]
    for ax, (name, by_seed) in zip(axes, histories.items()):
        curves = {}
        for seed, records in sorted(by_seed.items()):
            points = [(r["epoch"], r[key]) for r in records if r.get(key) is not None]
            if not points:
                continue
            epochs, values = zip(*points)
            curves[seed] = dict(points)
            ax.plot(epochs, 100 * np.asarray(values), marker="o" if len(points) < 30 else None,
                    markersize=3, linewidth=1, alpha=0.6, label=f"seed {seed}")
        if len(curves) > 1:
            common = sorted(set.intersection(*(set(c) for c in curves.values())))
            if common:
                mean = [100 * np.mean([c[e] for c in curves.values()]) for e in common]
                ax.plot(common, mean, color="black", linewidth=2.5, marker="s",
                        markersize=5 if len(common) < 30 else 0, label="mean over seeds")
        ax.set_title(f"{model_title(name)}: {len(curves)} seeds")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if curves:
            ax.legend(fontsize=7, ncol=2, loc="lower right")
    axes[0].set_ylabel(ylabel or _CURVE_LABELS.get(key, key) + " (%)")
    fig.suptitle(f"{_CURVE_LABELS.get(key, key).capitalize()} by epoch (slots named on "
                 "validation itself); thin: one seed, thick: mean")
    return fig


# ------------------------------------------------------------------ one run's figures


def run_figures(model, split, metrics, *, protocol="heldout", test_slots=None, title=""):
    """-> {file name: Figure} for one trained run (see write_run_figures)."""
    report = metrics[protocol]
    names = list(split.class_names)
    if test_slots is None:
        test_slots = model.predict_slots(split.x_test)
    caption = title or _run_caption(registry.name_of(model), None, report, protocol)
    return {
        filenames.CONFUSION_FIGURE: confusion_figure(
            report["confusion_matrix"], class_names=names,
            labelled_classes=split.labelled_classes, title="test confusion: " + caption),
        filenames.ASSIGNMENT_FIGURE: assignment_figure(
            report["assignment_matrix"], slot_map=report["slot_map"], class_names=names,
            labelled_classes=split.labelled_classes,
            title=f"test points per slot ({protocol}; columns: slot = class it is named after)"),
        filenames.SAMPLES_FIGURE: samples_figure(
            model, split.x_test, test_slots, slot_map=report["slot_map"],
            pixel_mask=split.pixel_mask, image_shape=split.image_shape, class_names=names,
            labelled_classes=split.labelled_classes,
            title=f"What each slot became ({protocol} slot names)"),
    }


def write_run_figures(workdir, model, split, metrics, *, protocol="heldout", test_slots=None,
                      step=None):
    """Writes confusion.png, assignment.png and samples.png into workdir and the same images
    to TensorBoard (workdir/tensorboard, tags figures/<name>, at the run's last epoch).

    model: the trained model (model(x) -> slot probabilities, model.sample); split: the
    data.Split it was trained on; metrics: as metrics.json. test_slots: argmax slots on
    split.x_test if already computed. Returns the PNG paths.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    figures = run_figures(model, split, metrics, protocol=protocol, test_slots=test_slots)
    if step is None:
        step = int(metrics.get("training", {}).get("epochs_run", 0))
    paths = []
    writer = tf.summary.create_file_writer(os.path.join(workdir, filenames.TENSORBOARD))
    with writer.as_default(step=step):
        for name, fig in figures.items():
            rgb = figure_to_rgb(fig)  # drawn once, for the PNG and for TensorBoard
            paths.append(save_rgb_png(rgb, os.path.join(workdir, name)))
            tf.summary.image(f"figures/{name[:-4]}", rgb[None])
    writer.close()
    return paths
