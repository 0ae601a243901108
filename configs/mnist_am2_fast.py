r"""AM2 on the paper's semi-unsupervised MNIST split: M2's fast recipe (Table 1's am2_fast),
the model with its auxiliary latent a (`configs/mnist_am2.py`).

The recipe is `configs/mnist_m2_fast.py`'s, setting for setting, so that the row shows what
the auxiliary variable adds (results/table1/recipe.md gives the why of each):
  * Adam learning rate 1e-3, 25 extra slots (35), a uniform p(y) (config.fast_recipe);
  * 20 epochs, one initialisation per seed, a constant rate.

  python -m gmdgm_tf.train --config=configs/mnist_am2_fast.py --workdir=runs/am2_fast \
      --config.data.dir=/path/to/mnist

/path/to/mnist: a folder holding the four MNIST IDX files (without data.dir, MNIST comes
from TensorFlow Datasets). `--config=configs/mnist_am2_fast.py:smoke` shrinks it to a
seconds-long run.
"""

from gmdgm_tf.config import apply_arg, base_config, fast_recipe


def get_config(arg=None):
    config = fast_recipe(base_config())
    config.model.name = "am2"
    config.train.epochs = 20
    return apply_arg(config, arg)
