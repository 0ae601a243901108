"""train_and_evaluate(config, workdir): data -> model -> fit(callbacks) -> evaluate -> save.

The config is validated and the data loaded before the workdir is touched, so a bad run
leaves nothing behind. `fit` runs once over all epochs; validation, best-epoch selection,
checkpoints, the NaN guard, history and TensorBoard are callbacks (callbacks.py), and a
caller may pass more. The files written are described in rundir.py.

train.restarts > 1 is k-means' n_init for this model: whether an unlabelled class gets
slots of its own or merges into a labelled class's is largely settled in the first epochs
and depends on the initialisation. Each candidate initialisation of the seed (same split,
same batches) trains train.restart_epochs epochs in its own run directory; the one with
the best validation accuracy at that epoch (never the test set) is the run that trains on.
"""

import copy

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
                               precision=config.train.precision,
                               seed=config_lib.model_seed(config))
    model.objective = models.objective(config.model, num_train=split.num_train,
                                       num_labelled=len(split.x_labelled))
    # Adam that clips the cross-replica gradient sum (Keras' Adam on one device).
    model.compile(optimizer=distribute.adam(config.optimizer.learning_rate,
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
    """Trains from where `state` (a checkpoints.TrainState) stands to config.train.epochs
    (or the wall-clock budget) -> (the callbacks.Loop, which holds the best epoch; the
    steps per epoch).

    A fresh run, or one resumed at an epoch boundary, is one `fit` call. A run resumed in
    the middle of an epoch first finishes that epoch with a `fit` over its remaining steps
    (all of one fit's epochs have the same number of steps), then runs one `fit` for the
    rest.
    """
    start_epoch, start_step = state.restore()
    history = run.history()
    run.write_history([r for r in history if r["epoch"] <= start_epoch])  # later: lost work
    steps = config.train.steps_per_epoch or data.steps_per_epoch(
        split, config.data.unlabelled_batch_size)
    epochs = config.train.epochs
    if start_step >= steps:  # only an older gmdgm_tf saved at an epoch's last step
        raise checkpoints.CheckpointError(
            f"the newest checkpoint stands at step {start_step} of epoch {start_epoch + 1}, "
            f"which has {steps} steps, so none of it is left to run; start over with --fresh")
    chunks = []  # (first epoch, end epoch, first step)
    if start_step and start_epoch < epochs:
        chunks.append((start_epoch, start_epoch + 1, start_step))
    first = start_epoch + (1 if start_step else 0)
    if first < epochs:
        chunks.append((first, epochs, 0))
    loop = callbacks_lib.Loop(state, start_epoch, start_step, steps)
    if start_epoch and not start_step and loop.best_epoch == start_epoch:
        # The checkpoint holds the best epoch's weights: write them again, in case the run
        # stopped between the checkpoint and the best-weights file (callbacks.Checkpointing).
        run.save_weights(model, rundir.BEST_WEIGHTS)
    elif state.unreadable and run.exists(rundir.BEST_WEIGHTS) and any(
            r.get("val_accuracy", -1.0) > loop.best_accuracy for r in history
            if r["epoch"] > start_epoch):
        # Resumed behind unreadable checkpoints, one of whose epochs beat the restored best:
        # the best-weights file may be that lost epoch's, and the restored best epoch's
        # weights are gone. Selection starts again from the epochs trained from here.
        tf.io.gfile.remove(run.file(rundir.BEST_WEIGHTS))
        loop.forget_best()
        logging.warning("%s may hold the weights of an epoch after the checkpoint resumed "
                        "from; removed, the best epoch is chosen among epochs %d and later",
                        rundir.BEST_WEIGHTS, start_epoch + 1)
    tensorboard = callbacks_lib.TensorBoard(run.file(rundir.TENSORBOARD), split,
                                            config.train.sample_grid_every)
    with callbacks_lib.StopSignals() as signals:
        callbacks = callbacks_lib.loop_callbacks(loop, config, split, run, signals,
                                                 tensorboard, extra_callbacks)
        for begin, end, skip in chunks:
            # fit splits each global batch across the strategy's replicas.
            # steps_per_epoch ends each epoch after its last batch: running on into the
            # end of the data would execute the data-independent state updates of one
            # more step (optimizer iteration, RNG state) before the input error stops it.
            model.fit(training_dataset(split, config, begin, end, skip, steps), epochs=end,
                      initial_epoch=begin, steps_per_epoch=steps - skip, shuffle=False,
                      verbose=int(config.train.verbose == 1), callbacks=callbacks)
            if model.stop_training:
                break
    return loop, steps


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
    distribute.adapt_model(model, strategy)  # Keras 3 fit() workarounds (multi-worker)
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


def restart_config(config, k):
    """Candidate k of a config with train.restarts > 1: the same experiment from
    initialisation restart_index + k, trained train.restart_epochs epochs, no figures."""
    candidate = copy.deepcopy(config)
    candidate.train.update(restarts=1, restart_epochs=0, epochs=config.train.restart_epochs,
                           restart_index=config.train.restart_index + k, figures=False)
    return candidate


def _train_candidate(config, run, split, strategy):
    """Trains (or, resumed, finishes) one restart candidate in its run directory -> its
    history. The caller's extra callbacks are not given to candidates."""
    with strategy.scope():
        model = build(config, split)
    distribute.adapt_model(model, strategy)
    run.prepare(config)
    fit(model, split, config, run,
        checkpoints.TrainState(model, run.file(rundir.CHECKPOINTS), config.train.keep_checkpoints))
    return run.history()


def _restarts(config, run, state, split, strategy):
    """train.restarts > 1: trains the candidates (those already trained are not retrained),
    records the choice in restarts.json, and makes `run` the chosen one's continuation
    unless it has a checkpoint of its own (its first is written last) -> the record."""
    if run.exists(rundir.RESTARTS):
        record = rundir.read_json(run.file(rundir.RESTARTS))
    else:
        record = {"epochs": config.train.restart_epochs, "candidates": [], "validation": [],
                  "seconds": []}
        for k in range(config.train.restarts):
            candidate = restart_config(config, k)
            index = candidate.train.restart_index
            folder = rundir.RunDir(run.file(rundir.restart_dir(index)))
            history = _train_candidate(candidate, folder, split, strategy)
            record["candidates"].append(index)
            record["validation"].append(history[-1]["val_accuracy"])
            record["seconds"].append(round(sum(r["seconds"] for r in history), 1))
        record["chosen"] = record["candidates"][int(np.argmax(record["validation"]))]
        rundir.write_json_atomic(run.file(rundir.RESTARTS), record)
        logging.info("restarts: validation accuracy at epoch %d %s; training on restart %d",
                     record["epochs"], record["validation"], record["chosen"])
    if not run.has_checkpoint():
        chosen = rundir.RunDir(run.file(rundir.restart_dir(record["chosen"])))
        run.copy_history(chosen)
        state.start_from(chosen.file(rundir.CHECKPOINTS))
    return record


def _train_and_write(config, run, fresh, model, split, strategy, callbacks):
    """Under the workdir's lock: fit, select, evaluate, write the run's files -> metrics."""
    run.prepare(config, fresh)
    # Outside the scope: the epoch/step/best-accuracy counters are host-side bookkeeping
    # (TPUs have no float64); the model and optimizer variables it saves are distributed.
    state = checkpoints.TrainState(model, run.file(rundir.CHECKPOINTS),
                                   config.train.keep_checkpoints)
    restarts = None
    if config.train.restarts > 1:
        restarts = _restarts(config, run, state, split, strategy)
    loop, steps = fit(model, split, config, run, state, callbacks)

    history = run.history()
    selected, chosen_by = len(history), "last"  # the epoch whose weights are evaluated
    if config.train.select == "best_validation" and run.exists(rundir.BEST_WEIGHTS):
        run.load_weights(model, rundir.BEST_WEIGHTS)
        selected, chosen_by = loop.best_epoch, "best_validation"
    test_slots = model.predict_slots(split.x_test)
    metrics = evaluation.evaluate_protocols(
        split.y_val, model.predict_slots(split.x_val), split.y_test, test_slots,
        num_classes=split.num_classes, num_slots=split.num_slots,
        labelled_classes=split.labelled_classes)
    selection = evaluation.paper_selection(history)
    if selection is not None:
        metrics[evaluation.PAPER_SELECTION] = selection
    seconds = [r["seconds"] for r in history]
    # every epoch trained, the candidates not chosen too
    others = 0.0 if restarts is None else sum(
        s for i, s in zip(restarts["candidates"], restarts["seconds"]) if i != restarts["chosen"])
    metrics["training"] = {
        "epochs_run": len(history), "epochs_asked": config.train.epochs,
        "steps_per_epoch": steps, "selected_epoch": selected,
        "selection": chosen_by, "seconds": round(float(np.sum(seconds)) + others, 1),
        "seconds_per_epoch_median": round(float(np.median(seconds)), 2) if seconds else None,
        "strategy": distribute.describe(strategy),
        "replicas": strategy.num_replicas_in_sync,
        "peak_rss_mib": machine.peak_rss_mib(),
    }
    if restarts is not None:
        metrics["training"]["restarts"] = restarts
    run.save_weights(model, rundir.MODEL_WEIGHTS)
    run.write_data_meta(rundir.DataMeta.from_split(split, config.data.source))
    run.write_metrics(metrics)
    if config.train.figures:  # after metrics.json, so a plotting error loses no results
        plots.write_run_figures(run.path, model, split, metrics, test_slots=test_slots)
    return metrics
