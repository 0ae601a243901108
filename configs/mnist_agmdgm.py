r"""AGM-DGM (GM-DGM with an auxiliary latent a) on the paper's semi-unsupervised MNIST split.

The paper's settings, as configs/mnist_gmdgm.py: digits 0,1,2,8,9 with 100 labels each,
3-7 unlabelled; 15 slots with the paper's p(y) rule; MLPs of 2 x 500; z of 100; Adam at
3e-4. The auxiliary a has model.aux_dim = 100 dimensions, and a prediction averages
q(y|a,x) over model.aux_predict_samples = 10 fixed draws of a.

  python -m gmdgm_tf.train --config=configs/mnist_agmdgm.py --workdir=runs/mnist_agmdgm \
      --config.data.dir=/path/to/mnist

(without --config.data.dir, MNIST comes from TensorFlow Datasets.)
`--config=configs/mnist_agmdgm.py:smoke` shrinks it to a seconds-long run (CI, tests).
"""

from gmdgm_tf.config import apply_arg, base_config


def get_config(arg=None):
    config = base_config()
    config.model.name = "agmdgm"
    return apply_arg(config, arg)
