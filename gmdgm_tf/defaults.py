"""Defaults every experiment config starts from: the paper's model and optimiser.

Willetts et al., "Semi-unsupervised learning with deep generative models", Sec. 4:
MLPs with 2 hidden layers of 500 ReLU units, z of 100 dimensions, Glorot-normal kernels,
a Gaussian prior on the weights, Adam; 100 labelled + 100 unlabelled examples per step.
"""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.data = ml_collections.ConfigDict()
    config.data.source = "mnist"            # digits | mnist | fashion_mnist
    config.data.dir = ""                    # IDX directory; "" -> $GMDGM_DATA_DIR, then TFDS
    config.data.tfds_dir = ""               # TFDS data_dir ("" -> TFDS default)
    config.data.validation_size = 10000     # held out from train (as the paper's code)
    config.data.test_size = 0               # only for sources without a test split (digits)
    config.data.test_split_seed = 0         # fixed, so every seed scores the same test set
    config.data.labelled_classes = (0, 1, 2, 8, 9)
    config.data.labels_per_class = 100
    config.data.num_extra_slots = 5         # y has 10 + 5 = 15 slots
    config.data.prior = ml_collections.config_dict.placeholder(tuple)  # None -> prior_rule
    config.data.prior_rule = "paper"        # paper (1/10 labelled slots, rest shared) | uniform
    config.data.pixel_std_threshold = 0.1   # keep pixels with train std > 0.1; 0 -> all
    config.data.labelled_batch_size = 100
    config.data.unlabelled_batch_size = 100

    config.model = ml_collections.ConfigDict()
    config.model.name = "gmdgm"             # gmdgm | m2
    config.model.hidden_sizes = (500, 500)
    config.model.z_dim = 100
    config.model.likelihood = "bernoulli"   # bernoulli | gaussian
    config.model.alpha = 1.1                # weight of mean log q(y_l|x_l) (paper's code)
    config.model.alpha_scaling = "none"     # none | kingma (alpha * N_train / N_labelled)
    config.model.output_stddev = 1e-3       # small-normal init of distribution heads
    config.model.weight_prior = True        # N(0, I) prior on kernels, scaled by 1/N_train
    config.model.prior_loc_stddev = 0.1     # GM-DGM: init of the per-slot means of p(z|y)

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.learning_rate = 3e-4
    config.optimizer.clipvalue = 1.0

    config.train = ml_collections.ConfigDict()
    config.train.epochs = 100
    config.train.steps_per_epoch = 0        # 0 -> one pass over the unlabelled pool
    config.train.max_minutes = 0.0          # 0 -> no wall-clock budget
    config.train.select = "best_validation"  # best_validation | last
    config.train.precision = "float32"      # float32 | mixed_bfloat16
    config.train.jit_compile = False        # XLA on CPU measured slower, see README
    config.train.verbose = 0                # 1: Keras progress bar per epoch
    config.train.checkpoint_every_steps = 200  # besides every epoch; 0 -> epochs only
    config.train.keep_checkpoints = 3
    config.train.figures = True             # confusion/assignment/sample PNGs at the end
    config.train.deterministic = False      # True: TF op determinism (bitwise reruns)
    # tf.distribute (see distribute.py): auto | tpu | mirrored | multi_worker | none.
    # Batch sizes stay global: each is split evenly across the replicas.
    config.train.strategy = "auto"
    config.train.tpu_address = ""           # tpu: "" (TPU_NAME/Colab/TPU VM), "local",
                                            # a Cloud TPU name or grpc://host:port
    return config


CONFIG_ARGS = ("", "smoke")


def apply_arg(config: ml_collections.ConfigDict, arg=None) -> ml_collections.ConfigDict:
    """A config file's `get_config(arg)` argument: none, or "smoke" (see `shrink`).

    Anything else is refused, so a typo (`:smok`) cannot silently train the full config."""
    arg = arg or ""
    if arg not in CONFIG_ARGS:
        raise ValueError(f"unknown config argument {arg!r}; choose one of "
                         f"{[a for a in CONFIG_ARGS if a]} or none")
    return shrink(config) if arg == "smoke" else config


def shrink(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """big_vision-style `runlocal`: the same experiment, tiny, for smoke runs and CI."""
    config.model.hidden_sizes = (32, 32)
    config.model.z_dim = 8
    config.train.epochs = 2
    config.train.steps_per_epoch = 5
    config.train.verbose = 0
    config.train.figures = False
    return config
