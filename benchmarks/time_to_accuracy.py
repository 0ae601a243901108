r"""Wall-clock minutes to a heldout accuracy: one training run, measured epoch by epoch.

  python benchmarks/time_to_accuracy.py --config=configs/mnist_gmdgm_fast.py \
      --workdir=runs/tta_fast_s0 --minutes=30 --config.data.dir=/path/to/mnist \
      [--config.seed=1] [--target=0.9]

Trains with the training command's own code (experiment.train_and_evaluate) under a
wall-clock budget, with one extra callback that scores every epoch's model on the test
split with the heldout protocol (slots named on validation). That score is measured,
never used: model selection still looks at validation only. Writes
<workdir>/time_to_accuracy.md and .json: per epoch the cumulative wall-clock seconds
(training plus the validation pass), validation accuracy and heldout test accuracy, and
the first time the heldout accuracy reached --target. One initialisation is timed: a
config's train.restarts (best of several, which a time budget cannot be combined with) is
set to 1, and the log says so. A rerun on the same workdir resumes
(epochs trained before this process are in history.jsonl but have no heldout score).

With --summaries=DIR the run's small files (SUMMARY_FILES: no weights) are also copied to
DIR/<workdir's name>/, ready to commit; `--report=DIR` (no training) then writes
DIR/summary.md, one row per run and the mean minutes to the target over the seeds (and
rewrites each run's time_to_accuracy.md from its .json):

  python benchmarks/time_to_accuracy.py --report=results/time_to_accuracy/fast
"""

import glob
import json
import os
import statistics
import sys
import time

import keras
from absl import app, flags, logging
from ml_collections import config_flags

from gmdgm_tf import data, evaluation, experiment, filenames, rundir
from gmdgm_tf.sweeps import run as sweep_run
from gmdgm_tf.sweeps.markdown import format_mean_sd
from gmdgm_tf.sweeps.tables import mean_sd

config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory.")
flags.DEFINE_float("minutes", 30.0, "Wall-clock training budget (train.max_minutes).")
flags.DEFINE_float("target", 0.9, "Heldout accuracy whose time to reach is reported.")
flags.DEFINE_string("summaries", None, "Also copy the run's small files to "
                    "SUMMARIES/<workdir's name>/ (for committing).")
flags.DEFINE_string("report", None, "Write REPORT/summary.md from the runs filed in REPORT "
                    "by --summaries, and exit (no training).")
FLAGS = flags.FLAGS
RESULT = "time_to_accuracy"  # <workdir>/time_to_accuracy.{md,json}
SUMMARY_FILES = (filenames.CONFIG, filenames.HISTORY, filenames.METRICS, RESULT + ".md",
                 RESULT + ".json")


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
             "epoch, measured only; selection uses validation. Two decimals: the target is "
             "compared unrounded.", "",
             "| epoch | minutes (cumulative, wall) | val accuracy | heldout accuracy |",
             "|---|---|---|---|"]
    lines += [f"| {r['epoch']} | {r['wall_seconds'] / 60:.1f} | {100 * r['val_accuracy']:.2f} "
              f"| {100 * r['heldout_accuracy']:.2f} |" for r in records]
    lines += ["", f"Time to {100 * target:g} % heldout: " + (
        f"{reached['wall_seconds'] / 60:.1f} min (epoch {reached['epoch']})" if reached
        else "not reached in the budget"),
        f"Selected epoch {metrics['training']['selected_epoch']} on validation. "
        + evaluation.summary_line(metrics)]
    return "\n".join(lines) + "\n"


def summary(results):
    """{run folder (with config.json): its time_to_accuracy.json} -> Markdown: one row per
    run, then the mean (sample SD) minutes to the target over the runs that reached it."""
    targets = sorted({r["target"] for r in results.values()})
    if len(targets) != 1:
        raise app.UsageError(f"the runs have different targets {targets}: report them apart")
    target, rows, reached_minutes = targets[0], [], []
    for folder, result in results.items():
        with open(os.path.join(folder, filenames.CONFIG), encoding="utf-8") as f:
            seed = json.load(f)["seed"]
        records = result["epochs"]
        hit = next((r for r in records if r["heldout_accuracy"] >= target), None)
        if hit:
            reached_minutes.append(hit["wall_seconds"] / 60)
        seconds = [b["wall_seconds"] - a["wall_seconds"] for a, b in zip(records, records[1:])]
        rows.append(
            f"| {os.path.basename(folder)} | {seed} | {result['minutes']:g} | {len(records)} | "
            + (f"{hit['wall_seconds'] / 60:.1f} (epoch {hit['epoch']})" if hit else "not reached")
            + f" | {100 * max(r['heldout_accuracy'] for r in records):.1f} "
            f"| {100 * result['metrics']['heldout']['accuracy']:.1f} "
            f"| {statistics.median(seconds) if seconds else float('nan'):.0f} |")
    n = len(rows)
    if len(reached_minutes) == n and n >= 2:
        mean = f"{format_mean_sd(mean_sd(reached_minutes))} min over {n} runs"
    else:
        mean = (f"reached by {len(reached_minutes)} of {n} runs"
                + (f" (those: {', '.join(f'{m:.1f}' for m in reached_minutes)} min)"
                   if reached_minutes else ""))
    return "\n".join([
        f"Minutes of wall clock (training plus each epoch's validation pass) until the heldout "
        f"test accuracy first reached {100 * target:g} %; the test score is measured each "
        "epoch, never used (selection and the slot names use validation).", "",
        "| run | seed | budget (min) | epochs | minutes to target | best heldout in any epoch "
        "| heldout of the selected epoch | median s / epoch |",
        "|---|---|---|---|---|---|---|---|", *rows, "",
        f"Time to {100 * target:g} %: {mean}."]) + "\n"


def report(directory):
    """Writes directory/summary.md from its run folders, and rewrites each run's
    time_to_accuracy.md from its .json (so a format change reaches filed runs) -> the text."""
    folders = sorted(os.path.dirname(p) for p in
                     glob.glob(os.path.join(directory, "*", RESULT + ".json")))
    if not folders:
        raise app.UsageError(f"no {RESULT}.json under {directory}/*/")
    results = {}
    for folder in folders:
        with open(os.path.join(folder, RESULT + ".json"), encoding="utf-8") as f:
            result = results[folder] = json.load(f)
        with open(os.path.join(folder, RESULT + ".md"), "w", encoding="utf-8") as f:
            f.write(table(result["epochs"], result["metrics"], result["minutes"],
                          result["target"]))
    text = summary(results)
    with open(os.path.join(directory, "summary.md"), "w", encoding="utf-8") as f:
        f.write(text)
    return text


def main(argv):
    del argv
    if FLAGS.report:
        print(report(FLAGS.report))
        return
    if FLAGS.config is None or FLAGS.workdir is None:
        raise app.UsageError("--config and --workdir are required (or --report=DIR)")
    try:
        rundir.refuse_empty(FLAGS.workdir, "--workdir")
    except rundir.RunDirError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    config = FLAGS.config
    with config.unlocked():
        if config.train.restarts > 1:
            logging.info("train.restarts %d -> 1: one initialisation is timed",
                         config.train.restarts)
            config.train.restarts, config.train.restart_epochs = 1, 0
        config.train.max_minutes = FLAGS.minutes
    split = data.load_split(config.data, config.seed)  # the same split training loads
    probe = HeldoutProbe(split)
    metrics = experiment.train_and_evaluate(config, FLAGS.workdir, callbacks=[probe])
    text = table(probe.records, metrics, FLAGS.minutes, FLAGS.target)
    with open(os.path.join(FLAGS.workdir, RESULT + ".md"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(FLAGS.workdir, RESULT + ".json"), "w",
              encoding="utf-8") as f:
        json.dump({"target": FLAGS.target, "minutes": FLAGS.minutes, "epochs": probe.records,
                   "metrics": {k: metrics[k] for k in ("heldout", "paper", "training")}},
                  f, indent=1)
    if FLAGS.summaries:
        dest = os.path.join(FLAGS.summaries, os.path.basename(os.path.normpath(FLAGS.workdir)))
        os.makedirs(dest, exist_ok=True)
        sweep_run.copy_summary_files(FLAGS.workdir, dest, SUMMARY_FILES)  # data.dir blanked
    print(text)


if __name__ == "__main__":
    app.run(main)
