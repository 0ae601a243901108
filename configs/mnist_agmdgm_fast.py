r"""AGM-DGM on the paper's semi-unsupervised MNIST split: GM-DGM's fast recipe (Table 1's
agmdgm_fast), the model with its auxiliary latent a (`configs/mnist_agmdgm.py`).

The recipe is `configs/mnist_gmdgm_fast.py`'s (config.gmdgm_fast_recipe), setting for
setting, so that the row shows what the auxiliary variable adds (results/table1/recipe.md
gives the why of each):
  * Adam learning rate 1e-3, 25 extra slots (35), a uniform p(y) (config.fast_recipe);
  * the best of 3 initialisations by validation accuracy at epoch 5;
  * 50 epochs, the last 10 at a tenfold lower rate (optimizer.decay_epoch = 40).

  python -m gmdgm_tf.train --config=configs/mnist_agmdgm_fast.py \
      --workdir=runs/agmdgm_fast --config.data.dir=/path/to/mnist

/path/to/mnist: a folder holding the four MNIST IDX files (without data.dir, MNIST comes
from TensorFlow Datasets). `--config=configs/mnist_agmdgm_fast.py:smoke` shrinks it to a
seconds-long run.
"""

from gmdgm_tf.config import apply_arg, base_config, gmdgm_fast_recipe


def get_config(arg=None):
    config = gmdgm_fast_recipe(base_config())
    config.model.name = "agmdgm"
    return apply_arg(config, arg)
