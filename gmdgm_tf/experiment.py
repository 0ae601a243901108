"""train_and_evaluate(config, workdir): data -> model -> fit -> evaluate -> save.

Everything that can be wrong with the config or the data is checked before the workdir is
touched, so a bad run leaves nothing behind. Files written to the workdir:
  config.json          the resolved config
  metrics.json         final metrics, both protocols (see evaluation.py)
  history.jsonl        one line per epoch: training terms + validation metrics
  model.weights.h5     weights of the selected model
  data_meta.json       what inference needs: pixel mask, image shape, classes, prior
  tensorboard/         scalars per epoch
"""

import json
import os
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from gmdgm_tf import data, evaluation, models

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
        (config.data.source in data.SOURCES,
         f"unknown dataset {config.data.source!r}; choose one of {', '.join(data.SOURCES)}"),
        (config.train.epochs >= 1, f"train.epochs must be >= 1, got {config.train.epochs}"),
        (config.data.unlabelled_batch_size >= 1 and config.data.labelled_batch_size >= 1,
         "batch sizes must be >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def write_json_atomic(path, obj):
    """Writes JSON to a temporary file in the same directory, then renames it into place."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def predict_slots(model, x):
    """x: [n, dim] -> argmax slot of q(y|x), [n] int."""
    probs = model.predict(x, batch_size=EVAL_BATCH, verbose=0)
    return np.argmax(probs, axis=-1)


class EpochEvaluation(keras.callbacks.Callback):
    """Per epoch: validation metrics -> history.jsonl and TensorBoard; model selection
    on validation (never test); the wall-clock budget."""

    def __init__(self, split, workdir, select, max_minutes):
        super().__init__()
        self.split, self.select = split, select
        self.history_path = os.path.join(workdir, "history.jsonl")
        self.writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))
        self.deadline = time.time() + 60 * max_minutes if max_minutes else None
        self.best = (-1.0, None, -1)  # (accuracy, weights, epoch)
        self.epoch_seconds = []
        self._t0 = None

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.time()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append(time.time() - self._t0)
        split = self.split
        slots = predict_slots(self.model, split.x_val)
        slot_map = evaluation.cluster_to_class_map(
            split.y_val, slots, split.num_classes, split.num_slots, split.labelled_classes)
        report = evaluation.accuracy_report(split.y_val, slots, slot_map,
                                            split.labelled_classes, split.num_classes)
        record = {"epoch": epoch + 1, "seconds": round(self.epoch_seconds[-1], 2),
                  **{k: float(v) for k, v in (logs or {}).items()},
                  **{f"val_{k}": v for k, v in report.items() if k != "confusion_matrix"}}
        with open(self.history_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        with self.writer.as_default(step=epoch + 1):
            for k, v in record.items():
                if isinstance(v, float):
                    tf.summary.scalar(k, v)
        logging.info("epoch %d (%.1fs): loss %.2f val accuracy %.4f", epoch + 1,
                     record["seconds"], record.get("loss", float("nan")), report["accuracy"])
        if self.select == "best_validation" and report["accuracy"] > self.best[0]:
            self.best = (report["accuracy"], self.model.get_weights(), epoch + 1)
        if self.deadline and time.time() > self.deadline:
            logging.info("wall-clock budget reached after epoch %d", epoch + 1)
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.writer.flush()
        if self.select == "best_validation" and self.best[1] is not None:
            self.model.set_weights(self.best[1])


def build(config, split):
    """config + split -> compiled model (inside the current distribution strategy)."""
    model = models.build_model(
        config.model, dim=split.dim, prior=split.prior, num_train=split.num_train,
        num_labelled=len(split.x_labelled), precision=config.train.precision,
        seed=config.seed)
    model.compile(optimizer=keras.optimizers.Adam(config.optimizer.learning_rate,
                                                  clipvalue=config.optimizer.clipvalue),
                  jit_compile=config.train.jit_compile)
    return model


def prepare_workdir(workdir, config):
    """Creates the workdir; refuses one that holds a run of a different experiment."""
    config_path = os.path.join(workdir, "config.json")
    if os.path.exists(config_path):
        with open(config_path, encoding="utf-8") as f:
            previous = json.load(f)
        if previous != json.loads(config.to_json()):
            raise ConfigError(f"workdir {workdir} holds a run with a different config; "
                              "use another --workdir")
    os.makedirs(workdir, exist_ok=True)
    for name in ("history.jsonl", "metrics.json"):
        if os.path.exists(os.path.join(workdir, name)):
            os.remove(os.path.join(workdir, name))
    write_json_atomic(config_path, json.loads(config.to_json()))


def train_and_evaluate(config, workdir):
    """Runs one experiment end to end and returns its metrics dict (also in metrics.json)."""
    validate_config(config)
    keras.utils.set_random_seed(config.seed)
    split = data.load_split(config.data, config.seed)
    dataset = data.train_dataset(split, config.data.labelled_batch_size,
                                 config.data.unlabelled_batch_size, config.seed)
    model = build(config, split)
    logging.info("%s: %d labelled, %d unlabelled, %d validation, %d test, dim %d, %d slots",
                 config.model.name, len(split.x_labelled), len(split.x_unlabelled),
                 len(split.x_val), len(split.x_test), split.dim, split.num_slots)

    prepare_workdir(workdir, config)
    steps = config.train.steps_per_epoch or data.steps_per_epoch(
        split, config.data.unlabelled_batch_size)
    callback = EpochEvaluation(split, workdir, config.train.select, config.train.max_minutes)
    start = time.time()
    model.fit(dataset.repeat() if config.train.steps_per_epoch else dataset,
              epochs=config.train.epochs, steps_per_epoch=steps if config.train.steps_per_epoch
              else None, callbacks=[callback], verbose=config.train.verbose)
    train_seconds = time.time() - start

    metrics = evaluation.evaluate_protocols(
        split.y_val, predict_slots(model, split.x_val),
        split.y_test, predict_slots(model, split.x_test),
        num_classes=split.num_classes, num_slots=split.num_slots,
        labelled_classes=split.labelled_classes)
    metrics["training"] = {
        "epochs_run": len(callback.epoch_seconds), "steps_per_epoch": steps,
        "selected_epoch": callback.best[2] if config.train.select == "best_validation"
        else len(callback.epoch_seconds),
        "seconds": round(train_seconds, 1),
        "seconds_per_epoch_median": round(float(np.median(callback.epoch_seconds)), 2),
    }
    model.save_weights(os.path.join(workdir, "model.weights.h5"))
    write_json_atomic(os.path.join(workdir, "data_meta.json"), {
        "source": config.data.source, "class_names": split.class_names,
        "image_shape": list(split.image_shape), "pixel_mask": split.pixel_mask.tolist(),
        "labelled_classes": list(split.labelled_classes), "prior": split.prior.tolist(),
        "num_train": split.num_train, "num_labelled": len(split.x_labelled)})
    write_json_atomic(os.path.join(workdir, "metrics.json"), metrics)
    logging.info("%s", evaluation.summary_line(metrics))
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
    x = np.zeros((1, dim), np.float32)
    model(x)
    model.compute_losses(x, np.zeros((1,), np.int32), x)  # creates every weight
    model.load_weights(paths["model.weights.h5"])
    return model, config, meta, metrics
