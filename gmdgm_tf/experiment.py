"""train_and_evaluate(config, workdir): data -> model -> fit -> evaluate -> save.

Everything that can be wrong with the config or the data is checked before the workdir is
touched, so a bad run leaves nothing behind. Files written to the workdir:
  config.json          the resolved config (a resumed run must match it)
  checkpoints/         tf.train checkpoints: weights, Adam slots, RNG state, epoch/step
  history.jsonl        one line per epoch: training terms + validation metrics
  best.weights.h5      the best epoch on validation accuracy (never the test set)
  model.weights.h5     weights of the selected model (train.select)
  metrics.json         final metrics, both protocols (see evaluation.py)
  data_meta.json       what inference needs: pixel mask, image shape, classes, prior
  tensorboard/         scalars per epoch; confusion/assignment/sample figures at the end
  *.png                confusion.png, assignment.png, samples.png (train.figures)
JSON files and weights are written to a temporary name and renamed into place.
"""

import json
import os
import resource
import shutil
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from gmdgm_tf import data, distribute, evaluation, models, plots

SELECTIONS = ("best_validation", "last")
EVAL_BATCH = 1000


class ConfigError(ValueError):
    """A config value that cannot work; raised before anything is written."""


def validate_config(config):
    """Fails fast on names and values that are not data-dependent."""
    checks = [
        (config.model.name in models.MODELS,
         f"unknown model {config.model.name!r}; choose one of {sorted(models.MODELS)}"),
        (config.model.likelihood in models.base.LIKELIHOODS,
         f"unknown likelihood {config.model.likelihood!r}; choose one of "
         f"{models.base.LIKELIHOODS}"),
        (config.train.precision in models.PRECISIONS,
         f"unknown precision {config.train.precision!r}; choose one of {models.PRECISIONS}"),
        (config.train.select in SELECTIONS,
         f"unknown train.select {config.train.select!r}; choose one of {SELECTIONS}"),
        (config.model.alpha_scaling in ("none", "kingma"),
         f"unknown model.alpha_scaling {config.model.alpha_scaling!r}; choose none or kingma"),
        (config.data.prior_rule in data.PRIOR_RULES,
         f"unknown data.prior_rule {config.data.prior_rule!r}; choose one of "
         f"{data.PRIOR_RULES}"),
        (config.data.source in data.SOURCES,
         f"unknown dataset {config.data.source!r}; choose one of {', '.join(data.SOURCES)}"),
        (config.train.epochs >= 1, f"train.epochs must be >= 1, got {config.train.epochs}"),
        (config.data.unlabelled_batch_size >= 1 and config.data.labelled_batch_size >= 1,
         "batch sizes must be >= 1"),
        (config.train.strategy in distribute.STRATEGIES,
         f"unknown train.strategy {config.train.strategy!r}; choose one of "
         f"{', '.join(distribute.STRATEGIES)}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def write_json_atomic(path, obj):
    """Writes JSON to a temporary file in the same directory, then renames it into place."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give what open() would
    os.replace(tmp, path)


def peak_rss_mib():
    """Peak resident memory of this process so far, in MiB.

    VmHWM where /proc exists: getrusage's ru_maxrss of a freshly started process also
    counts the parent it was forked from (Linux saves the pre-exec image's peak)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            return round(int(f.read().split("VmHWM:")[1].split()[0]) / 1024)
    except (OSError, IndexError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(peak / (2 ** 20 if sys.platform == "darwin" else 2 ** 10))


def predict_slots(model, x):
    """x: [n, dim] -> argmax slot of q(y|x), [n] int."""
    probs = model.predict(x, batch_size=EVAL_BATCH, verbose=0)
    return np.argmax(probs, axis=-1)


class NonFiniteLossError(RuntimeError):
    """The loss went NaN/inf; the last good checkpoint is kept as it was."""


class StepWatch(keras.callbacks.Callback):
    """Per step: stop on a non-finite loss (naming the terms), checkpoint every N steps."""

    def __init__(self, state, epoch, first_step, every_steps):
        super().__init__()
        self.state, self.epoch, self.step = state, epoch, first_step
        self.every_steps = every_steps

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        bad = {k: v for k, v in (logs or {}).items() if not np.isfinite(v)}
        if bad:
            raise NonFiniteLossError(
                f"non-finite loss at epoch {self.epoch + 1} step {self.step}: "
                + ", ".join(f"{k}={v}" for k, v in sorted(bad.items()))
                + "; the last good checkpoint is kept (lower the learning rate?)")
        if self.every_steps and self.step % self.every_steps == 0:
            self.state.save(self.epoch, self.step)


def _by_creation_order(variables):
    """Keys by creation order, stable across processes and instances (names are not:
    a second model in one process is 'gmdgm_1'); restore still checks every shape."""
    return {f"v{i:04d}": v for i, v in enumerate(variables)}


class TrainState:
    """Everything a resumed run needs, in tf.train.Checkpoint form: weights, optimizer
    slots, the RNG state (a model variable), and where in which epoch training stands.
    CheckpointManager writes the new files before pointing at them, so a crash while
    saving leaves the previous checkpoint usable."""

    def __init__(self, model, workdir, keep):
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.best_accuracy = tf.Variable(-1.0, dtype=tf.float64, trainable=False)
        self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        # Keras 3 layers are only partly visible to tf.train's object graph (the RNG state
        # and nested layers' weights were missing), so every variable is named explicitly.
        checkpoint = tf.train.Checkpoint(
            model=_by_creation_order(model.variables),
            optimizer=_by_creation_order(model.optimizer.variables), epoch=self.epoch,
            step=self.step, best_accuracy=self.best_accuracy, best_epoch=self.best_epoch)
        self.manager = tf.train.CheckpointManager(
            checkpoint, os.path.join(workdir, "checkpoints"), max_to_keep=keep)

    def restore(self):
        """-> (epoch, step within it) to continue from; (0, 0) for a new run."""
        if self.manager.latest_checkpoint:
            self.manager.checkpoint.restore(self.manager.latest_checkpoint).assert_consumed()
            logging.info("resuming from %s", self.manager.latest_checkpoint)
        return int(self.epoch.numpy()), int(self.step.numpy())

    def save(self, epoch, step):
        self.epoch.assign(epoch)
        self.step.assign(step)
        self.manager.save()


def build(config, split):
    """config + split -> compiled model with every variable (optimizer slots too) created.

    Call it under `strategy.scope()` to distribute the model (weights, RNG state, metric
    trackers) and its optimizer.
    """
    model = models.build_model(
        config.model, dim=split.dim, prior=split.prior, num_train=split.num_train,
        num_labelled=len(split.x_labelled), precision=config.train.precision,
        seed=config.seed)
    # Adam that clips the cross-replica gradient sum (plain Adam on one device).
    model.compile(optimizer=distribute.CrossReplicaAdam(config.optimizer.learning_rate,
                                                        clipvalue=config.optimizer.clipvalue),
                  jit_compile=config.train.jit_compile)
    create_variables(model, split.dim)
    model.optimizer.build(model.trainable_variables)
    return model


def create_variables(model, dim):
    """Runs the model once on a dummy batch so that every weight exists (Keras builds
    lazily; checkpoints and load_weights need them all)."""
    x = np.zeros((1, dim), np.float32)
    model(x)
    model.compute_losses(x, np.zeros((1,), np.int32), x)


# Settings that say how long or how loudly to run, not what the experiment is.
_NOT_EXPERIMENT = ("train.epochs", "train.max_minutes", "train.verbose",
                   "train.figures", "train.checkpoint_every_steps", "train.keep_checkpoints",
                   "data.dir", "data.tfds_dir", "train.export_dir",
                   "train.strategy", "train.tpu_address")  # same maths on any hardware
_RUN_FILES = ("config.json", "history.jsonl", "metrics.json", "model.weights.h5",
              "best.weights.h5", "data_meta.json", "confusion.png", "assignment.png",
              "samples.png")
_RUN_DIRS = ("checkpoints", "tensorboard")


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_differences(old, new):
    """Experiment-defining fields that differ between two config dicts -> ['key: a -> b']."""
    old, new = _flatten(old), _flatten(new)
    keys = sorted((set(old) | set(new)) - set(_NOT_EXPERIMENT))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def prepare_workdir(workdir, config, fresh=False):
    """Creates the workdir, or checks that the run in it is this experiment.

    fresh=True deletes this package's files from the workdir (nothing else) first.
    """
    config_path = os.path.join(workdir, "config.json")
    new = json.loads(config.to_json())
    if fresh:
        for name in _RUN_FILES:
            if os.path.exists(os.path.join(workdir, name)):
                os.remove(os.path.join(workdir, name))
        for name in _RUN_DIRS:
            shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
    elif os.path.exists(config_path):
        with open(config_path, encoding="utf-8") as f:
            diffs = config_differences(json.load(f), new)
        if diffs:
            raise ConfigError(f"workdir {workdir} holds a different experiment ("
                              + "; ".join(diffs) + "); use another --workdir or --fresh")
    os.makedirs(workdir, exist_ok=True)
    write_json_atomic(config_path, new)


def _read_history(path, upto_epoch):
    """history.jsonl records of epochs <= upto_epoch (later ones belong to lost work)."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if r["epoch"] <= upto_epoch]


def _save_weights_atomic(model, path):
    tmp = path.replace(".weights.h5", ".tmp.weights.h5")
    model.save_weights(tmp)
    os.replace(tmp, path)


def validation_report(model, split):
    """Validation accuracy with the map built on validation itself (for selection)."""
    slots = predict_slots(model, split.x_val)
    slot_map = evaluation.cluster_to_class_map(
        split.y_val, slots, split.num_classes, split.num_slots, split.labelled_classes)
    return evaluation.accuracy_report(split.y_val, slots, slot_map, split.labelled_classes,
                                      split.num_classes)


def train_and_evaluate(config, workdir, fresh=False, export_dir=None):
    """Runs (or resumes) one experiment end to end; returns its metrics (as metrics.json).

    export_dir: if set, the finished run is also exported there as a SavedModel (see
    export.py), by the chief alone under a multi-worker strategy.
    """
    validate_config(config)
    # First, before other TF work: multi-worker collectives are configured at start-up.
    strategy = distribute.make_strategy(config.train.strategy, config.train.tpu_address)
    problem = distribute.check_batch_split(
        config.data.labelled_batch_size, config.data.unlabelled_batch_size,
        strategy.num_replicas_in_sync, has_labels=bool(len(config.data.labelled_classes)))
    if problem:
        raise ConfigError(problem)
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
    workdir = distribute.worker_workdir(strategy, workdir)
    prepare_workdir(workdir, config, fresh)
    # Outside the scope: the epoch/step/best-accuracy counters are host-side bookkeeping
    # (TPUs have no float64); the model and optimizer variables it saves are distributed.
    state = TrainState(model, workdir, config.train.keep_checkpoints)
    start_epoch, start_step = state.restore()
    history_path = os.path.join(workdir, "history.jsonl")
    history = _read_history(history_path, start_epoch)
    with open(history_path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in history)
    writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))
    best_path = os.path.join(workdir, "best.weights.h5")
    steps = config.train.steps_per_epoch or data.steps_per_epoch(
        split, config.data.unlabelled_batch_size)
    deadline = time.time() + 60 * config.train.max_minutes if config.train.max_minutes else None

    for epoch in range(start_epoch, config.train.epochs):
        skip = start_step if epoch == start_epoch else 0
        dataset = data.epoch_dataset(split, config.data.labelled_batch_size,
                                     config.data.unlabelled_batch_size, config.seed, epoch)
        if config.train.steps_per_epoch:
            dataset = dataset.repeat()
        t0 = time.time()
        # fit splits each global batch across the strategy's replicas. steps_per_epoch
        # stops it after the last batch: running on into the end of the data executes
        # the data-independent state updates of one more step (optimizer iteration, RNG
        # state; on some replicas only, under a strategy) before the input error stops it.
        logs = model.fit(dataset.skip(skip).take(steps - skip), epochs=1, shuffle=False,
                         steps_per_epoch=(steps - skip) or None,
                         verbose=int(config.train.verbose == 1),
                         callbacks=[StepWatch(state, epoch, skip,
                                              config.train.checkpoint_every_steps)]).history
        report = validation_report(model, split)
        record = {"epoch": epoch + 1, "seconds": round(time.time() - t0, 2),
                  **{k: float(v[-1]) for k, v in logs.items()},
                  **{f"val_{k}": v for k, v in report.items() if k != "confusion_matrix"}}
        with open(history_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        history.append(record)
        with writer.as_default(step=epoch + 1):
            for k, v in record.items():
                if isinstance(v, float):
                    tf.summary.scalar(k, v)
        if report["accuracy"] > state.best_accuracy.numpy():
            state.best_accuracy.assign(report["accuracy"])
            state.best_epoch.assign(epoch + 1)
            _save_weights_atomic(model, best_path)
        state.save(epoch + 1, 0)
        logging.info("epoch %d/%d (%.1fs): loss %.2f, validation accuracy %.4f",
                     epoch + 1, config.train.epochs, record["seconds"],
                     record.get("loss", float("nan")), report["accuracy"])
        if deadline and time.time() > deadline:
            logging.info("wall-clock budget of %s minutes reached", config.train.max_minutes)
            break
    writer.flush()

    selected = len(history)
    if config.train.select == "best_validation" and os.path.exists(best_path):
        model.load_weights(best_path)
        selected = int(state.best_epoch.numpy())
    test_slots = predict_slots(model, split.x_test)
    metrics = evaluation.evaluate_protocols(
        split.y_val, predict_slots(model, split.x_val), split.y_test, test_slots,
        num_classes=split.num_classes, num_slots=split.num_slots,
        labelled_classes=split.labelled_classes)
    seconds = [r["seconds"] for r in history]
    metrics["training"] = {
        "epochs_run": len(history), "steps_per_epoch": steps, "selected_epoch": selected,
        "selection": config.train.select, "seconds": round(float(np.sum(seconds)), 1),
        "seconds_per_epoch_median": round(float(np.median(seconds)), 2) if seconds else None,
        "strategy": distribute.describe(strategy),
        "replicas": strategy.num_replicas_in_sync,
        "peak_rss_mib": peak_rss_mib(),
    }
    _save_weights_atomic(model, os.path.join(workdir, "model.weights.h5"))
    write_json_atomic(os.path.join(workdir, "data_meta.json"), {
        "source": config.data.source, "class_names": split.class_names,
        "image_shape": list(split.image_shape), "pixel_mask": split.pixel_mask.tolist(),
        "labelled_classes": list(split.labelled_classes), "prior": split.prior.tolist(),
        "num_train": split.num_train, "num_labelled": len(split.x_labelled)})
    write_json_atomic(os.path.join(workdir, "metrics.json"), metrics)
    if config.train.figures:  # after metrics.json, so a plotting error loses no results
        plots.write_run_figures(workdir, model, split, metrics, test_slots=test_slots)
    logging.info("%s", evaluation.summary_line(metrics))
    if export_dir and distribute.is_chief(strategy):
        from gmdgm_tf import export  # pylint: disable=import-outside-toplevel  (cycle)
        export.export_run(workdir, export_dir)
    return metrics


def load_run(workdir):
    """A finished run's workdir -> (model with its trained weights, config, data_meta, metrics).

    Raises FileNotFoundError naming what is missing when the workdir holds no finished run.
    """
    import ml_collections  # pylint: disable=import-outside-toplevel
    paths = {name: os.path.join(workdir, name) for name in
             ("config.json", "data_meta.json", "metrics.json", "model.weights.h5")}
    missing = [name for name, path in paths.items() if not os.path.exists(path)]
    if missing:
        raise FileNotFoundError(f"{workdir} holds no finished run (missing {', '.join(missing)})")
    with open(paths["config.json"], encoding="utf-8") as f:
        config = ml_collections.ConfigDict(json.load(f))
    with open(paths["data_meta.json"], encoding="utf-8") as f:
        meta = json.load(f)
    with open(paths["metrics.json"], encoding="utf-8") as f:
        metrics = json.load(f)
    dim = int(np.sum(meta["pixel_mask"]))
    model = models.build_model(config.model, dim=dim, prior=meta["prior"],
                               num_train=meta["num_train"], num_labelled=meta["num_labelled"],
                               precision=config.train.precision, seed=config.seed)
    create_variables(model, dim)
    model.load_weights(paths["model.weights.h5"])
    return model, config, meta, metrics
