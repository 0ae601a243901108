"""callbacks.py: the Loop that every callback reads its position from, and their order."""

import math
import signal

import pytest
import tensorflow as tf

from gmdgm_tf import callbacks, rundir


class FakeState:
    """checkpoints.TrainState's surface that the loop uses, recording what it is asked."""

    def __init__(self):
        self.best_accuracy = tf.Variable(-1.0, dtype=tf.float64)
        self.best_epoch = tf.Variable(0, dtype=tf.int64)
        self.saves, self.restored = [], 0

    def save(self, epoch, step):
        self.saves.append((epoch, step))

    def restore_trackers(self):
        self.restored += 1


def test_a_resumed_epoch_counts_its_earlier_steps_for_every_callback():
    state = FakeState()
    loop = callbacks.Loop(state, start_epoch=2, start_step=5)
    counter = callbacks.LoopCounter(loop)
    checkpointing = callbacks.Checkpointing(loop, every_steps=7, run=None)
    guard = callbacks.NonFiniteGuard(loop)
    counter.on_epoch_begin(2)
    assert (loop.epoch, loop.step, state.restored) == (2, 5, 1)
    for batch in range(3):  # steps 6, 7, 8 of the run's epoch 3
        counter.on_train_batch_end(batch)
        checkpointing.on_train_batch_end(batch)
    assert state.saves == [(2, 7)]
    with pytest.raises(callbacks.NonFiniteLossError, match=r"at epoch 3 step 8: loss=nan"):
        guard.on_train_batch_end(2, {"loss": math.nan, "elbo_labelled": 1.0})
    checkpointing.on_epoch_end(2)
    counter.on_epoch_begin(3)  # the next epoch starts at step 0; trackers are not restored
    assert (loop.epoch, loop.step, state.restored, state.saves[-1]) == (3, 0, 1, (3, 0))


def test_no_mid_epoch_checkpoint_or_stop_at_an_epochs_last_step():
    """A checkpoint at the last step would resume into an epoch with no steps left; a
    signal there stops after the epoch's validation and checkpoint instead."""
    state, signals = FakeState(), callbacks.StopSignals()
    loop = callbacks.Loop(state, start_epoch=0, steps_per_epoch=4)
    counter, checkpointing = callbacks.LoopCounter(loop), callbacks.Checkpointing(loop, 2, run=None)
    guard = callbacks.PreemptionGuard(signals, loop)
    counter.on_epoch_begin(0)
    for batch in range(3):
        counter.on_train_batch_end(batch)
        checkpointing.on_train_batch_end(batch)
    signals.received = signal.SIGTERM
    counter.on_train_batch_end(3)
    checkpointing.on_train_batch_end(3)
    guard.on_train_batch_end(3)                     # the last step: no save, no stop
    assert state.saves == [(0, 2)]
    checkpointing.on_epoch_end(0)
    with pytest.raises(callbacks.Interrupted, match="SIGTERM at epoch 1 step 4;"):
        guard.on_epoch_end(0)
    assert state.saves == [(0, 2), (1, 0)]
    loop.step = 1                                   # mid-epoch: a checkpoint, then the stop
    with pytest.raises(callbacks.Interrupted, match="SIGTERM at epoch 1 step 1;"):
        guard.on_train_batch_end(0)
    assert state.saves[-1] == (0, 1)


def test_the_best_weights_are_written_after_the_epochs_checkpoint():
    events = []

    class Run:
        def save_weights(self, model, name):
            events.append(("weights", model, name))

    state = FakeState()
    state.save = lambda epoch, step: events.append(("checkpoint", epoch, step))
    loop = callbacks.Loop(state)
    checkpointing = callbacks.Checkpointing(loop, 0, Run())
    checkpointing.set_model("the model")
    loop.epoch = 0
    assert loop.improves(0.5)
    checkpointing.on_epoch_end(0)
    loop.epoch = 1
    assert not loop.improves(0.4)                   # not the best: no weights written
    checkpointing.on_epoch_end(1)
    assert events == [("checkpoint", 1, 0), ("weights", "the model", rundir.BEST_WEIGHTS),
                      ("checkpoint", 2, 0)]


def test_the_loop_keeps_the_best_validation_epoch():
    loop = callbacks.Loop(FakeState(), start_epoch=0)
    loop.epoch = 3
    assert loop.improves(0.5) and loop.best_epoch == 4 and loop.best_accuracy == 0.5
    loop.epoch = 4
    assert not loop.improves(0.5) and loop.best_epoch == 4


def test_the_loop_counter_runs_first_and_the_preemption_guard_after_checkpointing():
    from conftest import plain_digits  # pylint: disable=import-outside-toplevel
    config = plain_digits()
    extra = object()  # a user's callback: after the package's own
    listed = callbacks.loop_callbacks(callbacks.Loop(FakeState()), config, split=None,
                                      run=None, signals=callbacks.StopSignals(),
                                      tensorboard="tb", extra=[extra])
    kinds = [type(c).__name__ for c in listed]
    assert kinds[0] == "LoopCounter" and listed[-1] is extra
    assert kinds.index("Validation") < kinds.index("Checkpointing") < kinds.index(
        "PreemptionGuard")
    assert kinds.index("Validation") < kinds.index("HistoryWriter") < kinds.index("Progress")
    # the epoch's history line before its checkpoint (test_experiment: a stop in between)
    assert kinds.index("HistoryWriter") < kinds.index("Checkpointing")
