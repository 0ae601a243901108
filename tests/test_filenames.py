"""File names live in gmdgm_tf.filenames, which imports nothing: the sweep tools read run
directories by them without TensorFlow, and predict.py's own copy agrees."""

import subprocess
import sys

from gmdgm_tf import filenames, predict, rundir
from gmdgm_tf.sweeps import run


def test_the_sweep_tools_share_the_names_without_importing_tensorflow():
    code = ("import sys\n"
            "import gmdgm_tf.filenames, gmdgm_tf.sweeps.run, gmdgm_tf.sweeps.report\n"
            "heavy = [m for m in sys.modules\n"
            "         if m.split('.')[0] in ('tensorflow', 'keras', 'tensorflow_probability')]\n"
            "sys.exit(f'imported {heavy[:3]}' if heavy else 0)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_writers_and_readers_use_the_same_names():
    assert predict.METADATA_FILE == filenames.EXPORT_METADATA   # predict.py stands alone
    assert (rundir.CONFIG, rundir.METRICS, rundir.HISTORY) == (
        filenames.CONFIG, filenames.METRICS, filenames.HISTORY)
    # A sweep's summary is the run's small files: never weights or checkpoints.
    assert set(filenames.FIGURES) <= set(run.SUMMARY_FILES)
    assert not {filenames.MODEL_WEIGHTS, filenames.BEST_WEIGHTS, filenames.CHECKPOINTS} & set(
        run.SUMMARY_FILES)
