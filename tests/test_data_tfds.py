"""The TensorFlow Datasets source (data._load_tfds), offline: TFDS's own mock, no network."""

import socket

import ml_collections
import numpy as np
import pytest

from gmdgm_tf import data

tfds = pytest.importorskip("tensorflow_datasets")
requests = pytest.importorskip("requests")  # a TFDS dependency


def tfds_config(**overrides):
    """Like test_data.split_config, for MNIST through TFDS (no IDX directory)."""
    cfg = ml_collections.ConfigDict(dict(
        source="mnist", dir="", tfds_dir="", validation_size=50,
        labelled_classes=(0, 1, 2, 8, 9), labels_per_class=2, num_extra_slots=5, prior=None,
        pixel_std_threshold=0.0))
    cfg.update(overrides)
    return cfg


@pytest.fixture(autouse=True)
def no_idx_dir(monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)  # else load_raw reads IDX files


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
