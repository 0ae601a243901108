r"""M2 on the paper's semi-unsupervised MNIST split.

Digits 0,1,2,8,9 have 100 labels each; 3-7 have none. y has 15 slots; p(y) is 1/10 for
each labelled-class slot and 1/20 for the other ten. 444 pixels (train std > 0.1).
float32, as the paper. On hardware with fast bfloat16 matmuls (TPUs, AMX CPUs)
`--config.train.precision=mixed_bfloat16` matched float32 accuracy per epoch and was
faster per minute (docs/performance.md); on AVX2-only CPUs it is not faster.

  python -m gmdgm_tf.train --config=configs/mnist_m2.py --workdir=runs/mnist_m2 \
      --config.data.dir=/path/to/mnist

/path/to/mnist: a folder holding the four MNIST IDX files (without data.dir, MNIST comes
from TensorFlow Datasets). `--config=configs/mnist_m2.py:smoke` shrinks it to a seconds-long
run (CI, tests).
"""

from gmdgm_tf.config import apply_arg, base_config


def get_config(arg=None):
    config = base_config()
    config.model.name = "m2"
    return apply_arg(config, arg)
