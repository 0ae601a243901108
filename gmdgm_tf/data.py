"""Data: sources -> arrays -> semi-unsupervised split -> tf.data streams.

Sources (``config.data.source``):
  * ``digits``: scikit-learn's bundled 8x8 handwritten digits (offline default).
  * ``mnist`` / ``fashion_mnist``: a directory of the four standard IDX files when
    ``config.data.dir`` (or the ``GMDGM_DATA_DIR`` environment variable) names one,
    otherwise TensorFlow Datasets.

The semi-unsupervised split (paper, Sec. 4): classes in ``labelled_classes`` get
``labels_per_class`` labelled examples each; every other training example, of any class,
goes into the unlabelled pool (labelled examples are removed from it). A validation split
is held out from the training set first, so the cluster->class map and model selection
never need the test set.
"""

import dataclasses
import functools
import gzip
import os
import struct
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

DATA_DIR_ENV = "GMDGM_DATA_DIR"
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
CLASS_NAMES = {
    "digits": [str(i) for i in range(10)],
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
}
_IDX_UBYTE = 0x08


class DataError(ValueError):
    """Bad data or data configuration; raised before anything is trained or written."""


@dataclasses.dataclass
class RawData:
    """A dataset as it comes from its source. Images are float32 in [0, 1].

    train_x: [n_train, height, width]; train_y: [n_train] int64 (test likewise).
    """
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: list


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


# ----------------------------------------------------------------------------- sources


def read_idx(path: str, expected_ndim: int) -> np.ndarray:
    """Reads one (optionally gzipped) IDX file of unsigned bytes, validating its header."""
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise DataError(f"IDX file not found: {path}")
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:  # truncated or not gzip
        raise DataError(f"cannot read IDX file {name}: {e}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{name}: bad IDX magic number {raw[:4].hex() or '(empty)'}")
    if raw[2] != _IDX_UBYTE:
        raise DataError(f"{name}: IDX data type 0x{raw[2]:02x} is not unsigned byte")
    ndim = raw[3]
    if ndim != expected_ndim:
        raise DataError(f"{name}: IDX file has {ndim} dimensions, expected {expected_ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: IDX header is truncated")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    size = int(np.prod(dims))
    if len(raw) - header != size:
        raise DataError(
            f"{name}: IDX header promises {dims} = {size} bytes of data, "
            f"file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_idx_dir(directory: str, num_classes: int = 10):
    """Loads the four standard IDX files from ``directory`` -> (train_x, train_y, test_x, test_y).

    Images come back as uint8 [n, height, width], labels as int64 [n].
    """
    if not os.path.isdir(directory):
        raise DataError(f"data directory does not exist: {directory}")
    missing = [f for f in IDX_FILES.values() if not os.path.isfile(os.path.join(directory, f))]
    if missing:
        raise DataError(f"data directory {directory} lacks {', '.join(missing)}")
    arrays = {}
    for key, fname in IDX_FILES.items():
        arrays[key] = read_idx(os.path.join(directory, fname), 3 if "images" in key else 1)
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if len(images) != len(labels):
            raise DataError(
                f"{IDX_FILES[part + '_images']} holds {len(images)} images but "
                f"{IDX_FILES[part + '_labels']} holds {len(labels)} labels")
        if labels.size and labels.max() >= num_classes:
            raise DataError(
                f"{IDX_FILES[part + '_labels']}: label {int(labels.max())} is outside "
                f"0..{num_classes - 1}")
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise DataError(
            f"train images are {arrays['train_images'].shape[1:]} but test images are "
            f"{arrays['test_images'].shape[1:]}")
    return (arrays["train_images"], arrays["train_labels"].astype(np.int64),
            arrays["test_images"], arrays["test_labels"].astype(np.int64))


def _load_tfds(name: str, data_dir: Optional[str]):
    """TFDS dataset ``name`` -> (train_x, train_y, test_x, test_y); images uint8 [n, h, w].

    ``download`` stays True (TFDS's default) on purpose. When the dataset is already in
    ``data_dir`` TFDS returns before touching the network, and on a first run with a
    network it fetches the dataset, which is what this path promises. ``download=False``
    would turn every first run into an error, and "offline" cannot be told in advance
    without a network probe of our own. Offline, the failed download is reported below
    (after urllib3's retries, which take a few minutes).
    """
    try:
        import requests  # pylint: disable=import-outside-toplevel  # a TFDS dependency
        import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel  # slow
    except ImportError as e:
        raise DataError(_tfds_import_error(name, e)) from e
    try:
        (train_x, train_y), (test_x, test_y) = (_tfds_arrays(tfds, ds) for ds in tfds.load(
            name, split=["train", "test"], as_supervised=True, data_dir=data_dir or None))
    except ImportError as e:  # TFDS imports some dependencies only when a dataset loads
        raise DataError(_tfds_import_error(name, e)) from e
    except (requests.RequestException, tfds.download.DownloadError) as e:
        raise DataError(
            f"TFDS dataset {name!r} is not in {data_dir or tfds.core.constants.DATA_DIR} "
            f"and could not be downloaded ({_first_line(e)}); with no network, set "
            f"config.data.dir or ${DATA_DIR_ENV} to a directory with the IDX files") from e
    except Exception as e:  # pylint: disable=broad-except  # TFDS raises many types
        raise DataError(f"could not load TFDS dataset {name!r}: {_first_line(e)}") from e
    return train_x, train_y, test_x, test_y


def _tfds_arrays(tfds, ds: tf.data.Dataset):
    # Not tfds.load(batch_size=-1): that pads to info.splits.total_num_examples, or to
    # sys.maxsize when TFDS lacks split sizes (e.g. tfds.testing.mock_data), which aborts
    # the process in C++ instead of raising.
    images, labels = zip(*tfds.as_numpy(ds.batch(10_000)))
    return np.concatenate(images)[..., 0], np.concatenate(labels).astype(np.int64)


def _tfds_import_error(name: str, e: ImportError) -> str:
    return (f"TensorFlow Datasets cannot load {name!r}: {_first_line(e)} (a module it "
            "needs is missing; `pip install -e .` installs the dependencies gmdgm_tf declares)")


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _load_digits(test_size: int, seed: int):
    from sklearn import datasets  # pylint: disable=import-outside-toplevel
    digits = datasets.load_digits()
    images = (digits.images / 16.0).astype(np.float32)  # [1797, 8, 8], values 0..16
    labels = digits.target.astype(np.int64)
    if not 0 < test_size < len(images):
        raise DataError(f"data.test_size={test_size} must be in 1..{len(images) - 1} for digits")
    # The test split is fixed by its own seed so it is the same whatever config.seed is.
    order = np.random.RandomState(seed).permutation(len(images))
    test, train = order[:test_size], order[test_size:]
    return images[train], labels[train], images[test], labels[test]


def load_raw(data_config) -> RawData:
    """Loads ``data_config.source`` -> RawData with float32 images in [0, 1]."""
    source = data_config.source
    if source == "digits":
        train_x, train_y, test_x, test_y = _load_digits(
            data_config.test_size, data_config.test_split_seed)
    else:
        directory = data_config.get("dir") or os.environ.get(DATA_DIR_ENV)
        if directory:
            train_x, train_y, test_x, test_y = load_idx_dir(os.path.expanduser(directory))
        else:
            train_x, train_y, test_x, test_y = _load_tfds(source, data_config.get("tfds_dir"))
        train_x = train_x.astype(np.float32) / 255.0
        test_x = test_x.astype(np.float32) / 255.0
    return RawData(train_x, train_y, test_x, test_y, CLASS_NAMES[source])


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

    image_shape = raw.train_x.shape[1:]
    flat = lambda a: a.reshape(len(a), -1)  # pylint: disable=unnecessary-lambda-assignment
    train_flat = flat(raw.train_x)
    threshold = data_config.get("pixel_std_threshold")
    if threshold:
        # Label-free statistic over the whole training set, as the paper (444 MNIST pixels).
        pixel_mask = train_flat.std(axis=0) > threshold
    else:
        pixel_mask = np.ones(train_flat.shape[1], bool)
    keep = lambda a: np.ascontiguousarray(a[:, pixel_mask])  # pylint: disable=unnecessary-lambda-assignment

    prior = slot_prior(num_classes, labelled_classes, data_config.num_extra_slots,
                       data_config.get("prior"), data_config.get("prior_rule", "paper"))
    return Split(
        x_labelled=keep(train_flat[labelled_idx]), y_labelled=raw.train_y[labelled_idx],
        x_unlabelled=keep(train_flat[unlabelled_idx]), y_unlabelled=raw.train_y[unlabelled_idx],
        x_val=keep(train_flat[val_idx]), y_val=raw.train_y[val_idx],
        x_test=keep(flat(raw.test_x)), y_test=raw.test_y,
        image_shape=tuple(image_shape), pixel_mask=pixel_mask,
        labelled_classes=labelled_classes, num_classes=num_classes, prior=prior,
        class_names=list(raw.class_names))


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
    if n_u < unlabelled_batch_size:
        raise DataError(f"unlabelled pool has {n_u} examples, fewer than one batch "
                        f"({unlabelled_batch_size})")
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
