r"""Validation accuracy against wall-clock seconds for the paper's MNIST GM-DGM run.

  python benchmarks/time_to_accuracy.py --minutes=30 --workdir=runs/tta_gmdgm \
      --data_dir=../shared/data/mnist [--precision=mixed_bfloat16] [--seed=0] \
      [--learning_rate=3e-4]

Trains with the real training command's code (experiment.train_and_evaluate) under a
wall-clock budget, then writes <workdir>/time_to_accuracy.md: cumulative wall-clock
seconds (training plus the per-epoch validation pass) and validation accuracy per epoch (map built on validation,
protocol "validation"), and the final heldout/paper test accuracies of the model selected
on validation. A rerun on the same workdir resumes.
"""

import json
import os

from absl import app, flags

from gmdgm_tf import evaluation, experiment
from gmdgm_tf import defaults

flags.DEFINE_string("workdir", "runs/time_to_accuracy", "Run directory.")
flags.DEFINE_string("data_dir", "../shared/data/mnist", "Directory with the MNIST IDX files.")
flags.DEFINE_float("minutes", 30.0, "Wall-clock training budget.")
flags.DEFINE_string("model", "gmdgm", "gmdgm or m2.")
flags.DEFINE_string("precision", "mixed_bfloat16",
                    "float32 or mixed_bfloat16 (the MNIST configs' default).")
flags.DEFINE_integer("seed", 0, "Seed.")
flags.DEFINE_float("learning_rate", None, "Adam learning rate (default: the config's, 3e-4).")
FLAGS = flags.FLAGS


def table(history, metrics, budget):
    """history records + final metrics -> Markdown."""
    lines = [f"Budget {budget} min (wall clock, per-epoch validation included). Validation accuracy (map from validation) by epoch:", "",
             "| epoch | seconds (cumulative) | val accuracy | val labelled classes "
             "| val unlabelled classes |", "|---|---|---|---|---|"]
    total = 0.0
    for r in history:
        total += r["seconds"]
        lines.append(f"| {r['epoch']} | {total:.0f} | {100 * r['val_accuracy']:.1f} | "
                     f"{100 * r['val_accuracy_labelled_classes']:.1f} | "
                     f"{100 * r['val_accuracy_unlabelled_classes']:.1f} |")
    lines += ["", f"Selected epoch {metrics['training']['selected_epoch']} on validation. "
              + evaluation.summary_line(metrics)]
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    config = defaults.base_config()
    config.data.dir = FLAGS.data_dir
    config.model.name = FLAGS.model
    config.train.precision = FLAGS.precision
    config.train.max_minutes = FLAGS.minutes
    config.train.epochs = 1000
    config.seed = FLAGS.seed
    if FLAGS.learning_rate:
        config.optimizer.learning_rate = FLAGS.learning_rate
    metrics = experiment.train_and_evaluate(config, FLAGS.workdir)
    with open(os.path.join(FLAGS.workdir, "history.jsonl"), encoding="utf-8") as f:
        history = [json.loads(line) for line in f]
    text = table(history, metrics, FLAGS.minutes)
    with open(os.path.join(FLAGS.workdir, "time_to_accuracy.md"), "w", encoding="utf-8") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    app.run(main)
