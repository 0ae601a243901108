"""The run directory's contract: its file names, their formats, and how they are written.

A workdir holds one experiment:
  config.json        the resolved config; a resumed run must match it
                     (config.config_differences)
  checkpoints/       tf.train checkpoints: weights, Adam slots, RNG state, epoch/step
                     (checkpoints.py)
  history.jsonl      one JSON line per epoch: training terms + validation metrics
  best.weights.h5    the best epoch on validation accuracy (never the test set)
  model.weights.h5   weights of the selected model (train.select)
  metrics.json       final metrics, both protocols (evaluation.py)
  data_meta.json     what inference needs: DataMeta (pixel mask, image shape, classes, p(y))
  tensorboard/       scalars per epoch; figures at the end
  *.png              confusion.png, assignment.png, samples.png (train.figures)
  restarts/          train.restarts > 1: restart_K/, each candidate initialisation's own
                     run directory (these files, up to its train.restart_epochs)
  restarts.json      the choice among them: {"epochs", "candidates", "validation",
                     "seconds", "chosen"} (experiment.py)
The names themselves live in gmdgm_tf.filenames (TensorFlow-free, so the sweep tools
share them). JSON files and weights are written to a temporary name and renamed into
place, so a crash leaves the previous version. `load_run` turns a finished workdir back
into a model.
"""

import contextlib
import dataclasses
import datetime
import json
import os
import re
import shutil
import socket
from typing import Optional

import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging

from gmdgm_tf import config as config_lib
from gmdgm_tf import models, sources
from gmdgm_tf.machine import is_remote  # noqa: F401 (rundir.is_remote, as callers know it)
from gmdgm_tf.filenames import (  # noqa: F401 (re-exported: rundir.CONFIG etc.)
    BEST_WEIGHTS, CHECKPOINTS, CONFIG, DATA_META, FIGURES, HISTORY, LOCK, METRICS,
    MODEL_WEIGHTS, RESTARTS, RESTARTS_DIR, TENSORBOARD)

FINISHED = (CONFIG, DATA_META, METRICS, MODEL_WEIGHTS)  # what load_run needs
_RUN_FILES = (CONFIG, HISTORY, METRICS, MODEL_WEIGHTS, BEST_WEIGHTS, DATA_META,
              RESTARTS) + FIGURES
_RUN_DIRS = (CHECKPOINTS, TENSORBOARD, RESTARTS_DIR)


class RunDirError(ValueError):
    """A workdir that holds another experiment, or a damaged run file."""


class NotFinishedError(RunDirError, FileNotFoundError):
    """A workdir that holds no finished run (a FileNotFoundError too, as it was before)."""


class WriteError(RuntimeError):
    """A run file could not be written (disk full, quota, file-size limit); the temporary
    file is removed and what was written before is intact."""


@contextlib.contextmanager
def writing(path, *temporaries, kept="the previous version is kept"):
    """Turns a failed write of `path` into one WriteError line, removing `temporaries`."""
    try:
        yield
    except (OSError, tf.errors.OpError) as e:
        for tmp in temporaries:
            remove_quietly(tmp)
        reason = getattr(e, "message", None) or e.strerror or str(e)
        raise WriteError(f"could not write {path} ({reason.splitlines()[0][:200]}); "
                         f"{kept}; free space and rerun the same command") from e


def remove_quietly(path):
    """Removes a file or a directory tree (any TF filesystem) if it is there; a failure is
    ignored: for temporaries whose removal must not hide the error being raised."""
    try:
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        elif tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)
    except (OSError, tf.errors.OpError):
        pass


def check_free_space(directory, needed_bytes):
    """Refuses a local write that cannot fit (h5py has crashed the process on a full disk
    instead of raising), keeping 1 MiB to spare."""
    if is_remote(directory) or not os.path.isdir(directory):
        return
    free = shutil.disk_usage(directory).free
    if free < needed_bytes + 2 ** 20:
        raise WriteError(f"not enough free space in {directory} to write {needed_bytes / 2 ** 20:.1f}"
                         f" MiB ({free / 2 ** 20:.1f} MiB free); the previous files are kept; "
                         "free space and rerun the same command")


def write_atomic(path, content):
    """Writes str or bytes to a temporary file beside `path` (any TF filesystem), then
    renames it into place; a failed write is a WriteError and leaves the old file."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with writing(path, tmp):
        with tf.io.gfile.GFile(tmp, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
        tf.io.gfile.rename(tmp, path, overwrite=True)


def write_json_atomic(path, obj):
    write_atomic(path, json.dumps(obj, indent=1))


def read_json(path):
    """JSON file -> object; a damaged file is a one-line RunDirError naming it."""
    with tf.io.gfile.GFile(path, "r") as f:
        text = f.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise RunDirError(f"{path} is damaged ({e}); restore it or start over with --fresh") \
            from e


def restart_dir(index: int) -> str:
    """Where candidate initialisation `index` trains, inside the workdir."""
    return f"{RESTARTS_DIR}/restart_{index}"


def checkpoint_prefixes(directory) -> list:
    """The checkpoint prefixes in a checkpoints directory, newest first, from the files
    themselves (not the `checkpoint` state file, which a crash or a user may have damaged)."""
    found = []
    for path in tf.io.gfile.glob(os.path.join(directory, "ckpt-*.index")):
        number = re.search(r"ckpt-(\d+)\.index$", path)
        if number:
            found.append((int(number.group(1)), path[:-len(".index")]))
    return [path for _, path in sorted(found, reverse=True)]


@dataclasses.dataclass
class DataMeta:
    """What inference needs to know of the data: data_meta.json.

    pixel_mask [height * width] bool (the kept pixels); prior [num_slots] is p(y);
    uint8_divisor: the top of the source's raw pixel scale (255; 16 for digits), what the
    export divides integer images by."""
    source: str
    class_names: list
    image_shape: tuple
    pixel_mask: np.ndarray
    labelled_classes: tuple
    prior: np.ndarray
    uint8_divisor: float

    @property
    def dim(self) -> int:
        return int(np.sum(self.pixel_mask))

    @classmethod
    def from_split(cls, split, source):
        return cls(source, list(split.class_names), tuple(split.image_shape),
                   np.asarray(split.pixel_mask, bool), tuple(split.labelled_classes),
                   np.asarray(split.prior, np.float64), sources.uint8_divisor(source))

    def to_json(self):
        return {"source": self.source, "class_names": list(self.class_names),
                "image_shape": [int(s) for s in self.image_shape],
                "pixel_mask": np.asarray(self.pixel_mask, bool).tolist(),
                "labelled_classes": [int(c) for c in self.labelled_classes],
                "prior": np.asarray(self.prior, np.float64).tolist(),
                "uint8_divisor": float(self.uint8_divisor)}

    @classmethod
    def from_json(cls, d):
        # data_meta.json written before uint8_divisor was: its export used the same rule.
        divisor = d.get("uint8_divisor", sources.uint8_divisor(d["source"]))
        return cls(d["source"], list(d["class_names"]), tuple(d["image_shape"]),
                   np.asarray(d["pixel_mask"], bool), tuple(d["labelled_classes"]),
                   np.asarray(d["prior"], np.float64), float(divisor))


def refuse_empty(path, name="workdir"):
    """Refuses an empty directory argument (`--workdir=$UNSET`): it would mean the current
    directory, and --fresh would delete run files there."""
    if not isinstance(path, str) or not path.strip():
        raise RunDirError(f"{name} is empty (an unset shell variable?); give a directory")


def check_workdir(path):
    """Refuses, before any data is loaded, an empty workdir and a local workdir that cannot
    be written: one that is a file, lies under a file, or whose nearest existing directory
    is read-only."""
    refuse_empty(path)
    if is_remote(path):
        return
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        where = "is" if probe == os.path.abspath(path) else f"lies under {probe}, which is"
        raise RunDirError(f"workdir {path} {where} a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise RunDirError(f"workdir {path} cannot be written ({probe} is read-only)")


class RunDir:
    """One workdir: every path in it and every read and write of its files."""

    def __init__(self, path: str):
        self.path = path

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    @contextlib.contextmanager
    def lock(self):
        """Holds workdir/.lock while a training writes the workdir; a second training on it
        is refused naming the holder. flock: the kernel drops the lock when its process
        dies, even by kill -9, so a dead run never blocks the next. Object stores (gs://)
        have no locks: there the user keeps to one writer."""
        tf.io.gfile.makedirs(self.path)
        if is_remote(self.path):
            yield
            return
        import fcntl  # pylint: disable=import-outside-toplevel  # POSIX only
        fd = os.open(self.file(LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 300, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            raise RunDirError(f"workdir {self.path} is in use by another training "
                              f"({holder or 'unknown process'}); wait for it or use another "
                              "--workdir") from None
        os.ftruncate(fd, 0)
        since = datetime.datetime.now().isoformat(timespec="seconds")
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {since}".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def exists(self, name: str) -> bool:
        return tf.io.gfile.exists(self.file(name))

    def prepare(self, config, fresh=False):
        """Creates the workdir, or checks that the run in it is this experiment.

        fresh=True deletes this package's files from the workdir (nothing else) first.
        """
        new = json.loads(config.to_json())
        if fresh:
            for name in _RUN_FILES:
                if self.exists(name):
                    tf.io.gfile.remove(self.file(name))
            for name in _RUN_DIRS:
                if self.exists(name):
                    tf.io.gfile.rmtree(self.file(name))
        elif self.exists(CONFIG):
            diffs = config_lib.config_differences(read_json(self.file(CONFIG)), new)
            if diffs and self.has_progress():
                raise RunDirError(f"workdir {self.path} holds a different experiment ("
                                  + "; ".join(diffs) + "); use another --workdir or --fresh")
            if diffs:  # e.g. a run that failed before its first checkpoint: nothing to lose
                logging.warning("workdir %s holds no training yet; replacing its config (%s)",
                                self.path, "; ".join(diffs))
            trained = len(self.history())
            if trained > config.train.epochs:  # its best epoch may lie beyond the budget
                raise RunDirError(
                    f"workdir {self.path} has trained {trained} epochs, more than "
                    f"train.epochs={config.train.epochs}; use another --workdir or --fresh")
        elif self.has_progress():
            raise RunDirError(f"workdir {self.path} holds checkpoints or history but no "
                              f"{CONFIG}, so it cannot be checked to be this experiment; "
                              "restore the file, or use another --workdir or --fresh")
        tf.io.gfile.makedirs(self.path)
        write_json_atomic(self.file(CONFIG), new)

    def has_progress(self) -> bool:
        """True when a training has left checkpoints or history here."""
        return self.exists(HISTORY) or self.has_checkpoint()

    def has_checkpoint(self) -> bool:
        """True when checkpoints/ holds at least one checkpoint."""
        return bool(checkpoint_prefixes(self.file(CHECKPOINTS)))

    def copy_history(self, other: "RunDir"):
        """Takes `other`'s history and best weights as this run's (a restart candidate's, for
        the run that continues it; its checkpoint is carried over by checkpoints.py)."""
        if other.exists(BEST_WEIGHTS):
            with tf.io.gfile.GFile(other.file(BEST_WEIGHTS), "rb") as f:
                write_atomic(self.file(BEST_WEIGHTS), f.read())
        self.write_history(other.history())

    def read_config(self) -> ml_collections.ConfigDict:
        return ml_collections.ConfigDict(read_json(self.file(CONFIG)))

    # history.jsonl -----------------------------------------------------------------

    def history(self, upto_epoch: Optional[int] = None) -> list:
        """history.jsonl records (of epochs <= upto_epoch: later ones belong to lost work).

        A last line cut short by a crash mid-append is dropped with a warning; damage
        anywhere else is a RunDirError naming the file and line."""
        if not self.exists(HISTORY):
            return []
        with tf.io.gfile.GFile(self.file(HISTORY), "r") as f:
            lines = [line for line in f.read().splitlines() if line.strip()]
        records = []
        for i, line in enumerate(lines):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                if i == len(lines) - 1:
                    logging.warning("%s: dropping a cut-short last line", self.file(HISTORY))
                    break
                raise RunDirError(f"{self.file(HISTORY)} line {i + 1} is damaged ({e}); "
                                  "delete that line or start over with --fresh") from e
        return [r for r in records if upto_epoch is None or r["epoch"] <= upto_epoch]

    def write_history(self, records):
        """Replaces history.jsonl with `records` (atomically)."""
        tmp = f"{self.file(HISTORY)}.tmp-{os.getpid()}"
        with writing(self.file(HISTORY), tmp):
            with tf.io.gfile.GFile(tmp, "w") as f:
                f.write("".join(json.dumps(r) + "\n" for r in records))
            tf.io.gfile.rename(tmp, self.file(HISTORY), overwrite=True)

    def append_history(self, record):
        self.write_history(self.history() + [record])

    # metrics, data meta, weights ---------------------------------------------------

    def write_metrics(self, metrics):
        write_json_atomic(self.file(METRICS), metrics)

    def read_metrics(self):
        return read_json(self.file(METRICS))

    def write_data_meta(self, meta: DataMeta):
        write_json_atomic(self.file(DATA_META), meta.to_json())

    def read_data_meta(self) -> DataMeta:
        return DataMeta.from_json(read_json(self.file(DATA_META)))

    def save_weights(self, model, name):
        """model.save_weights to `name`, atomically (h5 needs a local file: staged there
        for other filesystems)."""
        local = None if is_remote(self.path) else self.path
        staging = os.path.join(local or _local_staging(), f"{name}.tmp-{os.getpid()}.weights.h5")
        check_free_space(os.path.dirname(staging), weights_bytes(model))
        with writing(self.file(name), staging):
            model.save_weights(staging)
            if local:
                os.replace(staging, self.file(name))
            else:
                tf.io.gfile.copy(staging, self.file(name), overwrite=True)
                os.remove(staging)

    def load_weights(self, model, name):
        if not is_remote(self.path):
            model.load_weights(self.file(name))
            return
        staging = os.path.join(_local_staging(), f"{name}.load-{os.getpid()}.weights.h5")
        tf.io.gfile.copy(self.file(name), staging, overwrite=True)
        try:
            model.load_weights(staging)
        finally:
            os.remove(staging)


def weights_bytes(model):
    """Bytes of the model's weights (what a weights file or a checkpoint copy holds)."""
    return int(sum(np.prod(v.shape) * np.dtype(v.dtype).itemsize for v in model.weights))


def _local_staging():
    import tempfile  # pylint: disable=import-outside-toplevel
    return tempfile.gettempdir()


@dataclasses.dataclass
class FinishedRun:
    """A finished run loaded back: the trained model (no objective: inference only), its
    config, data metadata and metrics."""
    model: models.DeepGenerativeModel
    config: ml_collections.ConfigDict
    meta: DataMeta
    metrics: dict


def load_run(workdir) -> FinishedRun:
    """A finished run's workdir -> FinishedRun with the selected weights loaded.

    Raises NotFinishedError (a FileNotFoundError) naming what is missing when the workdir
    holds no finished run, RunDirError for an empty workdir or a damaged file.
    A run being extended (rerun with a larger train.epochs) has the new budget in
    config.json from its start, while the weights and metrics stay the finished run's until
    the longer run ends: the config returned is the finished run's (train.epochs as its
    metrics record it), with a warning.
    """
    refuse_empty(workdir)
    run = RunDir(workdir)
    missing = [name for name in FINISHED if not run.exists(name)]
    if missing:
        raise NotFinishedError(f"{workdir} holds no finished run (missing {', '.join(missing)})")
    config, metrics = run.read_config(), run.read_metrics()
    asked = metrics.get("training", {}).get("epochs_asked")
    if asked is not None and asked != config.train.epochs:
        logging.warning("%s: config.json asks for %d epochs, an extension that has not "
                        "finished; loading the finished %d-epoch run", workdir,
                        config.train.epochs, asked)
        config.train.epochs = asked
    meta = run.read_data_meta()
    model = models.build_model(config.model, dim=meta.dim, prior=meta.prior,
                               precision=config.train.precision, seed=config.seed)
    run.load_weights(model, MODEL_WEIGHTS)
    return FinishedRun(model, config, meta, metrics)
