r"""Wall-clock minutes to a heldout accuracy: one training run, measured epoch by epoch.

  python benchmarks/time_to_accuracy.py --config=configs/mnist_gmdgm_fast.py \
      --workdir=runs/tta_fast_s0 --minutes=30 --config.data.dir=../shared/data/mnist \
      [--config.seed=1] [--target=0.9]

Trains with the training command's own code (experiment.train_and_evaluate) under a
wall-clock budget, with one extra callback that scores every epoch's model on the test
split with the heldout protocol (slots named on validation). That score is measured,
never used: model selection still looks at validation only. Writes
<workdir>/time_to_accuracy.md and .json: per epoch the cumulative wall-clock seconds
(training plus the validation pass), validation accuracy and heldout test accuracy, and
the first time the heldout accuracy reached --target. A rerun on the same workdir resumes
(epochs trained before this process are in history.jsonl but have no heldout score).
"""

import json
import os
import time

import keras
from absl import app, flags
from ml_collections import config_flags

from gmdgm_tf import data, evaluation, experiment

config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory.")
flags.DEFINE_float("minutes", 30.0, "Wall-clock training budget (train.max_minutes).")
flags.DEFINE_float("target", 0.9, "Heldout accuracy whose time to reach is reported.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


class HeldoutProbe(keras.callbacks.Callback):
    """Every epoch: heldout test accuracy (map from validation) and the wall clock."""

    def __init__(self, split):
        super().__init__()
        self.split, self.t0, self.records = split, time.time(), []

    def on_epoch_end(self, epoch, logs=None):
        s = self.split
        report = evaluation.evaluate_protocols(
            s.y_val, self.model.predict_slots(s.x_val), s.y_test,
            self.model.predict_slots(s.x_test), num_classes=s.num_classes,
            num_slots=s.num_slots, labelled_classes=s.labelled_classes)["heldout"]
        self.records.append({"epoch": epoch + 1, "wall_seconds": round(time.time() - self.t0, 1),
                             "val_accuracy": logs.get("val_accuracy"),
                             "heldout_accuracy": report["accuracy"]})


def table(records, metrics, minutes, target):
    """Probe records + final metrics -> Markdown."""
    reached = next((r for r in records if r["heldout_accuracy"] >= target), None)
    lines = [f"Budget {minutes:g} min. Heldout test accuracy (slots named on validation) by "
             "epoch, measured only; selection uses validation.", "",
             "| epoch | minutes (cumulative, wall) | val accuracy | heldout accuracy |",
             "|---|---|---|---|"]
    lines += [f"| {r['epoch']} | {r['wall_seconds'] / 60:.1f} | {100 * r['val_accuracy']:.1f} "
              f"| {100 * r['heldout_accuracy']:.1f} |" for r in records]
    lines += ["", f"Time to {100 * target:g} % heldout: " + (
        f"{reached['wall_seconds'] / 60:.1f} min (epoch {reached['epoch']})" if reached
        else "not reached in the budget"),
        f"Selected epoch {metrics['training']['selected_epoch']} on validation. "
        + evaluation.summary_line(metrics)]
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    config = FLAGS.config
    with config.unlocked():
        config.train.max_minutes = FLAGS.minutes
    split = data.load_split(config.data, config.seed)  # the same split training loads
    probe = HeldoutProbe(split)
    metrics = experiment.train_and_evaluate(config, FLAGS.workdir, callbacks=[probe])
    text = table(probe.records, metrics, FLAGS.minutes, FLAGS.target)
    with open(os.path.join(FLAGS.workdir, "time_to_accuracy.md"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(FLAGS.workdir, "time_to_accuracy.json"), "w",
              encoding="utf-8") as f:
        json.dump({"target": FLAGS.target, "minutes": FLAGS.minutes, "epochs": probe.records,
                   "metrics": {k: metrics[k] for k in ("heldout", "paper", "training")}},
                  f, indent=1)
    print(text)


if __name__ == "__main__":
    app.run(main)
