"""The training loop's jobs as Keras callbacks, so `fit` runs once over all epochs and a
user can add callbacks of their own (`train_and_evaluate(..., callbacks=[...])`).

One `Loop` object owns where training stands (epoch, step, the best validation result,
the checkpoint); `LoopCounter`, first in the list, advances it, and every callback that
needs the position reads it from there, never from another callback. `loop_callbacks`
gives the list in its one order. At the end of an epoch, each seeing the logs the earlier
ones added: LearningRate (the epoch's rate), EpochTimer (seconds), Validation (val_*
metrics, best epoch), HistoryWriter (history.jsonl), Checkpointing (the epoch's checkpoint,
then the best weights), TensorBoard, Progress (the log line), WallClockBudget,
PreemptionGuard. The history line goes first: a resume drops the lines of epochs its
checkpoint does not hold, but nothing would write again a line missing from an epoch it does.
Per step: NonFiniteGuard (stop on NaN/inf, naming the terms), Checkpointing (every N
steps), PreemptionGuard (SIGTERM/SIGINT: checkpoint at this step boundary, then stop).
"""

import signal
import threading
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from gmdgm_tf import evaluation, rundir


class NonFiniteLossError(RuntimeError):
    """The loss went NaN/inf; the last good checkpoint is kept as it was."""


def validation_report(model, split):
    """Validation accuracy with the map built on validation itself (for selection)."""
    return evaluation.self_mapped_report(split.y_val, model.predict_slots(split.x_val),
                                         split.num_classes, split.num_slots,
                                         split.labelled_classes)


class Interrupted(RuntimeError):
    """Training stopped on SIGTERM or SIGINT after checkpointing; rerunning resumes it.
    `exit_code` is 128 + the signal's number, as a shell reports a signalled process."""

    def __init__(self, signum, epoch, step):
        self.signum, self.exit_code = signum, 128 + signum
        super().__init__(f"interrupted by {signal.Signals(signum).name} at epoch {epoch + 1} "
                         f"step {step}; checkpoint saved, rerun the same command to resume")


class StopSignals:
    """While entered (in the main thread): SIGTERM and SIGINT only set `received`, so that
    training can stop at a step boundary with a checkpoint. A second signal acts at once,
    as the previous handler would (KeyboardInterrupt for SIGINT, exit for SIGTERM)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received, self.previous = None, {}

    def _handle(self, signum, frame):
        if self.received is None:
            self.received = signum
            logging.warning("%s received: stopping at the next step boundary with a "
                            "checkpoint (send it again to stop at once)",
                            signal.Signals(signum).name)
            return
        previous = self.previous.get(signum)
        if callable(previous):
            previous(signum, frame)
        raise SystemExit(128 + signum)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}


class Loop:
    """Where training stands, for every callback: `epoch` (0-based, the run's), `step`
    (steps done in that epoch, a resumed epoch's earlier ones included), the best
    validation result so far, and the checkpoint (`state`, a checkpoints.TrainState, which
    saves epoch, step and the best result with the weights).

    start_epoch/start_step: where this run resumes (a resumed epoch may begin at a step
    > 0, and then gets its trackers' sums back so its history covers every step).
    steps_per_epoch: the epoch's length (None: unknown, every step counts as mid-epoch)."""

    def __init__(self, state, start_epoch=0, start_step=0, steps_per_epoch=None):
        self.state, self.start_epoch, self.start_step = state, start_epoch, start_step
        self.epoch, self.step = start_epoch, start_step
        self.steps_per_epoch = steps_per_epoch

    @property
    def mid_epoch(self):
        """Whether steps of this epoch remain. A checkpoint is written mid-epoch only then:
        one at the last step would resume into an epoch with no steps left, before its
        validation and history row (the epoch-end checkpoint follows that step anyway)."""
        return self.steps_per_epoch is None or self.step < self.steps_per_epoch

    @property
    def best_accuracy(self):
        return float(self.state.best_accuracy.numpy())

    @property
    def best_epoch(self):
        """The 1-based epoch of the best validation accuracy so far (0: none yet)."""
        return int(self.state.best_epoch.numpy())

    def forget_best(self):
        """No best epoch yet: the next epoch's result becomes the best (its weights lost)."""
        self.state.best_accuracy.assign(-1.0)
        self.state.best_epoch.assign(0)

    def improves(self, accuracy):
        """Records the ending epoch's validation accuracy -> whether it is the best yet."""
        if accuracy <= self.best_accuracy:
            return False
        self.state.best_accuracy.assign(accuracy)
        self.state.best_epoch.assign(self.epoch + 1)
        return True

    def save(self):
        """A checkpoint of where the loop stands now (mid-epoch: at this step)."""
        self.state.save(self.epoch, self.step)


class LoopCounter(keras.callbacks.Callback):
    """Advances the Loop; first in the callback list, so that the others see this step's
    and this epoch's position."""

    def __init__(self, loop):
        super().__init__()
        self.loop = loop

    def on_epoch_begin(self, epoch, logs=None):
        loop = self.loop
        loop.epoch = epoch
        resumed = epoch == loop.start_epoch and loop.start_step
        loop.step = loop.start_step if resumed else 0
        if resumed:
            loop.state.restore_trackers()

    def on_train_batch_end(self, batch, logs=None):
        self.loop.step += 1


class PreemptionGuard(keras.callbacks.Callback):
    """Stops training with Interrupted once a StopSignals has received a signal: after a
    checkpoint at this step (mid-epoch) or after the epoch's (at its last step and at its
    end, so it goes after Checkpointing)."""

    def __init__(self, signals, loop):
        super().__init__()
        self.signals, self.loop = signals, loop

    def on_train_batch_end(self, batch, logs=None):
        if self.signals.received is not None and self.loop.mid_epoch:
            self.loop.save()
            raise Interrupted(self.signals.received, self.loop.epoch, self.loop.step)

    def on_epoch_end(self, epoch, logs=None):
        if self.signals.received is not None:
            raise Interrupted(self.signals.received, epoch, self.loop.step)


class NonFiniteGuard(keras.callbacks.Callback):
    """Raises NonFiniteLossError at the first step whose logged terms are not finite
    (Keras' TerminateOnNaN only stops, and names nothing)."""

    def __init__(self, loop):
        super().__init__()
        self.loop = loop

    def on_train_batch_end(self, batch, logs=None):
        bad = {k: float(v) for k, v in (logs or {}).items() if not np.isfinite(v)}
        if bad:
            raise NonFiniteLossError(
                f"non-finite loss at epoch {self.loop.epoch + 1} step {self.loop.step}: "
                + ", ".join(f"{k}={v}" for k, v in sorted(bad.items()))
                + "; the last good checkpoint is kept (lower the learning rate?)")


class EpochTimer(keras.callbacks.Callback):
    """logs['seconds']: the epoch's wall-clock training time (before validation) in this
    process. An epoch resumed mid-way counts from the resume, and time a paused process
    spends stopped counts, so summaries quote the median over epochs."""

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.time()  # pylint: disable=attribute-defined-outside-init

    def on_epoch_end(self, epoch, logs=None):
        logs["seconds"] = round(time.time() - self.t0, 2)


class LearningRate(keras.callbacks.Callback):
    """Sets Adam's rate at each epoch's start: `learning_rate` for epochs 1..decay_epoch,
    `learning_rate * decay_factor` after them (decay_epoch 0: never). The epoch is the
    run's, not the fit call's, so resumed and extended runs follow the same schedule.
    logs['learning_rate']: the rate the epoch trained at."""

    def __init__(self, learning_rate, decay_epoch, decay_factor):
        super().__init__()
        self.base, self.decay_epoch, self.factor = learning_rate, decay_epoch, decay_factor

    def rate(self, epoch):
        """The rate of 0-based epoch `epoch`."""
        decayed = self.decay_epoch and epoch >= self.decay_epoch
        return self.base * self.factor if decayed else self.base

    def on_epoch_begin(self, epoch, logs=None):
        self.model.optimizer.learning_rate = self.rate(epoch)

    def on_epoch_end(self, epoch, logs=None):
        logs["learning_rate"] = self.rate(epoch)


class Validation(keras.callbacks.Callback):
    """Adds val_* metrics (map built on validation) and records the best epoch in the loop
    (Checkpointing writes its weights).

    Also records the test split's numbers that the optimistic paper_selection protocol
    needs (evaluation.paper_selection_logs: test_paper_*); they
    are never read for selection here."""

    def __init__(self, split, loop):
        super().__init__()
        self.split, self.loop = split, loop

    def on_epoch_end(self, epoch, logs=None):
        report = validation_report(self.model, self.split)
        logs.update({f"val_{k}": v for k, v in report.items() if k != "confusion_matrix"})
        split = self.split
        logs.update(evaluation.paper_selection_logs(
            split.y_test, self.model.predict_slots(split.x_test), num_classes=split.num_classes,
            num_slots=split.num_slots, labelled_classes=split.labelled_classes))
        self.loop.improves(report["accuracy"])


class Checkpointing(keras.callbacks.Callback):
    """Saves the loop's checkpoint every `every_steps` steps (mid-epoch only) and at the end
    of every epoch, then, if the epoch is the best yet, its weights (rundir.BEST_WEIGHTS).
    In that order a crash between the two leaves a checkpoint that holds the best weights
    (experiment.fit writes them again from it on resume), never a best-weights file of an
    epoch the checkpoint does not know."""

    def __init__(self, loop, every_steps, run):
        super().__init__()
        self.loop, self.every_steps, self.run = loop, every_steps, run

    def on_train_batch_end(self, batch, logs=None):
        if self.every_steps and self.loop.step % self.every_steps == 0 and self.loop.mid_epoch:
            self.loop.save()

    def on_epoch_end(self, epoch, logs=None):
        self.loop.state.save(epoch + 1, 0)
        if self.loop.best_epoch == epoch + 1:
            self.run.save_weights(self.model, rundir.BEST_WEIGHTS)


class HistoryWriter(keras.callbacks.Callback):
    """Appends {"epoch", "seconds", training terms, val_*} to history.jsonl."""

    def __init__(self, run):
        super().__init__()
        self.run = run

    def on_epoch_end(self, epoch, logs=None):
        record = {"epoch": epoch + 1}
        for k, v in logs.items():
            record[k] = v if isinstance(v, (int, str)) or v is None else float(v)
        self.run.append_history(record)


class TensorBoard(keras.callbacks.Callback):
    """Every epoch's numbers as TensorBoard scalars, grouped as train/* and val/*, and every
    `sample_grid_every` epochs (0: never) an image samples/decoded_by_slot: one row per
    class slot, 8 images decoded from z ~ p(z|y=slot) (what each slot is learning).

    The draws use stateless seeds of their own, so they never change the training run."""

    NUM_SAMPLES = 8

    def __init__(self, logdir, split=None, sample_grid_every=0):
        super().__init__()
        self.writer = tf.summary.create_file_writer(logdir)
        self.split, self.every = split, int(sample_grid_every)

    def on_epoch_end(self, epoch, logs=None):
        with self.writer.as_default(step=epoch + 1):
            for k, v in logs.items():
                if isinstance(v, (float, np.floating)) and k != "seconds":
                    group = next((g for g in ("val", "test") if k.startswith(g + "_")), None)
                    name = f"{group}/{k[len(group) + 1:]}" if group else f"train/{k}"
                    tf.summary.scalar(name, float(v))
            if self.split is not None and self.every and (epoch + 1) % self.every == 0:
                tf.summary.image("samples/decoded_by_slot", self.sample_grid()[None])
        self.writer.flush()

    def sample_grid(self):
        """-> uint8 [rows, columns, 3]: a tile row per slot (plots.tile_rows)."""
        from gmdgm_tf import data, plots  # pylint: disable=import-outside-toplevel  # matplotlib
        split = self.split
        rows = [data.unfilter(np.asarray(self.model.sample(slot, self.NUM_SAMPLES, seed=(7, slot)),
                                         np.float32), split.pixel_mask, split.image_shape)
                for slot in range(split.num_slots)]
        mosaic = plots.tile_rows(rows, self.NUM_SAMPLES, split.image_shape)
        return (mosaic * 255).round().astype(np.uint8)


class Progress(keras.callbacks.Callback):
    """One log line per epoch: epoch k/N, seconds, loss, validation accuracy, the best so
    far and an ETA from the mean wall time per epoch of this process."""

    def __init__(self, loop, epochs):
        super().__init__()
        self.loop, self.epochs = loop, epochs
        self.t0, self.done = None, 0

    def on_epoch_begin(self, epoch, logs=None):
        if self.t0 is None:
            self.t0 = time.time()

    def on_epoch_end(self, epoch, logs=None):
        self.done += 1
        eta = (time.time() - self.t0) / self.done * (self.epochs - epoch - 1)
        logging.info("epoch %d/%d (%.1fs): loss %.2f, validation accuracy %.4f (best %.4f at "
                     "epoch %d), ETA %s", epoch + 1, self.epochs, logs.get("seconds", 0.0),
                     logs.get("loss", float("nan")), logs.get("val_accuracy", float("nan")),
                     self.loop.best_accuracy, self.loop.best_epoch,
                     time.strftime("%H:%M:%S", time.gmtime(eta)))


class WallClockBudget(keras.callbacks.Callback):
    """Stops training at the end of the first epoch past `minutes` (0: no budget)."""

    def __init__(self, minutes):
        super().__init__()
        self.deadline = time.time() + 60 * minutes if minutes else None

    def on_epoch_end(self, epoch, logs=None):
        if self.deadline and time.time() > self.deadline:
            logging.info("wall-clock budget reached after epoch %d", epoch + 1)
            self.model.stop_training = True


def loop_callbacks(loop, config, split, run, signals, tensorboard, extra=()):
    """The package's callbacks in their one order (module docstring), then `extra`.

    tensorboard: the run's TensorBoard callback (one writer for all of a run's fits)."""
    return [LoopCounter(loop),
            LearningRate(config.optimizer.learning_rate, config.optimizer.decay_epoch,
                         config.optimizer.decay_factor),
            NonFiniteGuard(loop), EpochTimer(), Validation(split, loop),
            HistoryWriter(run), Checkpointing(loop, config.train.checkpoint_every_steps, run),
            tensorboard, Progress(loop, config.train.epochs),
            WallClockBudget(config.train.max_minutes), PreemptionGuard(signals, loop), *extra]
