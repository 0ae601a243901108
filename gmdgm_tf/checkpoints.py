"""Full training state as tf.train checkpoints, keyed by stable variable paths.

A checkpoint holds every model variable (weights, the learnable p(z|y), the noise RNG's
state), every optimizer variable (Adam's step, learning rate, slots), the metric trackers
(so a resumed epoch's history averages all of its steps) and where training stands:
epoch, step within it, best validation accuracy and its epoch.

Keys are the variables' paths inside the model ("q_y_given_x/hidden_0/kernel"), not
their creation order: adding a weight does not rename the others, and two same-shaped
weights cannot swap. An optimizer slot is keyed by its variable's key and the slot name.
A checkpoint whose keys do not match the model (an older format, another architecture)
is refused with a one-line error rather than half-restored. An unreadable newest
checkpoint (truncated, overwritten bytes, a garbage `checkpoint` state file) falls back
to the newest readable one, with a warning.
"""

import os

import numpy as np
import tensorflow as tf
from absl import logging

from gmdgm_tf import rundir

FORMAT = 2  # 1: creation-order keys (v0000, ...), refused


def _not_saver_chatter(record):
    """TF's checkpoint writer logs "Sharding callback duration: N microseconds" at INFO on
    every save (through absl); that line says nothing to a user, so it is dropped."""
    return "Sharding callback duration" not in record.getMessage()


logging.get_absl_logger().addFilter(_not_saver_chatter)


class CheckpointError(ValueError):
    """A checkpoint that cannot be restored into this model."""


def _strip(path, prefix):
    return path[len(prefix) + 1:] if path.startswith(prefix + "/") else path


def model_variables(model):
    """{stable key: variable} for every model variable (Keras names the top-level model
    'gmdgm', 'gmdgm_1', ... per process, so that prefix is dropped)."""
    keys = {}
    for variable in model.variables:
        if variable is model.seed_generator.state:
            key = "noise_rng/state"
        else:
            key = _strip(variable.path, model.name)
        if key in keys:
            raise CheckpointError(f"two model variables share the key {key!r}")
        keys[key] = variable
    return keys


def optimizer_variables(optimizer, model_keys):
    """{stable key: variable} for the optimizer: its own counters by name, each slot as
    '<model key>/<slot>' (Keras names a slot '<variable path with _>_<slot>')."""
    by_name = {v.name: v for v in optimizer.variables}
    keys = {}
    for key, variable in model_keys.items():
        if not variable.trainable:
            continue
        stem = variable.path.replace("/", "_")
        for name in list(by_name):
            if name.startswith(stem + "_"):
                keys[f"{key}/{name[len(stem) + 1:]}"] = by_name.pop(name)
    for name in list(by_name):
        keys[f"optimizer/{name}"] = by_name.pop(name)
    return keys


class TrainState:
    """Everything a resumed run needs, in tf.train.Checkpoint form. CheckpointManager
    writes the new files before pointing at them, so a crash while saving leaves the
    previous checkpoint usable."""

    def __init__(self, model, directory, keep):
        self.model = model
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.best_accuracy = tf.Variable(-1.0, dtype=tf.float64, trainable=False)
        self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.format = tf.Variable(FORMAT, dtype=tf.int64, trainable=False)
        model_keys = model_variables(model)
        trackers = {f"{name}/{v.name}": v for name, tracker in model.trackers.items()
                    for v in tracker.variables}
        # Keras 3 layers are only partly visible to tf.train's object graph, so every
        # variable is named explicitly.
        checkpoint = tf.train.Checkpoint(
            model=model_keys, optimizer=optimizer_variables(model.optimizer, model_keys),
            trackers=trackers, epoch=self.epoch, step=self.step,
            best_accuracy=self.best_accuracy, best_epoch=self.best_epoch, format=self.format)
        self.directory = directory
        self.manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=keep)
        self.tracker_values = None
        self.unreadable = 0  # newer checkpoints that `restore` found unreadable and skipped

    def saved(self):
        """Checkpoint prefixes in the directory, newest first (rundir.checkpoint_prefixes)."""
        return rundir.checkpoint_prefixes(self.directory)

    def restore(self):
        """-> (epoch, step within it) to continue from; (0, 0) for a new run.

        Tries the newest checkpoint first and falls back to older ones that are readable;
        raises CheckpointError when none is, or when they do not match the model. The
        trackers' saved sums are kept in `tracker_values` for the resumed epoch (fit
        resets the trackers when an epoch begins; see callbacks.Checkpointing)."""
        candidates = self.saved()
        if not candidates:
            return 0, 0
        for i, path in enumerate(candidates):
            try:
                self.manager.checkpoint.restore(path).assert_consumed()
                break
            except AssertionError as e:
                raise CheckpointError(
                    f"{path} does not match this model (written by an older gmdgm_tf or "
                    f"another architecture: {str(e).splitlines()[0][:200]}); start over "
                    "with --fresh") from e
            except (tf.errors.OpError, IndexError, ValueError, OSError) as e:
                reason = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
                if i == len(candidates) - 1:
                    raise CheckpointError(
                        f"no readable checkpoint in {self.directory} (the oldest, {path}: "
                        f"{reason}); start over with --fresh") from e
                logging.warning("checkpoint %s is unreadable (%s); falling back to %s",
                                path, reason, candidates[i + 1])
        logging.info("resuming from %s", path)
        self.unreadable = i
        self.tracker_values = {v.path: v.numpy() for t in self.model.trackers.values()
                               for v in t.variables}
        return int(self.epoch.numpy()), int(self.step.numpy())

    def start_from(self, directory):
        """Restores the newest checkpoint of another run (a restart candidate's checkpoints
        directory) into this model and saves it as this run's own, where it stands."""
        source = TrainState(self.model, directory, keep=1)
        if not source.saved():
            raise CheckpointError(f"no checkpoint in {directory} to start from")
        epoch, step = source.restore()
        self.best_accuracy.assign(source.best_accuracy)
        self.best_epoch.assign(source.best_epoch)
        self.save(epoch, step)

    def restore_trackers(self):
        """Puts the restored trackers' sums back (once), after fit has reset them."""
        if self.tracker_values is None:
            return
        for tracker in self.model.trackers.values():
            for v in tracker.variables:
                v.assign(np.asarray(self.tracker_values[v.path], v.dtype))
        self.tracker_values = None

    def save(self, epoch, step):
        """Writes a checkpoint; a failed write (full disk) is one rundir.WriteError line and
        leaves no partial checkpoint behind (the previous ones are untouched)."""
        self.epoch.assign(epoch)
        self.step.assign(step)
        # weights + Adam's two slots, with room to spare
        rundir.check_free_space(self.directory, 4 * rundir.weights_bytes(self.model))
        before = set(tf.io.gfile.glob(os.path.join(self.directory, "ckpt-*")))
        try:
            self.manager.save()
        except (OSError, tf.errors.OpError):
            new = set(tf.io.gfile.glob(os.path.join(self.directory, "ckpt-*"))) - before
            with rundir.writing(f"a checkpoint in {self.directory}", *sorted(new),
                                kept="the last good checkpoint is kept"):
                raise
