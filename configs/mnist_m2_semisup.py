r"""M2 on semi-supervised MNIST: every class has 10 labels (100 in all), 10 slots.

The paper's networks, optimiser and batch sizes (configs/mnist_m2.py); every training
image outside the 100 labelled ones and the validation split is unlabelled. Each slot is
its labelled class, so cluster-and-label is the identity: accuracy is the plain argmax of
q(y|x), and both protocols report the same number. Kingma et al. (2014) report 88.0 % for
M2 (error 11.97 +- 1.71). 150 epochs: the budget that the rule in
results/regimes/recipe.md settled on (its readings are there).

  python -m gmdgm_tf.train --config=configs/mnist_m2_semisup.py \
      --workdir=runs/m2_semisup --config.data.dir=/path/to/mnist

/path/to/mnist: a folder holding the four MNIST IDX files (without data.dir, MNIST comes
from TensorFlow Datasets). `--config.model.name=am2` runs the auxiliary model (the ADGM:
Maaloe et al., 2016, report 99.04 %);
`:smoke` shrinks it to a seconds-long run.
"""

from gmdgm_tf.config import apply_arg, base_config


def get_config(arg=None):
    config = base_config()
    config.model.name = "m2"
    config.data.labelled_classes = tuple(range(10))
    config.data.labels_per_class = 10
    config.data.num_extra_slots = 0
    config.train.epochs = 150
    return apply_arg(config, arg)
