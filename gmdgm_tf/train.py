r"""Trains and evaluates one experiment.

  python -m gmdgm_tf.train --config=configs/digits_gmdgm.py --workdir=runs/digits
  python -m gmdgm_tf.train --config=configs/mnist_gmdgm.py --workdir=runs/mnist \
      --config.data.dir=../shared/data/mnist --config.train.epochs=3

Any config field can be overridden with --config.<field>=<value>. Rerunning the same
command on the same workdir resumes an interrupted run; --fresh starts over. SIGTERM or
SIGINT (Ctrl-C) stops training at the next step boundary with a checkpoint and exits
with 128 + the signal's number (143, 130) and one line saying how to resume. A bad
config, data or workdir exits with code 2 and one line on stderr. --export_dir=DIR also
writes a SavedModel at the end (the chief alone, multi-worker).
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from gmdgm_tf import callbacks, checkpoints, config, data, distribute, experiment, rundir

# Errors that are the user's to fix: one line on stderr, exit code 2.
USER_ERRORS = (config.ConfigError, data.DataError, rundir.RunDirError, rundir.WriteError,
               checkpoints.CheckpointError, callbacks.NonFiniteLossError,
               distribute.StrategyError, FileNotFoundError, ValueError)

config_flags.DEFINE_config_file("config", None, "Experiment config file (get_config()).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for metrics, checkpoints and logs.")
flags.DEFINE_bool("fresh", False, "Start over, deleting this package's files in --workdir "
                  "(otherwise an interrupted run in --workdir is resumed).")
flags.DEFINE_string("export_dir", None, "If set, export a SavedModel there after training "
                    "(see gmdgm_tf.export).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    try:
        export_dir = flags.FLAGS.export_dir
        if export_dir and os.path.isdir(export_dir) and os.listdir(export_dir):
            raise ValueError(f"--export_dir {export_dir} exists and is not empty")
        experiment.train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir,
                                      fresh=flags.FLAGS.fresh, export_dir=export_dir)
    except callbacks.Interrupted as e:
        print(f"stopped: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except USER_ERRORS as e:
        logging.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
