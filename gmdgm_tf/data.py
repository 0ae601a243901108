"""Data: source arrays (sources.py) -> semi-unsupervised split -> tf.data streams.

The semi-unsupervised split (paper, Sec. 4): classes in ``labelled_classes`` get
``labels_per_class`` labelled examples each; every other training example, of any class,
goes into the unlabelled pool (labelled examples are removed from it). A validation split
is held out from the training set first, so the cluster->class map and model selection
never need the test set.
"""

import dataclasses
import functools
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from gmdgm_tf.sources import DataError, RawData, load_raw


@dataclasses.dataclass
class Split:
    """The semi-unsupervised split, images flattened (and pixel-filtered) to [n, dim].

    x_labelled [n_l, dim], y_labelled [n_l]; x_unlabelled [n_u, dim] with y_unlabelled
    [n_u] kept only for diagnostics (never seen by training); x_val/y_val and
    x_test/y_test likewise. pixel_mask [height*width] bool marks the kept pixels.
    prior [num_slots] is p(y) over class slots.
    """
    x_labelled: np.ndarray
    y_labelled: np.ndarray
    x_unlabelled: np.ndarray
    y_unlabelled: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple
    pixel_mask: np.ndarray
    labelled_classes: tuple
    num_classes: int
    prior: np.ndarray
    class_names: list

    @property
    def num_slots(self) -> int:
        return len(self.prior)

    @property
    def dim(self) -> int:
        return self.x_unlabelled.shape[1]

    @functools.cached_property
    def training_tensors(self):
        """(x_labelled, y_labelled int32, x_unlabelled) as tf constants, made once per split.

        Every epoch's pipeline captures these same tensors: a tf.data function that
        captures a fresh constant keeps it alive for the rest of the process, so building
        new constants per epoch leaked a copy of the unlabelled pool (~90 MB on MNIST)
        every epoch.
        """
        return (tf.constant(self.x_labelled), tf.constant(self.y_labelled.astype(np.int32)),
                tf.constant(self.x_unlabelled))

    @property
    def num_train(self) -> int:
        """Training examples seen by the model (labelled + unlabelled)."""
        return len(self.x_labelled) + len(self.x_unlabelled)


# ----------------------------------------------------------------------- split & prior


def slot_prior(num_classes: int, labelled_classes: Sequence[int], num_extra_slots: int,
               explicit: Optional[Sequence[float]] = None, rule: str = "paper") -> np.ndarray:
    """p(y) over the num_classes + num_extra_slots slots -> [num_slots] float64.

    rule "paper": each labelled-class slot keeps 1/num_classes; the remaining mass is shared
    equally by the masked-class slots and the extra slots. rule "uniform": 1/num_slots for
    every slot (config.PRIOR_RULES). ``explicit`` overrides the rule; config.validate has
    checked its values, its length needs the dataset's class count and is checked here.
    """
    num_slots = num_classes + num_extra_slots
    if explicit is not None:
        prior = np.asarray(explicit, dtype=np.float64)
        if prior.shape != (num_slots,):
            raise DataError(f"data.prior has {prior.size} entries, expected {num_slots} slots")
        return prior
    if rule == "uniform":
        return np.full(num_slots, 1.0 / num_slots)
    labelled = set(labelled_classes)
    free = num_slots - len(labelled)
    mass_left = 1.0 - len(labelled) / num_classes
    if free == 0:
        return np.full(num_slots, 1.0 / num_classes)
    if mass_left <= 0:
        raise DataError("every class is labelled, so the prior rule leaves no mass for the "
                        "extra slots; set data.num_extra_slots=0 or give data.prior")
    return np.array([1.0 / num_classes if k in labelled else mass_left / free
                     for k in range(num_slots)])


def _check_classes(data_config, num_classes: int) -> tuple:
    """The labelled classes must be classes of the dataset (config.validate checked the rest)."""
    labelled = tuple(int(c) for c in data_config.labelled_classes)
    bad = [c for c in labelled if not 0 <= c < num_classes]
    if bad:
        raise DataError(f"data.labelled_classes {bad} are not classes of "
                        f"{data_config.source} (0..{num_classes - 1})")
    return labelled


def make_split(raw: RawData, data_config, seed: int) -> Split:
    """Holds out validation, picks the labelled examples, filters pixels (all seeded)."""
    num_classes = len(raw.class_names)
    labelled_classes = _check_classes(data_config, num_classes)
    rng = np.random.RandomState(seed)
    n_val = data_config.validation_size
    if n_val >= len(raw.train_x):
        raise DataError(f"data.validation_size={n_val} must be in 1..{len(raw.train_x) - 1}")
    order = rng.permutation(len(raw.train_x))
    val_idx, pool_idx = order[:n_val], np.sort(order[n_val:])

    labelled_idx = []
    for c in labelled_classes:
        candidates = pool_idx[raw.train_y[pool_idx] == c]
        if len(candidates) < data_config.labels_per_class:
            raise DataError(
                f"data.labels_per_class={data_config.labels_per_class} but class {c} has only "
                f"{len(candidates)} training examples outside validation")
        labelled_idx.append(rng.choice(candidates, data_config.labels_per_class, replace=False))
    labelled_idx = np.sort(np.concatenate(labelled_idx)) if labelled_idx else np.zeros(0, int)
    unlabelled_idx = np.setdiff1d(pool_idx, labelled_idx)
    _check_pool_fills_a_batch(len(unlabelled_idx), data_config.unlabelled_batch_size)

    image_shape = raw.train_x.shape[1:]
    flat = lambda a: a.reshape(len(a), -1)  # pylint: disable=unnecessary-lambda-assignment
    train_flat = flat(raw.train_x)
    threshold = data_config.pixel_std_threshold
    if threshold:
        # Label-free statistic over the whole training set, as the paper (444 MNIST pixels).
        pixel_mask = train_flat.std(axis=0) > threshold
        if not pixel_mask.any():
            raise DataError(f"data.pixel_std_threshold={threshold} keeps no pixel: the "
                            f"largest pixel std is {train_flat.std(axis=0).max():.3g}")
    else:
        pixel_mask = np.ones(train_flat.shape[1], bool)
    keep = lambda a: np.ascontiguousarray(a[:, pixel_mask])  # pylint: disable=unnecessary-lambda-assignment

    prior = slot_prior(num_classes, labelled_classes, data_config.num_extra_slots,
                       data_config.prior, data_config.prior_rule)
    return Split(
        x_labelled=keep(train_flat[labelled_idx]), y_labelled=raw.train_y[labelled_idx],
        x_unlabelled=keep(train_flat[unlabelled_idx]), y_unlabelled=raw.train_y[unlabelled_idx],
        x_val=keep(train_flat[val_idx]), y_val=raw.train_y[val_idx],
        x_test=keep(flat(raw.test_x)), y_test=raw.test_y,
        image_shape=tuple(image_shape), pixel_mask=pixel_mask,
        labelled_classes=labelled_classes, num_classes=num_classes, prior=prior,
        class_names=list(raw.class_names))


def _check_pool_fills_a_batch(n_u: int, unlabelled_batch_size: int):
    """An epoch is the unlabelled pool in whole batches: a pool smaller than one batch
    has no step (checked when the split is made, before a workdir is touched)."""
    if n_u < unlabelled_batch_size:
        raise DataError(f"unlabelled pool has {n_u} examples, fewer than one batch "
                        f"(data.unlabelled_batch_size={unlabelled_batch_size})")


def load_split(data_config, seed: int) -> Split:
    """config.data -> Split: the one call the experiment makes."""
    return make_split(load_raw(data_config), data_config, seed)


def unfilter(x: np.ndarray, pixel_mask: np.ndarray, image_shape: tuple) -> np.ndarray:
    """[n, kept_dim] -> [n, *image_shape], dropped pixels set to 0."""
    full = np.zeros((len(x), pixel_mask.size), x.dtype)
    full[:, pixel_mask] = x
    return full.reshape((len(x),) + tuple(image_shape))


# ----------------------------------------------------------------------------- tf.data


def _permutations(n: int, seed: int, stream: int, epoch):
    """An endless stream of seeded permutations of range(n) for one epoch -> int32 indices."""
    return tf.data.Dataset.range(2 ** 62).map(
        lambda r: tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int32),
            seed=tf.stack([tf.cast(seed * 8 + stream, tf.int64), epoch * 2 ** 31 + r]))
    ).unbatch()


def epoch_dataset(split: Split, labelled_batch_size: int, unlabelled_batch_size: int,
                  seed: int, epoch: int) -> tf.data.Dataset:
    """The batches of one epoch: one pass over the unlabelled pool.

    Yields ((x_labelled [B_l, dim], y_labelled [B_l]), x_unlabelled [B_u, dim]). The order
    depends only on (seed, epoch), so a resumed run sees exactly the batches an
    uninterrupted one would (skip the steps already done with `.skip`); `epoch` may be a
    Python int or an int64 scalar tensor (inside `flat_map`). The labelled
    stream cycles through fresh permutations; with no labelled classes it yields empty
    [0, dim] batches so the step's shapes stay static.
    """
    n_u = len(split.x_unlabelled)
    _check_pool_fills_a_batch(n_u, unlabelled_batch_size)
    epoch = tf.cast(epoch, tf.int64)
    x_l, y_l, x_u = split.training_tensors
    unlabelled = (_permutations(n_u, seed, 0, epoch).take(n_u)
                  .batch(unlabelled_batch_size, drop_remainder=True)
                  .map(lambda idx: tf.gather(x_u, idx)))
    if len(split.x_labelled):
        labelled = (_permutations(len(split.x_labelled), seed, 1, epoch)
                    .batch(labelled_batch_size, drop_remainder=True)
                    .map(lambda idx: (tf.gather(x_l, idx), tf.gather(y_l, idx))))
    else:
        empty = (np.zeros((0, split.dim), np.float32), np.zeros((0,), np.int32))
        labelled = tf.data.Dataset.from_tensors(empty).repeat()
    return (tf.data.Dataset.zip((labelled, unlabelled)).prefetch(2)
            .with_options(pipeline_options()))


def pipeline_options() -> tf.data.Options:
    """No tf.data autotuning: nothing in the pipeline is AUTOTUNE, and its background model
    thread made the end-of-epoch iterator teardown wait (observed: 8-38 s stalls, epochs
    snapping to ~41 s / ~82 s, about half the epochs of a 15-minute run)."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def steps_per_epoch(split: Split, unlabelled_batch_size: int) -> int:
    return len(split.x_unlabelled) // unlabelled_batch_size
