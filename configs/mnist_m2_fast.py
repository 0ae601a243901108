r"""M2 on the paper's semi-unsupervised MNIST split: the fast recipe (ours, not the paper's).

The same departures from the paper as `configs/mnist_gmdgm_fast.py`, so that the two
models are compared at one recipe: Adam learning rate 1e-3 instead of 3e-4, and 25 extra
slots (35) with the paper's prior rule, 20 epochs. `--config.data.prior_rule=uniform` gives M2 as
the authors' code built it (a uniform p(y) over all slots).

  python -m gmdgm_tf.train --config=configs/mnist_m2_fast.py --workdir=runs/m2_fast \
      --config.data.dir=../shared/data/mnist

`--config=configs/mnist_m2_fast.py:smoke` shrinks it to a seconds-long run.
"""

from gmdgm_tf.config import apply_arg, base_config


def get_config(arg=None):
    config = base_config()
    config.model.name = "m2"
    config.optimizer.learning_rate = 1e-3
    config.data.num_extra_slots = 25
    config.train.epochs = 20
    return apply_arg(config, arg)
