"""train_and_evaluate(config, workdir): data -> model -> fit(callbacks) -> evaluate -> save.

The config is validated and the data loaded before the workdir is touched, so a bad run
leaves nothing behind. `fit` runs once over all epochs; validation, best-epoch selection,
checkpoints, the NaN guard, history and TensorBoard are callbacks (callbacks.py), and a
caller may pass more. The files written are described in rundir.py.
"""

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from gmdgm_tf import callbacks as callbacks_lib
from gmdgm_tf import checkpoints, config as config_lib, data, distribute, evaluation
from gmdgm_tf import export, machine, models, plots, rundir


def build(config, split):
    """Validated config + split -> compiled model with every variable (optimizer slots too)
    created and its training objective set.

    Call it under `strategy.scope()` to distribute the model (weights, RNG state, metric
    trackers) and its optimizer.
    """
    model = models.build_model(config.model, dim=split.dim, prior=split.prior,
                               precision=config.train.precision, seed=config.seed)
    model.objective = models.objective(config.model, num_train=split.num_train,
                                       num_labelled=len(split.x_labelled))
    # Adam that clips the cross-replica gradient sum (plain Adam on one device).
    model.compile(optimizer=distribute.CrossReplicaAdam(config.optimizer.learning_rate,
                                                        clipvalue=config.optimizer.clipvalue),
                  jit_compile=config.train.jit_compile)
    model.optimizer.build(model.trainable_variables)
    return model


def training_dataset(split, config, first_epoch, end_epoch, first_step, steps):
    """The batches of epochs first_epoch .. end_epoch - 1, from step first_step of the
    first. Each epoch's order depends only on (seed, epoch), so a resumed run sees exactly
    the batches an uninterrupted one would."""
    def one_epoch(epoch):
        batches = data.epoch_dataset(split, config.data.labelled_batch_size,
                                     config.data.unlabelled_batch_size, config.seed, epoch)
        return (batches.repeat() if config.train.steps_per_epoch else batches).take(steps)
    # Made eagerly here: made first inside flat_map's trace, the cached tensors would be
    # that graph's, and the next pipeline (a resumed run's second fit) could not use them.
    split.training_tensors  # pylint: disable=pointless-statement
    epochs = tf.data.Dataset.range(first_epoch, end_epoch)
    return (epochs.flat_map(one_epoch).skip(first_step).prefetch(2)
            .with_options(data.pipeline_options()))


def fit(model, split, config, run, state, extra_callbacks=()):
    """Trains from where `state` stands to config.train.epochs (or the wall-clock budget);
    returns the steps per epoch.

    A fresh run, or one resumed at an epoch boundary, is one `fit` call. A run resumed in
    the middle of an epoch first finishes that epoch with a `fit` over its remaining steps
    (all of one fit's epochs have the same number of steps), then runs one `fit` for the
    rest.
    """
    start_epoch, start_step = state.restore()
    run.write_history(run.history(upto_epoch=start_epoch))  # later epochs were lost work
    steps = config.train.steps_per_epoch or data.steps_per_epoch(
        split, config.data.unlabelled_batch_size)
    epochs = config.train.epochs
    chunks = []  # (first epoch, end epoch, first step)
    if start_step and start_epoch < epochs:
        chunks.append((start_epoch, start_epoch + 1, start_step))
    first = start_epoch + (1 if start_step else 0)
    if first < epochs:
        chunks.append((first, epochs, 0))
    shared = [callbacks_lib.TensorBoard(run.file(rundir.TENSORBOARD), split,
                                        config.train.sample_grid_every),
              callbacks_lib.Progress(state, epochs),
              callbacks_lib.WallClockBudget(config.train.max_minutes)]
    with callbacks_lib.StopSignals() as signals:
        for begin, end, skip in chunks:
            checkpointing = callbacks_lib.Checkpointing(
                state, config.train.checkpoint_every_steps, begin, skip)
            callbacks = [callbacks_lib.NonFiniteGuard(skip), callbacks_lib.EpochTimer(),
                         callbacks_lib.Validation(split, run, state), checkpointing,
                         callbacks_lib.HistoryWriter(run), *shared,
                         callbacks_lib.PreemptionGuard(signals, checkpointing),
                         *extra_callbacks]
            # fit splits each global batch across the strategy's replicas.
            # steps_per_epoch ends each epoch after its last batch: running on into the
            # end of the data would execute the data-independent state updates of one
            # more step (optimizer iteration, RNG state) before the input error stops it.
            model.fit(training_dataset(split, config, begin, end, skip, steps), epochs=end,
                      initial_epoch=begin, steps_per_epoch=steps - skip, shuffle=False,
                      verbose=int(config.train.verbose == 1), callbacks=callbacks)
            if model.stop_training:
                break
    return steps


def train_and_evaluate(config, workdir, fresh=False, export_dir=None, callbacks=()):
    """Runs (or resumes) one experiment end to end; returns its metrics (as metrics.json).

    callbacks: extra Keras callbacks for `fit` (they run after this package's own, so
    their epoch logs hold the val_* metrics).
    export_dir: if set, the finished run is also exported there as a SavedModel (see
    export.py), by the chief alone under a multi-worker strategy.
    """
    config_lib.validate(config)
    rundir.check_workdir(workdir)
    # First, before other TF work: multi-worker collectives are configured at start-up.
    strategy = distribute.make_strategy(config.train.strategy, config.train.tpu_address)
    problem = distribute.check_batch_split(
        config.data.labelled_batch_size, config.data.unlabelled_batch_size,
        strategy.num_replicas_in_sync, has_labels=bool(len(config.data.labelled_classes)))
    if problem:
        raise config_lib.ConfigError(problem)
    logging.info("strategy: %s", distribute.describe(strategy))
    if config.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)
    split = data.load_split(config.data, config.seed)
    with strategy.scope():
        model = build(config, split)
    distribute.adapt_model(model, strategy)  # Keras 3 fit() workarounds, see there
    logging.info("%s: %d labelled, %d unlabelled, %d validation, %d test, dim %d, %d slots",
                 config.model.name, len(split.x_labelled), len(split.x_unlabelled),
                 len(split.x_val), len(split.x_test), split.dim, split.num_slots)

    # Multi-worker: only the chief writes the run; the others write alike to a private dir.
    run = rundir.RunDir(distribute.worker_workdir(strategy, workdir))
    with run.lock():
        metrics = _train_and_write(config, run, fresh, model, split, strategy, callbacks)
    logging.info("%s", evaluation.summary_line(metrics))
    if export_dir and distribute.is_chief(strategy):
        export.export_run(workdir, export_dir)
    return metrics


def _train_and_write(config, run, fresh, model, split, strategy, callbacks):
    """Under the workdir's lock: fit, select, evaluate, write the run's files -> metrics."""
    run.prepare(config, fresh)
    # Outside the scope: the epoch/step/best-accuracy counters are host-side bookkeeping
    # (TPUs have no float64); the model and optimizer variables it saves are distributed.
    state = checkpoints.TrainState(model, run.file(rundir.CHECKPOINTS),
                                   config.train.keep_checkpoints)
    steps = fit(model, split, config, run, state, callbacks)

    history = run.history()
    selected = len(history)
    if config.train.select == "best_validation" and run.exists(rundir.BEST_WEIGHTS):
        run.load_weights(model, rundir.BEST_WEIGHTS)
        selected = int(state.best_epoch.numpy())
    test_slots = model.predict_slots(split.x_test)
    metrics = evaluation.evaluate_protocols(
        split.y_val, model.predict_slots(split.x_val), split.y_test, test_slots,
        num_classes=split.num_classes, num_slots=split.num_slots,
        labelled_classes=split.labelled_classes)
    seconds = [r["seconds"] for r in history]
    metrics["training"] = {
        "epochs_run": len(history), "steps_per_epoch": steps, "selected_epoch": selected,
        "selection": config.train.select, "seconds": round(float(np.sum(seconds)), 1),
        "seconds_per_epoch_median": round(float(np.median(seconds)), 2) if seconds else None,
        "strategy": distribute.describe(strategy),
        "replicas": strategy.num_replicas_in_sync,
        "peak_rss_mib": machine.peak_rss_mib(),
    }
    run.save_weights(model, rundir.MODEL_WEIGHTS)
    run.write_data_meta(rundir.DataMeta.from_split(split, config.data.source))
    run.write_metrics(metrics)
    if config.train.figures:  # after metrics.json, so a plotting error loses no results
        plots.write_run_figures(run.path, model, split, metrics, test_slots=test_slots)
    return metrics
