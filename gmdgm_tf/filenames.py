"""Every file name the project writes into a run directory or an export, in one place.

This module imports nothing, so the TensorFlow-free tools (gmdgm_tf.sweeps, the
benchmarks' reports) read run directories by the same names that gmdgm_tf.rundir and
gmdgm_tf.export write them under. gmdgm_tf.rundir documents what each file holds.
The one copy elsewhere: gmdgm_tf/predict.py spells EXPORT_METADATA itself, because it
is meant to be copied next to an export and run without this package (a test checks
that the two agree).
"""

# A run directory (gmdgm_tf.rundir).
CONFIG = "config.json"
HISTORY = "history.jsonl"
METRICS = "metrics.json"
DATA_META = "data_meta.json"
BEST_WEIGHTS = "best.weights.h5"
MODEL_WEIGHTS = "model.weights.h5"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
LOCK = ".lock"                   # held (flock) by the one training that writes the workdir
CONFUSION_FIGURE = "confusion.png"
ASSIGNMENT_FIGURE = "assignment.png"
SAMPLES_FIGURE = "samples.png"
FIGURES = (CONFUSION_FIGURE, ASSIGNMENT_FIGURE, SAMPLES_FIGURE)
RESTARTS = "restarts.json"
RESTARTS_DIR = "restarts"
WORKERS_DIR = "workers"          # multi-worker: each non-chief process's own run directory
TRAIN_LOG = "train.log"          # a sweep's run: the training's stdout and stderr
RUNNER_RECORD = "runner.json"    # a sweep's run: its attempts and seconds (gmdgm_tf.sweeps.run)

# An export directory (gmdgm_tf.export; read by gmdgm_tf.predict).
EXPORT_METADATA = "gmdgm_export.json"
EXPORT_MODEL_CARD = "MODEL_CARD.md"
