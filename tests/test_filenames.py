"""File names live in gmdgm_tf.filenames, which imports nothing: the sweep tools read run
directories by them without TensorFlow, and predict.py's own copy agrees."""

import os
import subprocess
import sys

from gmdgm_tf import config as config_lib
from gmdgm_tf import filenames, predict, rundir
from gmdgm_tf.sweeps import run

NAMES = {k: v for k, v in vars(filenames).items() if k.isupper() and isinstance(v, str)}
EXPORT_NAMES = {filenames.EXPORT_METADATA, filenames.EXPORT_MODEL_CARD}
RUN_DIRS = {filenames.CHECKPOINTS, filenames.TENSORBOARD, filenames.RESTARTS_DIR,
            filenames.WORKERS_DIR}


def test_the_sweep_tools_share_the_names_without_importing_tensorflow():
    code = ("import sys\n"
            "import gmdgm_tf.filenames, gmdgm_tf.sweeps.run, gmdgm_tf.sweeps.report\n"
            "heavy = [m for m in sys.modules\n"
            "         if m.split('.')[0] in ('tensorflow', 'keras', 'tensorflow_probability')]\n"
            "sys.exit(f'imported {heavy[:3]}' if heavy else 0)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_no_two_files_share_a_name_and_predict_spells_its_own_alike():
    by_value = {}
    for key, value in NAMES.items():
        by_value.setdefault(value, []).append(key)
    assert not {v: k for v, k in by_value.items() if len(k) > 1}
    assert predict.METADATA_FILE == filenames.EXPORT_METADATA   # predict.py stands alone


def test_a_sweep_files_the_small_files_never_weights_or_checkpoints():
    assert set(run.SUMMARY_FILES) <= set(NAMES.values())
    assert not {filenames.MODEL_WEIGHTS, filenames.BEST_WEIGHTS, filenames.CHECKPOINTS} & set(
        run.SUMMARY_FILES)


def test_fresh_clears_every_run_file_but_the_lock_the_sweeps_records_and_workers(tmp_path):
    """--fresh must know every name a training writes: a name added here but not there
    would survive into the new run. It keeps the lock (held by the training that clears),
    the sweep runner's train.log and runner.json (its attempts), and workers/ (each
    multi-worker process clears its own)."""
    for name in set(NAMES.values()) - EXPORT_NAMES:
        if name in RUN_DIRS:
            os.makedirs(tmp_path / name / "inner")
        else:
            (tmp_path / name).write_text("old")
    rundir.RunDir(str(tmp_path)).prepare(config_lib.base_config(), fresh=True)
    assert sorted(os.listdir(tmp_path)) == sorted([
        filenames.CONFIG, filenames.LOCK, filenames.TRAIN_LOG, filenames.RUNNER_RECORD,
        filenames.WORKERS_DIR])
    assert (tmp_path / filenames.CONFIG).read_text() != "old"
