r"""GM-DGM on MNIST without any labels: unsupervised clustering, scored by cluster-and-label.

All 50,000 training images outside the validation split are unlabelled; the 10,000
validation images are held out for the slot map and model selection. 10 + 20 slots with a
uniform p(y), the count chosen on validation by the slot probe (results/regimes/recipe.md).
GM-DGM's fast recipe (config.gmdgm_fast_recipe: Adam at 1e-3, the best of 3 initialisations
by validation accuracy at epoch 5) at a constant rate for 100 epochs (still rising there;
recipe.md says why the runs stop). Accuracy: the heldout protocol (slots named on
validation, scored on test), with NMI and ARI beside it. The later paper reports
96.3 +- 0.9 % on MNIST.

  python -m gmdgm_tf.train --config=configs/mnist_gmdgm_unsup.py \
      --workdir=runs/gmdgm_unsup --config.data.dir=/path/to/mnist

/path/to/mnist: a folder holding the four MNIST IDX files (without data.dir, MNIST comes
from TensorFlow Datasets). `--config.model.name=agmdgm` runs the auxiliary model;
`:smoke` shrinks it to a seconds-long run.
"""

from gmdgm_tf.config import apply_arg, base_config, gmdgm_fast_recipe


def get_config(arg=None):
    config = gmdgm_fast_recipe(base_config())
    config.model.name = "gmdgm"
    config.data.labelled_classes = ()
    config.data.num_extra_slots = 20
    config.optimizer.decay_epoch = 0        # no rate cut: the runs can be trained on
    config.train.epochs = 100
    return apply_arg(config, arg)
