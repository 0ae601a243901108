r"""Trains and evaluates one experiment.

  python -m gmdgm_tf.train --config=configs/digits_gmdgm.py --workdir=runs/digits
  python -m gmdgm_tf.train --config=configs/mnist_gmdgm.py --workdir=runs/mnist \
      --config.data.dir=/path/to/mnist --config.train.epochs=3

Any config field can be overridden with --config.<field>=<value>. Rerunning the same
command on the same workdir resumes an interrupted run; --fresh starts over. SIGTERM or
SIGINT (Ctrl-C) stops training at the next step boundary with a checkpoint and exits
with 128 + the signal's number (143, 130) and one line saying how to resume. A bad
config, data or workdir exits with code 2 and one line on stderr. --export_dir=DIR also
writes a SavedModel at the end (the chief alone, multi-worker).
"""

import os
import sys

# TensorFlow's C++ start-up lines are noise here; a user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # pylint: disable=wrong-import-position
from ml_collections import config_flags  # pylint: disable=wrong-import-position

from gmdgm_tf import (callbacks, checkpoints, config, data, distribute,  # pylint: disable=wrong-import-position
                      experiment, export, rundir)

# Errors that are the user's to fix: one line on stderr, exit code 2. Only the package's
# own classes: any other error (a bug, in this package or below it) keeps its traceback.
USER_ERRORS = (config.ConfigError, data.DataError, rundir.RunDirError, rundir.WriteError,
               checkpoints.CheckpointError, callbacks.NonFiniteLossError,
               distribute.StrategyError, export.ExportError)

config_flags.DEFINE_config_file("config", None, "Experiment config file (get_config()).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for metrics, checkpoints and logs.")
flags.DEFINE_bool("fresh", False, "Start over, deleting this package's files in --workdir "
                  "(otherwise an interrupted run in --workdir is resumed).")
flags.DEFINE_string("export_dir", None, "If set, export a SavedModel there after training "
                    "(see gmdgm_tf.export).")
flags.mark_flags_as_required(["config", "workdir"])


def _fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def parse_flags(argv):
    """absl flag parsing, with config-file and config-field mistakes as one line (exit 2):
    the config file is loaded and every --config.FIELD checked (with the closest field
    name) before absl sees them."""
    path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if path:
        try:
            loaded = config.load(path)
        except config.ConfigError as e:
            _fail(e)
        except Exception as e:  # pylint: disable=broad-except  # a user's file may raise anything
            _fail(f"cannot load config file {path}: {type(e).__name__}: {config.error_line(e)}")
        try:
            config.check_fields(loaded, [a[len("--config."):].split("=", 1)[0]
                                         for a in argv[1:] if a.startswith("--config.")])
        except config.ConfigError as e:
            _fail(e)
    try:
        rest = flags.FLAGS(argv)
        flags.FLAGS.config  # pylint: disable=pointless-statement  # load the file now
        return rest
    except (flags.Error, OSError, AttributeError, KeyError, TypeError, ValueError) as e:
        return _fail(config.error_line(e))


def main(argv):
    del argv
    logging.info("config:\n%s", flags.FLAGS.config)
    try:
        export_dir = flags.FLAGS.export_dir
        if export_dir and os.path.isdir(export_dir) and os.listdir(export_dir):
            raise export.ExportError(f"--export_dir {export_dir} exists and is not empty")
        experiment.train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir,
                                      fresh=flags.FLAGS.fresh, export_dir=export_dir)
    except callbacks.Interrupted as e:
        print(f"stopped: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except USER_ERRORS as e:
        _fail(e)


if __name__ == "__main__":
    import logging as std_logging  # pylint: disable=ungrouped-imports
    # TensorFlow's Python INFO lines (an export's "Assets written to ...", shown twice) are
    # noise here. Not the checkpoint writer's per-save line: it goes through absl, and
    # checkpoints.py drops it for every caller.
    std_logging.getLogger("tensorflow").setLevel(std_logging.WARNING)
    app.run(main, flags_parser=parse_flags)
