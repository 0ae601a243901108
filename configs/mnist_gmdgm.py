r"""GM-DGM on the paper's semi-unsupervised MNIST split.

Digits 0,1,2,8,9 have 100 labels each; 3-7 have none. y has 15 slots; p(y) is 1/10 for
each labelled-class slot and 1/20 for the other ten. 444 pixels (train std > 0.1).
Matmuls in bfloat16 (log-probabilities, KL and the loss stay float32): on MNIST it
matched float32 accuracy per epoch and beat it per minute (README, Performance);
`--config.train.precision=float32` switches back.

  python -m gmdgm_tf.train --config=configs/mnist_gmdgm.py --workdir=runs/mnist_gmdgm \
      --config.data.dir=../shared/data/mnist

`--config=configs/mnist_gmdgm.py:smoke` shrinks it to a seconds-long run (CI, tests).
"""

from gmdgm_tf.config import apply_arg, base_config


def get_config(arg=None):
    config = base_config()
    config.model.name = "gmdgm"
    config.train.precision = "mixed_bfloat16"
    return apply_arg(config, arg)
