"""The TensorFlow Datasets source (sources._load_tfds), offline: TFDS's own mock, no network."""

import socket

import numpy as np
import pytest

from gmdgm_tf import data, sources
from conftest import data_config

tfds = pytest.importorskip("tensorflow_datasets")
requests = pytest.importorskip("requests")  # a TFDS dependency


def tfds_config(**overrides):
    """Like test_data.split_config, for MNIST through TFDS (no IDX directory)."""
    return data_config(**{**dict(source="mnist", validation_size=50, labels_per_class=2,
                                 pixel_std_threshold=0.0), **overrides})


@pytest.fixture(autouse=True)
def no_idx_dir(monkeypatch):
    monkeypatch.delenv(sources.DATA_DIR_ENV, raising=False)  # else load_raw reads IDX files


def test_mnist_through_mocked_tfds():
    # mock_data fakes tfds.load with random examples of MNIST's real features, offline.
    with tfds.testing.mock_data(num_examples=200):  # deterministic random examples
        raw = data.load_raw(tfds_config())
    for x, y in ((raw.train_x, raw.train_y), (raw.test_x, raw.test_y)):
        assert x.shape == (200, 28, 28) and x.dtype == np.float32
        assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.5
        assert y.shape == (200,) and y.dtype == np.int64 and set(y) <= set(range(10))
    assert raw.class_names == [str(i) for i in range(10)]
    split = data.make_split(raw, tfds_config(), seed=0)
    assert split.x_labelled.shape == (10, 784) and split.x_val.shape == (50, 784)
    assert len(split.x_unlabelled) == 200 - 50 - 10 and split.num_slots == 15
    np.testing.assert_array_equal(np.unique(split.y_labelled), [0, 1, 2, 8, 9])


def test_offline_download_failure_is_explained(monkeypatch, tmp_path):
    """The real tfds.load on an empty data_dir, with sockets refused: no traffic leaves."""
    def no_network(*args, **kwargs):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    # TFDS's urllib3 retries would back off for minutes before giving up
    monkeypatch.setattr("tensorflow_datasets.core.download.downloader.MAX_RETRIES", 0)
    with pytest.raises(data.DataError) as e:
        data.load_raw(tfds_config(tfds_dir=str(tmp_path)))
    message = str(e.value)
    # requests' ConnectionError, not ModuleNotFoundError: TFDS's importlib_resources is there
    assert isinstance(e.value.__cause__, requests.ConnectionError), message
    assert f"'mnist' is not in {tmp_path} and could not be downloaded (ConnectionError:" in message
    assert "config.data.dir or $GMDGM_DATA_DIR" in message and "\n" not in message


# four tiny arrays as a loader returns them: train_x, train_y, test_x, test_y
FOUR = (np.zeros((4, 2, 2), np.uint8), np.arange(4) % 2, np.zeros((2, 2, 2), np.uint8),
        np.arange(2))


def raising(exception):
    def load(*args, **kwargs):
        raise exception
    return load


@pytest.mark.parametrize("exception, expected", [
    # (a) a dependency TFDS imports only when it loads a dataset
    (ModuleNotFoundError("No module named 'importlib_resources'", name="importlib_resources"),
     "cannot load 'mnist': ModuleNotFoundError: No module named 'importlib_resources' (a module "
     "it needs is missing; `pip install -e .` installs"),
    # (b) an HTTP error status, e.g. from a proxy that blocks the download
    (tfds.download.DownloadError("Failed to get url https://x/t10k-images-idx3-ubyte.gz. "
                                 "HTTP code: 403."),
     "'mnist' is not in /no/tfds and could not be downloaded (DownloadError: Failed to get url "
     "https://x/t10k-images-idx3-ubyte.gz. HTTP code: 403.); with no network, set "
     "config.data.dir or $GMDGM_DATA_DIR"),
    # (c) anything else: the type and the first line only
    (ValueError("corrupted record at 12\n\t [[{{node IteratorGetNext}}]]"),
     "could not load TFDS dataset 'mnist': ValueError: corrupted record at 12"),
    (RuntimeError(), "could not load TFDS dataset 'mnist': RuntimeError"),
])
def test_load_errors_name_the_cause(monkeypatch, exception, expected):
    monkeypatch.setattr(tfds, "load", raising(exception))
    with pytest.raises(data.DataError) as e:
        data.load_raw(tfds_config(tfds_dir="/no/tfds"))
    assert expected in str(e.value) and "\n" not in str(e.value)
    assert e.value.__cause__ is exception


@pytest.mark.parametrize("source, hint", [
    ("mnist", "with no network, set config.data.dir or $GMDGM_DATA_DIR to a directory with"),
    ("fashion_mnist", "with no network, set config.data.dir to a directory with the IDX"),
    ("tfds:kmnist", "with no network, set config.data.tfds_dir to a TFDS data directory"),
])
def test_a_failed_download_names_what_the_source_reads_instead(monkeypatch, source, hint):
    monkeypatch.setattr(tfds, "load", raising(tfds.download.DownloadError("HTTP code: 403.")))
    with pytest.raises(data.DataError, match="could not be downloaded") as e:
        data.load_raw(tfds_config(source=source, tfds_dir="/no/tfds"))
    assert hint in str(e.value)


def test_the_data_dir_variable_is_an_mnist_folder_read_for_mnist_alone(monkeypatch, tmp_path):
    """Fashion-MNIST's IDX files have MNIST's names: reading $GMDGM_DATA_DIR for it would
    train on digits labelled as clothes. An explicit data.tfds_dir wins over the variable."""
    monkeypatch.setenv(sources.DATA_DIR_ENV, str(tmp_path))
    read = []
    monkeypatch.setattr(sources, "load_idx_dir", lambda d: read.append(("idx", d)) or FOUR)
    monkeypatch.setattr(sources, "load_tfds", lambda name, *a, **k: read.append(
        ("tfds", name)) or (FOUR, None))
    for source, tfds_dir in (("mnist", ""), ("fashion_mnist", ""), ("mnist", "/t")):
        sources.load_raw(tfds_config(source=source, tfds_dir=tfds_dir))
    sources.load_raw(tfds_config(source="fashion_mnist", dir="/f"))
    assert read == [("idx", str(tmp_path)), ("tfds", "fashion_mnist"), ("tfds", "mnist"),
                    ("idx", "/f")]


# ------------------------------------------------------------------ tfds:<name>, any dataset


def test_any_tfds_image_dataset_by_name():
    # kmnist: 10 classes with names from its ClassLabel, not the digits' names
    with tfds.testing.mock_data(num_examples=60):
        raw = sources.load_raw(tfds_config(source="tfds:kmnist"))
    assert raw.train_x.shape == (60, 28, 28) and raw.train_x.dtype == np.float32
    assert len(raw.class_names) == 10 and raw.class_names != [str(i) for i in range(10)]


@pytest.mark.parametrize("source, message", [
    ("tfds:imdb_reviews", "'imdb_reviews' is not image classification"),
    ("tfds:no_such_dataset_xyz", "no TFDS dataset 'no_such_dataset_xyz'"),
])
def test_tfds_dataset_that_cannot_serve_is_refused(source, message):
    with tfds.testing.mock_data(num_examples=10):
        with pytest.raises(data.DataError, match=message) as e:
            sources.load_raw(tfds_config(source=source))
    assert "\n" not in str(e.value)


def test_colour_tfds_dataset_needs_to_grayscale():
    with tfds.testing.mock_data(num_examples=20):
        with pytest.raises(data.DataError, match=r"colour images \(32, 32, 3\).*data.to_grayscale=True"):
            sources.load_raw(tfds_config(source="tfds:cifar10"))
        raw = sources.load_raw(tfds_config(source="tfds:cifar10", to_grayscale=True))
    assert raw.train_x.shape == (20, 32, 32) and 0 <= raw.train_x.min() <= raw.train_x.max() <= 1
    assert len(raw.class_names) == 10


# ----------------------------------------------------------------------- npz:<path>


def write_npz(path, n=40, size=6, num_classes=4, **replace):
    rng = np.random.RandomState(0)
    arrays = dict(x_train=rng.randint(0, 256, (n, size, size)).astype(np.uint8),
                  y_train=np.arange(n) % num_classes,
                  x_test=rng.randint(0, 256, (n // 2, size, size)).astype(np.uint8),
                  y_test=np.arange(n // 2) % num_classes)
    arrays.update(replace)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return str(path)


def npz_config(path, **overrides):
    return tfds_config(**{**dict(source=f"npz:{path}", validation_size=8,
                                 labelled_classes=(0, 1), labels_per_class=3,
                                 num_extra_slots=2, unlabelled_batch_size=8), **overrides})


def test_npz_source_takes_its_class_count_from_the_data(tmp_path):
    raw = sources.load_raw(npz_config(write_npz(tmp_path / "d.npz")))
    assert raw.train_x.shape == (40, 6, 6) and raw.train_x.dtype == np.float32
    assert raw.train_x.max() <= 1.0 and raw.class_names == ["0", "1", "2", "3"]
    split = data.make_split(raw, npz_config(tmp_path / "d.npz"), seed=0)
    assert split.num_classes == 4 and split.num_slots == 6  # 4 classes + 2 extra slots
    # paper rule: labelled slots 1/4; the other half shared by 2 masked + 2 extra slots
    np.testing.assert_allclose(split.prior, [0.25, 0.25, 0.125, 0.125, 0.125, 0.125])
    assert set(split.y_labelled) == {0, 1} and len(split.y_labelled) == 6


def test_npz_float_channel_images_and_class_names(tmp_path):
    rng = np.random.RandomState(1)
    path = write_npz(tmp_path / "d.npz", x_train=rng.rand(40, 6, 6, 1),
                     x_test=rng.rand(20, 6, 6, 1).astype(np.float32),
                     class_names=np.array(["ant", "bee", "cat", "dog", "eel"]))
    raw = sources.load_raw(npz_config(path))
    assert raw.train_x.shape == (40, 6, 6) and raw.class_names[-1] == "eel"
    np.testing.assert_allclose(raw.train_x, rng.__class__(1).rand(40, 6, 6), rtol=1e-6)


def test_npz_on_a_tf_filesystem():
    """Through tf.io.gfile: gs:// and other TF filesystems, here TF's in-memory ram://."""
    import io  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    buffer = io.BytesIO()
    write_npz(buffer)
    with tf.io.gfile.GFile("ram://npz_source/d.npz", "wb") as f:
        f.write(buffer.getvalue())
    raw = sources.load_raw(npz_config("ram://npz_source/d.npz"))
    assert raw.train_x.shape == (40, 6, 6)


@pytest.mark.parametrize("replace, message", [
    (dict(y_test=None), "lacks y_test"),
    (dict(y_train=np.arange(39) % 4), "x_train holds 40 images but y_train 39 labels"),
    (dict(x_test=np.zeros((20, 7, 7), np.uint8)), r"train images are \(6, 6\) but test"),
    (dict(x_train=np.zeros((40, 36), np.uint8)), r"x_train must be images .* got shape \(40, 36\)"),
    (dict(x_train=np.full((40, 6, 6), 2.0)), r"float images must be finite and in \[0, 1\]"),
    (dict(x_train=np.full((40, 6, 6), np.nan)), r"float images must be finite"),
    (dict(x_train=np.zeros((40, 6, 6), np.int32)), "images must be uint8 or float, got int32"),
    (dict(y_train=np.arange(40) % 4 - 1), "y_train has label -1"),
    (dict(y_train=np.arange(40) % 4 + 0.5), "y_train must hold integer class labels"),
    (dict(y_test=np.arange(20) % 4 + 3, class_names=np.array(list("abcd"))),
     "y_test has label 6, outside the 4 classes 0..3"),
    (dict(y_train=np.zeros(40, int), y_test=np.zeros(20, int)), "needs at least 2 classes"),
    (dict(x_train=np.zeros((40, 6, 6, 3), np.uint8)), "colour images"),
])
def test_npz_mistakes_get_one_line(tmp_path, replace, message):
    path = write_npz(tmp_path / "d.npz", **replace)
    with pytest.raises(data.DataError, match=message) as e:
        sources.load_raw(npz_config(path))
    assert "\n" not in str(e.value)


def test_npz_that_is_not_an_npz(tmp_path):
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(data.DataError, match="cannot read .*bad.npz as a NumPy .npz"):
        sources.load_raw(npz_config(tmp_path / "bad.npz"))
    with pytest.raises(data.DataError, match="npz file not found"):
        sources.load_raw(npz_config(tmp_path / "missing.npz"))


def test_labelled_classes_must_exist_in_the_data(tmp_path):
    config = npz_config(write_npz(tmp_path / "d.npz"), labelled_classes=(0, 5))
    with pytest.raises(data.DataError, match=r"labelled_classes \[5\] are not classes"):
        data.load_split(config, seed=0)
