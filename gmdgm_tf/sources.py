"""Data sources -> RawData: images in [0, 1] and integer labels, before any split.

``config.data.source`` (parsed by config.parse_source):
  * ``digits``: scikit-learn's bundled 8x8 handwritten digits (offline default).
  * ``mnist`` / ``fashion_mnist``: a directory of the four standard IDX files when
    ``config.data.dir`` names one (for MNIST also the ``GMDGM_DATA_DIR`` environment
    variable, unless ``config.data.tfds_dir`` is set), otherwise TensorFlow Datasets.
  * ``tfds:<name>``: any TensorFlow Datasets image-classification dataset with "train" and
    "test" splits (``tfds:kmnist``, ``tfds:emnist/letters``, ...); class count and names
    come from its label feature.
  * ``npz:<path>``: a NumPy ``.npz`` of the user's own (any TF filesystem path) holding
    ``x_train [n, H, W] or [n, H, W, 1]``, ``y_train [n]``, ``x_test``, ``y_test`` and
    optionally ``class_names [C]``; images uint8 (0..255) or float in [0, 1], labels
    integers 0..C-1. Without ``class_names``, C = the largest label + 1.

Colour images ([..., 3]) are refused unless ``config.data.to_grayscale`` asks for their
luminance: the models and the export take one channel. ``data.dir`` and ``data.tfds_dir`` set
for a source that does not read them are refused by config.validate
(config.SOURCE_FIELDS), not ignored.
"""

import dataclasses
import gzip
import io
import os
import struct
from typing import Optional

import numpy as np
import tensorflow as tf

from gmdgm_tf import config as config_lib

DATA_DIR_ENV = "GMDGM_DATA_DIR"  # an MNIST folder, read by data.source=mnist alone
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
IDX_NAMES = tuple(IDX_FILES.values())  # in NPZ_KEYS' order: x_train, y_train, x_test, y_test
CLASS_NAMES = {
    "digits": [str(i) for i in range(10)],
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
}
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
LUMINANCE = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601 weights
# The top of a source's raw integer pixel scale, what its images are divided by to land
# in [0, 1]; the run records it (rundir.DataMeta) for the export's integer inputs.
UINT8_MAX = 255.0                # IDX files, TFDS, an .npz's uint8 images
DIGITS_MAX = 16.0                # scikit-learn's digits: integers 0..16
_IDX_UBYTE = 0x08


class DataError(ValueError):
    """Bad data or data configuration; raised before anything is trained or written."""


@dataclasses.dataclass
class RawData:
    """A dataset as it comes from its source. Images are float32 in [0, 1].

    train_x: [n_train, height, width]; train_y: [n_train] int64 in 0..C-1 (test likewise);
    class_names: C names (C, the class count, comes from the data).
    """
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: list


def load_raw(data_config) -> RawData:
    """config.data -> RawData, checked (shapes, value ranges, label range)."""
    kind, name = config_lib.parse_source(data_config.source)
    to_grayscale, array_names = data_config.to_grayscale, NPZ_KEYS
    if kind == "digits":
        arrays, names = _load_digits(data_config.test_size, data_config.test_split_seed)
    elif kind == "npz":
        arrays, names = load_npz(name)
    elif kind == "tfds":
        arrays, names = load_tfds(name, data_config.tfds_dir, to_grayscale)
    else:  # a named dataset: IDX files when a directory is given, else TFDS
        directory = idx_directory(data_config, kind)
        if directory:
            arrays, array_names = load_idx_dir(os.path.expanduser(directory)), IDX_NAMES
        else:
            env = f" or ${DATA_DIR_ENV}" if kind == "mnist" else ""
            arrays, _ = load_tfds(name, data_config.tfds_dir, offline=(
                f"set config.data.dir{env} to a directory with the IDX files"))
        names = CLASS_NAMES[kind]
    return _checked(arrays, names, data_config.source, to_grayscale, array_names)


def idx_directory(data_config, kind):
    """The IDX directory a named source reads, or None for TFDS: data.dir, else for MNIST
    $GMDGM_DATA_DIR, unless data.tfds_dir asks for TFDS. (Fashion-MNIST's files have
    MNIST's names, so an MNIST folder from the environment would be read as Fashion-MNIST
    without a word.)"""
    if data_config.dir:
        return data_config.dir
    if kind == "mnist" and not data_config.tfds_dir:
        return os.environ.get(DATA_DIR_ENV) or None
    return None


def uint8_divisor(source: str) -> float:
    """The top of data.source's raw pixel scale: what its integer images are divided by."""
    return DIGITS_MAX if source == "digits" else UINT8_MAX


def _checked(arrays, class_names, source, to_grayscale, names) -> RawData:
    """(train_x, train_y, test_x, test_y) of any dtype -> RawData, or a DataError naming
    the array at fault: by `names` (its key in an .npz, its IDX file, ...)."""
    train_x, train_y, test_x, test_y = arrays
    images = [_unit_images(x, f"{source}: {n}", to_grayscale)
              for x, n in ((train_x, names[0]), (test_x, names[2]))]
    labels = [_labels(y, f"{source}: {n}") for y, n in ((train_y, names[1]), (test_y, names[3]))]
    for x, y, xn, yn in ((images[0], labels[0], names[0], names[1]),
                         (images[1], labels[1], names[2], names[3])):
        if len(x) != len(y):
            raise DataError(f"{source}: {xn} holds {len(x)} images but {yn} {len(y)} labels")
    if images[0].shape[1:] != images[1].shape[1:]:
        raise DataError(f"{source}: train images are {images[0].shape[1:]} but test images "
                        f"are {images[1].shape[1:]}")
    if len(images[0]) == 0 or len(images[1]) == 0:
        raise DataError(f"{source}: the train and test splits must not be empty")
    if class_names is None:
        class_names = [str(c) for c in range(int(max(labels[0].max(), labels[1].max())) + 1)]
    for y, n in zip(labels, (names[1], names[3])):
        if y.max() >= len(class_names):
            raise DataError(f"{source}: {n} has label {int(y.max())}, outside the "
                            f"{len(class_names)} classes 0..{len(class_names) - 1}")
    if len(class_names) < 2:
        raise DataError(f"{source}: needs at least 2 classes, has {len(class_names)}")
    return RawData(images[0], labels[0], images[1], labels[1], list(class_names))


def _unit_images(x, what, to_grayscale) -> np.ndarray:
    """[n, H, W] or [n, H, W, 1] (or [n, H, W, 3] with to_grayscale), uint8 or float in
    [0, 1] -> float32 [n, H, W] in [0, 1]."""
    x = np.asarray(x)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    elif x.ndim == 4 and x.shape[-1] in (3, 4) and not to_grayscale:
        raise DataError(f"{what} holds colour images {x.shape[1:]}; the models take one "
                        "channel: set config.data.to_grayscale=True to use their luminance")
    if x.ndim != 3 and not (x.ndim == 4 and x.shape[-1] in (3, 4)):
        raise DataError(f"{what} must be images [n, height, width] or [n, height, width, 1], "
                        f"got shape {x.shape}")
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / UINT8_MAX
    elif np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
        if not np.all(np.isfinite(x)) or x.min(initial=0) < 0 or x.max(initial=0) > 1:
            raise DataError(f"{what}: float images must be finite and in [0, 1] (or give "
                            "uint8 0..255)")
    else:
        raise DataError(f"{what}: images must be uint8 or float, got {x.dtype}")
    if x.ndim == 4:  # colour, asked for as luminance; an alpha channel is dropped
        x = x[..., :3] @ LUMINANCE
    return np.ascontiguousarray(x)


def _labels(y, what) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{what} must be labels [n], got shape {y.shape}")
    if not (np.issubdtype(y.dtype, np.integer) or y.dtype == bool):
        if not (np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0)):
            raise DataError(f"{what} must hold integer class labels, got {y.dtype}")
    if y.size and y.min() < 0:
        raise DataError(f"{what} has label {int(y.min())}; labels must be 0..C-1")
    return y.astype(np.int64)


# ------------------------------------------------------------------------------- NumPy


def load_npz(path: str):
    """A user's .npz (any TF filesystem) -> ((train_x, train_y, test_x, test_y), names|None)."""
    if not tf.io.gfile.exists(path):
        raise DataError(f"npz file not found: {path}")
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            blob = f.read()
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            missing = [k for k in NPZ_KEYS if k not in npz.files]
            if missing:
                raise DataError(f"{path} lacks {', '.join(missing)} (it has "
                                f"{', '.join(npz.files) or 'no arrays'}; needs "
                                f"{', '.join(NPZ_KEYS)}, optionally class_names)")
            arrays = tuple(npz[k] for k in NPZ_KEYS)
            names = [str(n) for n in npz["class_names"]] if "class_names" in npz.files else None
    except DataError:
        raise
    except (OSError, ValueError, EOFError) as e:  # not a zip, a pickled object array, ...
        raise DataError(f"cannot read {path} as a NumPy .npz: {_first_line(e)}") from e
    return arrays, names


# ------------------------------------------------------------------------------ IDX


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


def load_idx_dir(directory: str):
    """Loads the four standard IDX files from ``directory`` -> (train_x, train_y, test_x, test_y).

    Images come back as uint8 [n, height, width], labels as int64 [n]; `load_raw` checks
    them as it checks every source's arrays (counts, shapes, label range), naming the files.
    """
    if not os.path.isdir(directory):
        raise DataError(f"data directory does not exist: {directory}")
    missing = [f for f in IDX_NAMES if not os.path.isfile(os.path.join(directory, f))]
    if missing:
        raise DataError(f"data directory {directory} lacks {', '.join(missing)}")
    train_x, train_y, test_x, test_y = (
        read_idx(os.path.join(directory, fname), 3 if "images" in key else 1)
        for key, fname in IDX_FILES.items())
    return train_x, train_y.astype(np.int64), test_x, test_y.astype(np.int64)


# ----------------------------------------------------------------- TensorFlow Datasets


def load_tfds(name: str, data_dir: Optional[str], to_grayscale: bool = False,
              offline: str = "set config.data.tfds_dir to a TFDS data directory that holds it"):
    """TFDS dataset ``name`` -> ((train_x, train_y, test_x, test_y), class names).

    The builder's metadata is checked first (an image feature and a class label as its
    supervised keys, "train" and "test" splits), so a wrong dataset fails before any
    download. ``download`` stays True (TFDS's default) on purpose: when the dataset is
    already in ``data_dir`` TFDS returns before touching the network, and on a first run
    with a network it fetches the dataset, which is what this source promises. Offline,
    the failed download is reported below (after urllib3's retries), with `offline`: what
    to set instead.
    """
    try:
        import requests  # pylint: disable=import-outside-toplevel  # a TFDS dependency
        import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel  # slow
    except ImportError as e:
        raise DataError(_tfds_import_error(name, e)) from e
    try:
        builder = tfds.builder(name, data_dir=data_dir or None)
    except ImportError as e:
        raise DataError(_tfds_import_error(name, e)) from e
    except Exception as e:  # pylint: disable=broad-except  # DatasetNotFoundError, ...
        raise DataError(f"no TFDS dataset {name!r}: {_first_line(e)}") from e
    class_names = _image_classification_names(tfds, name, builder.info, to_grayscale)
    try:
        (train_x, train_y), (test_x, test_y) = (_tfds_arrays(tfds, ds) for ds in tfds.load(
            name, split=["train", "test"], as_supervised=True, data_dir=data_dir or None))
    except ImportError as e:  # TFDS imports some dependencies only when a dataset loads
        raise DataError(_tfds_import_error(name, e)) from e
    except (requests.RequestException, tfds.download.DownloadError) as e:
        raise DataError(
            f"TFDS dataset {name!r} is not in {data_dir or tfds.core.constants.DATA_DIR} "
            f"and could not be downloaded ({_first_line(e)}); with no network, {offline}"
        ) from e
    except Exception as e:  # pylint: disable=broad-except  # TFDS raises many types
        raise DataError(f"could not load TFDS dataset {name!r}: {_first_line(e)}") from e
    return (train_x, train_y, test_x, test_y), class_names


def _image_classification_names(tfds, name, info, to_grayscale) -> list:
    """The class names of an image-classification dataset's label; else a DataError."""
    keys = info.supervised_keys
    features = info.features
    if not (isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(k, str) for k in keys)
            and isinstance(features[keys[0]], tfds.features.Image)
            and isinstance(features[keys[1]], tfds.features.ClassLabel)):
        raise DataError(f"TFDS dataset {name!r} is not image classification (its supervised "
                        f"keys are {keys!r}; needed: an image and a class label)")
    image = features[keys[0]]
    if None in image.shape[:2]:
        raise DataError(f"TFDS dataset {name!r} has images of varying size {image.shape}; "
                        "the models need one fixed size")
    if image.shape[-1] != 1 and not to_grayscale:  # refused before any download
        _unit_images(np.zeros((0,) + tuple(image.shape), np.uint8), f"tfds:{name}", False)
    splits = set(info.splits.keys())
    if splits and not {"train", "test"} <= splits:
        raise DataError(f"TFDS dataset {name!r} has splits {sorted(splits)}; the experiment "
                        "needs 'train' and 'test'")
    return list(features[keys[1]].names)


def _tfds_arrays(tfds, ds: tf.data.Dataset):
    # Not tfds.load(batch_size=-1): that pads to info.splits.total_num_examples, or to
    # sys.maxsize when TFDS lacks split sizes (e.g. tfds.testing.mock_data), which aborts
    # the process in C++ instead of raising.
    images, labels = zip(*tfds.as_numpy(ds.batch(10_000)))
    return np.concatenate(images), np.concatenate(labels)


def _tfds_import_error(name: str, e: ImportError) -> str:
    return (f"TensorFlow Datasets cannot load {name!r}: {_first_line(e)} (a module it "
            "needs is missing; `pip install -e .` installs the dependencies gmdgm_tf declares)")


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


# ------------------------------------------------------------------------------ digits


def _load_digits(test_size: int, seed: int):
    from sklearn import datasets  # pylint: disable=import-outside-toplevel
    digits = datasets.load_digits()
    images = (digits.images / DIGITS_MAX).astype(np.float32)  # [1797, 8, 8]
    labels = digits.target.astype(np.int64)
    if not 0 < test_size < len(images):
        raise DataError(f"data.test_size={test_size} must be in 1..{len(images) - 1} for digits")
    # The test split is fixed by its own seed so it is the same whatever config.seed is.
    order = np.random.RandomState(seed).permutation(len(images))
    test, train = order[:test_size], order[test_size:]
    return (images[train], labels[train], images[test], labels[test]), CLASS_NAMES["digits"]
