r"""GM-DGM on scikit-learn's 8x8 digits: the offline default, 3-6 minutes on 2 CPU cores.

The paper's split scaled down: digits 0,1,2,8,9 with 10 labels each, 3-7 unlabelled,
15 slots with the paper's prior rule. 1797 images: 400 test, 300 validation.
One departure from the paper's settings: Adam learning rate 1e-3 (paper: 3e-4), chosen
on the validation split, never the test split (results/digits/recipe.md).

  python -m gmdgm_tf.train --config=configs/digits_gmdgm.py --workdir=runs/digits
"""

from gmdgm_tf.config import apply_arg, base_config


def get_config(arg=None):
    config = base_config()
    config.data.source = "digits"
    config.data.test_size = 400
    config.data.validation_size = 300
    config.data.labels_per_class = 10
    config.data.pixel_std_threshold = 0.0    # 64 pixels: keep them all
    config.data.labelled_batch_size = 50
    config.data.unlabelled_batch_size = 50
    config.model.name = "gmdgm"
    config.model.hidden_sizes = (256, 256)
    config.model.z_dim = 32
    config.optimizer.learning_rate = 1e-3
    config.train.epochs = 300
    return apply_arg(config, arg)
