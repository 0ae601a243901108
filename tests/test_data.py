"""IDX reading and validation, the slot prior, the semi-unsupervised split, tf.data."""

import gzip
import os
import struct

import numpy as np
import pytest

from gmdgm_tf import data, sources
from conftest import data_config


# ----------------------------------------------------------------------------- IDX


def write_idx(path, array, magic_type=0x08, gz=True, truncate=0, ndim_override=None):
    array = np.asarray(array, np.uint8)
    ndim = array.ndim if ndim_override is None else ndim_override
    raw = bytes([0, 0, magic_type, ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.tobytes()
    if truncate:
        raw = raw[:-truncate]
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(raw)


def make_idx_dir(tmp_path, n_train=30, n_test=10, size=4, train_labels=None):
    rng = np.random.RandomState(0)
    write_idx(tmp_path / sources.IDX_FILES["train_images"], rng.randint(0, 256, (n_train, size, size)))
    write_idx(tmp_path / sources.IDX_FILES["train_labels"],
              np.arange(n_train) % 10 if train_labels is None else train_labels)
    write_idx(tmp_path / sources.IDX_FILES["test_images"], rng.randint(0, 256, (n_test, size, size)))
    write_idx(tmp_path / sources.IDX_FILES["test_labels"], np.arange(n_test) % 10)
    return str(tmp_path)


def test_idx_round_trip(tmp_path):
    images = np.random.RandomState(1).randint(0, 256, (7, 3, 5))
    write_idx(tmp_path / "x.gz", images)
    np.testing.assert_array_equal(sources.read_idx(str(tmp_path / "x.gz"), 3), images)
    write_idx(tmp_path / "y", [1, 2, 3], gz=False)
    np.testing.assert_array_equal(sources.read_idx(str(tmp_path / "y"), 1), [1, 2, 3])


def test_idx_dir_loads(tmp_path):
    train_x, train_y, test_x, test_y = sources.load_idx_dir(make_idx_dir(tmp_path))
    assert train_x.shape == (30, 4, 4) and test_x.shape == (10, 4, 4)
    assert train_y.dtype == np.int64 and list(test_y[:3]) == [0, 1, 2]


@pytest.mark.parametrize("corrupt, message", [
    (lambda p: write_idx(p, np.zeros((30, 4, 4)), magic_type=0x0D), "is not unsigned byte"),
    (lambda p: open(p, "wb").write(b"\x08\x03\x00\x00" + b"\x00" * 20), "cannot read IDX"),
    (lambda p: write_idx(p, np.zeros((30, 4, 4)), truncate=5), "promises"),
    (lambda p: write_idx(p, np.zeros((30, 16))), "2 dimensions, expected 3"),
    (lambda p: gzip.open(p, "wb").write(b"\x01\x02\x08\x03"), "bad IDX magic"),
])
def test_corrupt_train_images_named_in_error(tmp_path, corrupt, message):
    directory = make_idx_dir(tmp_path)
    corrupt(tmp_path / sources.IDX_FILES["train_images"])
    with pytest.raises(data.DataError, match=message) as e:
        sources.load_idx_dir(directory)
    assert "train-images-idx3-ubyte.gz" in str(e.value)


def test_truncated_gzip_is_a_data_error(tmp_path):
    directory = make_idx_dir(tmp_path)
    path = tmp_path / sources.IDX_FILES["train_images"]
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(data.DataError, match="train-images-idx3-ubyte.gz"):
        sources.load_idx_dir(directory)


@pytest.mark.parametrize("directory, message", [
    (dict(train_labels=np.arange(29) % 10),
     "mnist: train-images-idx3-ubyte.gz holds 30 images but train-labels-idx1-ubyte.gz 29"),
    (dict(train_labels=np.full(30, 12)),
     "mnist: train-labels-idx1-ubyte.gz has label 12, outside the 10 classes 0..9"),
])
def test_idx_arrays_are_checked_as_every_source_s_naming_the_file(tmp_path, directory, message):
    config = split_config(source="mnist", dir=make_idx_dir(tmp_path, **directory))
    with pytest.raises(data.DataError, match=message):
        sources.load_raw(config)


def test_missing_directory_and_files(tmp_path):
    with pytest.raises(data.DataError, match="does not exist"):
        sources.load_idx_dir(str(tmp_path / "nope"))
    with pytest.raises(data.DataError, match="lacks train-images-idx3-ubyte.gz"):
        sources.load_idx_dir(str(tmp_path))


# --------------------------------------------------------------------------- prior


def test_paper_prior():
    prior = data.slot_prior(10, (0, 1, 2, 8, 9), 5)
    expected = np.full(15, 1 / 20)
    expected[[0, 1, 2, 8, 9]] = 1 / 10
    np.testing.assert_allclose(prior, expected)
    assert prior.sum() == pytest.approx(1.0)


def test_prior_unsupervised_and_fully_supervised():
    np.testing.assert_allclose(data.slot_prior(10, (), 5), np.full(15, 1 / 15))
    np.testing.assert_allclose(data.slot_prior(10, range(10), 0), np.full(10, 1 / 10))
    with pytest.raises(data.DataError, match="no mass for the extra slots"):
        data.slot_prior(10, range(10), 2)


def test_uniform_prior_rule_is_the_authors_m2():
    np.testing.assert_allclose(data.slot_prior(10, (0, 1, 2, 8, 9), 15, rule="uniform"),
                               np.full(25, 1 / 25))


def test_paper_rule_with_more_extra_slots():
    prior = data.slot_prior(10, (0, 1, 2, 8, 9), 15)
    assert prior[0] == pytest.approx(0.1) and prior[3] == pytest.approx(0.5 / 20)
    assert prior.sum() == pytest.approx(1.0)


def test_explicit_prior_of_the_wrong_length():
    # its values are config.validate's to check (tests/test_config.py); its length needs
    # the dataset's class count
    with pytest.raises(data.DataError, match="2 entries, expected 3"):
        data.slot_prior(2, (0,), 1, [0.5, 0.5])


# --------------------------------------------------------------------------- split


def synthetic_raw(n_train=600, n_test=50, num_classes=10):
    """Each training image encodes its own index in pixel 0 so leaks are traceable."""
    rng = np.random.RandomState(0)
    train_x = rng.rand(n_train, 4, 4).astype(np.float32)
    train_x[:, 0, 0] = np.arange(n_train)
    test_x = rng.rand(n_test, 4, 4).astype(np.float32)
    test_x[:, 0, 0] = np.arange(n_test)
    return data.RawData(train_x, np.arange(n_train) % num_classes, test_x,
                        np.arange(n_test) % num_classes, [str(c) for c in range(num_classes)])


def split_config(**overrides):
    return data_config(**{**dict(source="digits", validation_size=100, labels_per_class=7,
                                 pixel_std_threshold=0.0), **overrides})


def ids(x):
    return set(x[:, 0].astype(int).tolist())


def test_split_invariants():
    split = data.make_split(synthetic_raw(), split_config(), seed=3)
    labelled, unlabelled, val = ids(split.x_labelled), ids(split.x_unlabelled), ids(split.x_val)
    assert not labelled & unlabelled, "labelled examples leaked into the unlabelled pool"
    assert not val & (labelled | unlabelled), "validation examples used for training"
    assert len(labelled | unlabelled | val) == 600, "examples lost"
    counts = np.bincount(split.y_labelled, minlength=10)
    np.testing.assert_array_equal(counts, [7, 7, 7, 0, 0, 0, 0, 0, 7, 7])
    assert len(split.x_val) == 100 and split.num_slots == 15
    # the true labels travel with the right images (an image's label is its index % 10)
    for x, y in [(split.x_labelled, split.y_labelled), (split.x_unlabelled, split.y_unlabelled),
                 (split.x_val, split.y_val), (split.x_test, split.y_test)]:
        np.testing.assert_array_equal(y, x[:, 0].astype(int) % 10)


def test_split_seeded():
    raw = synthetic_raw()
    a, b = (data.make_split(raw, split_config(), seed=5) for _ in range(2))
    np.testing.assert_array_equal(a.x_labelled, b.x_labelled)
    c = data.make_split(raw, split_config(), seed=6)
    assert ids(a.x_labelled) != ids(c.x_labelled)


def test_split_fully_supervised_and_unsupervised():
    raw = synthetic_raw()
    sup = data.make_split(raw, split_config(labelled_classes=tuple(range(10)),
                                            num_extra_slots=0), seed=0)
    assert np.all(np.bincount(sup.y_labelled) == 7) and sup.num_slots == 10
    unsup = data.make_split(raw, split_config(labelled_classes=()), seed=0)
    assert len(unsup.x_labelled) == 0 and len(unsup.x_unlabelled) == 500


@pytest.mark.parametrize("overrides, message", [
    (dict(labelled_classes=(0, 10)), r"\[10\] are not classes"),
    (dict(labels_per_class=60), "class 0 has only"),
    (dict(validation_size=600), "validation_size"),
])
def test_bad_split_config(overrides, message):
    with pytest.raises(data.DataError, match=message):
        data.make_split(synthetic_raw(), split_config(**overrides), seed=0)


def test_pixel_filter_drops_constant_pixels_and_unfilter_restores_shape():
    raw = synthetic_raw()
    raw.train_x[:, 3, :] = 0.5  # constant row: std 0
    split = data.make_split(raw, split_config(pixel_std_threshold=0.1), seed=0)
    assert split.dim == 12 and not split.pixel_mask.reshape(4, 4)[3].any()
    full = data.unfilter(split.x_test, split.pixel_mask, split.image_shape)
    assert full.shape == (50, 4, 4) and np.all(full[:, 3] == 0)


def test_mnist_pixel_filter_keeps_444(mnist_dir):
    cfg = split_config(source="mnist", dir=mnist_dir, validation_size=10000,
                       labels_per_class=100, pixel_std_threshold=0.1)
    split = data.load_split(cfg, seed=0)
    assert split.dim == 444  # the paper's count
    assert len(split.x_unlabelled) == 50000 - 500 and len(split.x_test) == 10000


# ------------------------------------------------------------------------- tf.data


def test_train_dataset_shapes_and_epoch_length():
    split = data.make_split(synthetic_raw(), split_config(), seed=0)
    batches = list(data.epoch_dataset(split, 20, 100, seed=0, epoch=0).as_numpy_iterator())
    assert len(batches) == len(split.x_unlabelled) // 100 == data.steps_per_epoch(split, 100)
    (x_l, y_l), x_u = batches[0]
    assert x_l.shape == (20, 16) and y_l.shape == (20,) and x_u.shape == (100, 16)
    seen = set().union(*(ids(b[1]) for b in batches))
    assert seen <= ids(split.x_unlabelled) and len(seen) == 400
    assert set(np.concatenate([b[0][1] for b in batches]).tolist()) <= {0, 1, 2, 8, 9}


def test_epoch_order_depends_only_on_seed_and_epoch():
    split = data.make_split(synthetic_raw(), split_config(), seed=0)
    first = lambda seed, epoch: [b[1][:, 0] for b in data.epoch_dataset(  # pylint: disable=unnecessary-lambda-assignment
        split, 20, 100, seed, epoch).as_numpy_iterator()]
    np.testing.assert_array_equal(first(0, 3), first(0, 3))
    assert not np.array_equal(first(0, 3), first(0, 4))
    assert not np.array_equal(first(0, 3), first(1, 3))
    # resuming mid-epoch: skipping k steps gives the tail of the same order
    tail = [b[1][:, 0] for b in data.epoch_dataset(split, 20, 100, 0, 3).skip(2)
            .as_numpy_iterator()]
    np.testing.assert_array_equal(tail, first(0, 3)[2:])


def test_train_dataset_unsupervised_has_empty_labelled_batch():
    split = data.make_split(synthetic_raw(), split_config(labelled_classes=()), seed=0)
    (x_l, y_l), x_u = next(iter(data.epoch_dataset(split, 20, 100, seed=0, epoch=0)))
    assert x_l.shape == (0, 16) and y_l.shape == (0,) and x_u.shape == (100, 16)


def test_epoch_pipeline_runs_without_autotuning():
    """tf.data's autotuning thread stalled the end-of-epoch teardown by 8-38 s."""
    split = data.make_split(synthetic_raw(), split_config(), seed=0)
    assert data.epoch_dataset(split, 20, 100, seed=0, epoch=0).options().autotune.enabled \
        is False


def _rss_mib():
    with open("/proc/self/status", encoding="ascii") as f:
        return int(f.read().split("VmRSS:")[1].split()[0]) / 1024


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_epoch_pipelines_do_not_pile_up_copies_of_the_pool():
    """Each epoch builds a new pipeline; all must share one copy of the data (a fresh
    constant per epoch stayed alive for the whole process: ~90 MB per MNIST epoch)."""
    import dataclasses  # pylint: disable=import-outside-toplevel
    split = data.make_split(synthetic_raw(), split_config(), seed=0)
    pool = np.random.RandomState(0).rand(250_000, 40).astype(np.float32)  # 40 MB
    split = dataclasses.replace(split, x_unlabelled=pool, y_unlabelled=np.zeros(len(pool)))
    assert split.training_tensors is split.training_tensors
    next(iter(data.epoch_dataset(split, 20, 100, seed=0, epoch=0)))
    before = _rss_mib()
    for epoch in range(1, 5):
        next(iter(data.epoch_dataset(split, 20, 100, seed=0, epoch=epoch)))
    assert _rss_mib() - before < 30, "memory grew by about one pool per epoch"
