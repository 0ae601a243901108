"""Experiment configs: the defaults, the allowed choices and every check, in one place.

Every config file in configs/ starts from `base_config()` (the paper's model and
optimiser: Willetts et al., Sec. 4: MLPs of 2 x 500 ReLU units, z of 100 dimensions,
Glorot-normal kernels, a Gaussian prior on the weights, Adam, 100 labelled + 100
unlabelled examples per step) and ends with `apply_arg(config, arg)`. `validate(config)`
is the only place a config value is checked; the rest of the package trusts a validated
config. Checks that need the data (a labelled class the dataset lacks, too few examples,
a prior of the wrong length) are made by data.py when it loads the data.

Config files are passed by path (`--config=configs/X.py[:smoke]`, or `load(path)` from
Python); nothing in the package locates them.
"""

import difflib
import importlib.util
import math
import os

import ml_collections

from gmdgm_tf import registry

MODELS = registry.NAMES
LIKELIHOODS = ("bernoulli", "gaussian")
PRECISIONS = ("float32", "mixed_bfloat16")
SELECTIONS = ("best_validation", "last")
ALPHA_SCALINGS = ("none", "kingma")
# p(y) when data.prior is not given: "paper" is the rule of the paper's text (each
# labelled-class slot 1/num_classes, the rest shared equally by the other slots);
# "uniform" is 1/num_slots everywhere, what the authors' code gave M2 (no prior argument).
PRIOR_RULES = ("paper", "uniform")
# data.source: a named dataset, any TensorFlow Datasets image-classification dataset as
# "tfds:<name>", or a NumPy file of the user's own as "npz:<path>" (see data.py).
SOURCES = ("digits", "mnist", "fashion_mnist")
SOURCE_KINDS = ("tfds", "npz")
# Data fields only some sources read: set for another source they would be ignored, so
# validate() refuses them (field -> the source kinds that read it, and what to use instead).
SOURCE_FIELDS = {
    "data.dir": (("mnist", "fashion_mnist"), {"tfds": "data.tfds_dir for a TFDS directory",
                                              "npz": "the file's path in data.source"}),
    "data.tfds_dir": (("mnist", "fashion_mnist", "tfds"),
                      {"npz": "the file's path in data.source"}),
}  # not data.test_size: configs/digits_gmdgm.py sets it, and is run with other sources
STRATEGIES = ("auto", "tpu", "mirrored", "multi_worker", "none")
CHOICES = {
    "model.name": MODELS, "model.likelihood": LIKELIHOODS,
    "model.alpha_scaling": ALPHA_SCALINGS, "train.precision": PRECISIONS,
    "train.select": SELECTIONS, "data.prior_rule": PRIOR_RULES,
    "train.strategy": STRATEGIES,
}
_LABELS = {"model.name": "model", "data.source": "dataset", "model.likelihood": "likelihood",
           "train.precision": "precision"}  # how errors name these fields
# Fields added after runs were filed: a config.json without one ran with this value, so a
# resume or a comparison does not count it as a different experiment.
ADDED_FIELDS = {"data.to_grayscale": False, "data.prior_rule": "paper", "train.restarts": 1,
                "train.restart_epochs": 0, "train.restart_index": 0, "optimizer.decay_epoch": 0,
                "optimizer.decay_factor": 0.1, "model.aux_dim": 100,
                "model.aux_predict_samples": 10, "model.weight_prior_scale": 1.0,
                "model.binarize": True}
# Restart k of seed s initialises its networks and noise with seed s + k * this stride
# (its split and batch order stay those of seed s); k = 0 is the seed's own initialisation.
RESTART_SEED_STRIDE = 100_003
CONFIG_ARGS = ("", "smoke")  # what a config file's get_config(arg) accepts
# Fields that say how long, how loudly or where to run, not what the experiment is: a
# workdir may be resumed with other values (the same maths on any hardware).
NOT_EXPERIMENT = ("train.epochs", "train.max_minutes", "train.verbose", "train.figures",
                  "train.sample_grid_every",
                  "train.checkpoint_every_steps", "train.keep_checkpoints", "data.dir",
                  "data.tfds_dir", "train.strategy", "train.tpu_address")
# Of those, the fields that name places on one machine: run records and filed summaries
# leave them out (blank), so that they read the same wherever they are opened.
MACHINE_ONLY = ("data.dir", "data.tfds_dir", "train.tpu_address")


class ConfigError(ValueError):
    """A config value that cannot work; raised before anything is written."""


def base_config() -> ml_collections.ConfigDict:
    """The paper's settings; every config file starts from these."""
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.data = ml_collections.ConfigDict()
    config.data.source = "mnist"            # digits | (fashion_)mnist | tfds:<name> | npz:<path>
    config.data.dir = ""                    # IDX directory; "" -> (mnist) $GMDGM_DATA_DIR, TFDS
    config.data.tfds_dir = ""               # TFDS data_dir ("" -> TFDS default)
    config.data.to_grayscale = False        # colour images -> luminance (else refused)
    config.data.validation_size = 10000     # held out from train (as the paper's code)
    config.data.test_size = 0               # only for sources without a test split (digits)
    config.data.test_split_seed = 0         # fixed, so every seed scores the same test set
    config.data.labelled_classes = (0, 1, 2, 8, 9)
    config.data.labels_per_class = 100
    config.data.num_extra_slots = 5         # y has 10 + 5 = 15 slots
    config.data.prior = ml_collections.config_dict.placeholder(tuple)  # None -> prior_rule
    config.data.prior_rule = "paper"        # paper | uniform (see PRIOR_RULES)
    config.data.pixel_std_threshold = 0.1   # keep pixels with train std > 0.1; 0 -> all
    config.data.labelled_batch_size = 100
    config.data.unlabelled_batch_size = 100

    config.model = ml_collections.ConfigDict()
    config.model.name = "gmdgm"             # a name of registry.MODELS
    config.model.hidden_sizes = (500, 500)
    config.model.z_dim = 100
    config.model.likelihood = "bernoulli"   # bernoulli | gaussian
    # Bernoulli: draw binary pixels afresh at each step (dynamic binarisation, the paper's);
    # False takes the grey levels themselves as the targets (the cross-entropy).
    config.model.binarize = True
    config.model.alpha = 1.1                # weight of mean log q(y_l|x_l) (paper's code)
    config.model.alpha_scaling = "none"     # none | kingma (alpha * N_train / N_labelled)
    config.model.output_stddev = 1e-3       # small-normal init of distribution heads
    config.model.weight_prior = True        # N(0, I) prior on kernels, scaled by 1/N_train
    # The weight of that prior's term. The authors' M2 script sets alpha 1.1 and this 0.5
    # but passes them to its base class in swapped order (results/table1/recipe.md).
    config.model.weight_prior_scale = 1.0
    config.model.prior_loc_stddev = 0.1     # GM-DGM: init of the per-slot means of p(z|y)
    config.model.aux_dim = 100              # AGM-DGM, AM2: dimensions of the auxiliary a
    config.model.aux_predict_samples = 10   # AGM-DGM, AM2: draws of a a prediction averages

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.learning_rate = 3e-4
    config.optimizer.clipvalue = 1.0
    # A step decay: the epochs after the first decay_epoch train at learning_rate *
    # decay_factor. Counted from the run's start, so a run extended past decay_epoch
    # trains exactly as one started with the longer budget.
    config.optimizer.decay_epoch = 0        # 0: the rate never changes
    config.optimizer.decay_factor = 0.1

    config.train = ml_collections.ConfigDict()
    config.train.epochs = 100
    config.train.steps_per_epoch = 0        # 0 -> one pass over the unlabelled pool
    config.train.max_minutes = 0.0          # 0 -> no wall-clock budget
    config.train.select = "best_validation"  # best_validation | last
    config.train.precision = "float32"      # float32 | mixed_bfloat16
    config.train.jit_compile = False        # XLA on CPU measured slower: docs/performance.md
    config.train.verbose = 0                # 1: Keras progress bar per epoch
    config.train.checkpoint_every_steps = 200  # besides every epoch; 0 -> epochs only
    config.train.keep_checkpoints = 3
    config.train.figures = True             # confusion/assignment/sample PNGs at the end
    config.train.sample_grid_every = 5      # epochs between TensorBoard sample grids; 0: none
    config.train.deterministic = False      # True: TF op determinism (bitwise reruns)
    # Best of several initialisations, chosen on validation (k-means' n_init; see
    # experiment.py): restarts > 1 trains that many initialisations of the seed for
    # restart_epochs epochs each, then trains on the one with the best validation accuracy.
    config.train.restarts = 1               # 1: the seed's own initialisation only
    config.train.restart_epochs = 0         # epochs before the choice (restarts > 1)
    config.train.restart_index = 0          # which initialisation of the seed (model_seed)
    # tf.distribute (see distribute.py): auto | tpu | mirrored | multi_worker | none.
    # Batch sizes stay global: each is split evenly across the replicas.
    config.train.strategy = "auto"
    config.train.tpu_address = ""           # tpu: "" (TPU_NAME/Colab/TPU VM), "local",
                                            # a Cloud TPU name or grpc://host:port
    return config


def fast_recipe(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The fast recipe's settings that both models share (ours, not the paper's; chosen on
    validation, results/table1/recipe.md): Adam at 1e-3, 25 extra slots (35) and a uniform
    p(y). Each fast config adds what is its model's alone (budget, restarts, decay)."""
    config.optimizer.learning_rate = 1e-3
    config.data.num_extra_slots = 25
    config.data.prior_rule = "uniform"
    return config


def gmdgm_fast_recipe(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """GM-DGM's fast recipe (AGM-DGM's too): `fast_recipe` plus what was probed and adopted
    for GM-DGM alone: the best of 3 initialisations at epoch 5, and 50 epochs, the last 10
    at a tenfold lower rate."""
    fast_recipe(config)
    config.optimizer.decay_epoch = 40
    config.optimizer.decay_factor = 0.1
    config.train.epochs = 50
    config.train.restarts = 3
    config.train.restart_epochs = 5
    return config


def model_seed(config) -> int:
    """The seed of the networks' initialisation and the training noise (RESTART_SEED_STRIDE)."""
    return config.seed + RESTART_SEED_STRIDE * config.train.restart_index


def shrink(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """big_vision-style `runlocal`: the same experiment, tiny, for smoke runs and CI."""
    config.model.hidden_sizes = (32, 32)
    config.model.z_dim = 8
    config.train.epochs = 2
    config.train.steps_per_epoch = 5
    config.train.verbose = 0
    config.train.figures = False
    if config.train.restarts > 1:
        config.train.restart_epochs = 1     # still a choice among candidates, 1 epoch each
    return config


def apply_arg(config: ml_collections.ConfigDict, arg=None) -> ml_collections.ConfigDict:
    """A config file's `get_config(arg)` argument: none, or "smoke" (see `shrink`).

    Anything else is refused, so a typo (`:smok`) cannot silently train the full config."""
    arg = arg or ""
    if arg not in CONFIG_ARGS:
        raise ConfigError(f"unknown config argument {arg!r}; choose one of "
                          f"{[a for a in CONFIG_ARGS if a]} or none")
    return shrink(config) if arg == "smoke" else config


def load(path: str, overrides=()) -> ml_collections.ConfigDict:
    """'configs/X.py[:arg]' -> get_config(arg), with (field, value) overrides applied.

    What `--config=` does in the training command, for Python callers (sweeps,
    benchmarks, tests). The result is not yet validated.
    """
    path, _, arg = path.partition(":")
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    spec = importlib.util.spec_from_file_location(
        "gmdgm_config_" + os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(arg or None)
    for field, value in dict(overrides).items():
        set_field(config, field, value)
    return config


def error_line(error) -> str:
    """The last non-empty line of a config-loading error's message: config_flags embeds
    whole tracebacks, whose last line names the mistake; the type's name when empty."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def check_fields(config, names):
    """Refuses (ConfigError) the first dotted name in `names` ('model.z_dim') that is not a
    field of config, naming the closest field: what `--config.FIELD=` overrides must be."""
    def leaves(node, prefix=""):
        for key, value in node.items():
            yield from leaves(value, f"{prefix}{key}.") if hasattr(value, "items") \
                else [prefix + key]
    known = list(leaves(config))
    for name in names:
        if name not in known:
            match = difflib.get_close_matches(name, known, n=1)
            raise ConfigError(f"unknown config field --config.{name}"
                              + (f" (did you mean --config.{match[0]}?)" if match else ""))


def set_field(config, dotted: str, value):
    """config['a.b.c'] = value for an existing field (ConfigDict checks the type)."""
    *parents, leaf = dotted.split(".")
    node = config
    for key in parents:
        if key not in node:
            raise ConfigError(f"config has no field {dotted!r}")
        node = node[key]
    if leaf not in node:
        raise ConfigError(f"config has no field {dotted!r}")
    node[leaf] = value


def config_differences(old, new):
    """Experiment-defining fields that differ between two config dicts -> ['key: a -> b']."""
    def flatten(d, prefix=""):
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flatten(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out
    old, new = ({**ADDED_FIELDS, **flatten(d)} for d in (old, new))
    keys = sorted((set(old) | set(new)) - set(NOT_EXPERIMENT))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def parse_source(source) -> tuple:
    """data.source -> (kind, name): 'mnist' -> ('mnist', 'mnist'), 'tfds:kmnist' ->
    ('tfds', 'kmnist'), 'npz:data/my.npz' -> ('npz', 'data/my.npz'). Raises ConfigError."""
    if isinstance(source, str):
        if source in SOURCES:
            return source, source
        kind, sep, name = source.partition(":")
        if sep and kind in SOURCE_KINDS and name.strip():
            return kind, name.strip()
    raise ConfigError(
        f"unknown dataset {source!r}; choose one of {list(SOURCES)}, "
        "'tfds:<name>' (a TensorFlow Datasets image-classification dataset) or "
        "'npz:<path>' (a NumPy file with x_train, y_train, x_test, y_test)")


def _int_at_least(value, low):
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _positive_int(value):
    return _int_at_least(value, 1)


def _finite(value, low=-math.inf, strict=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and (value > low if strict else value >= low)


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Checks every field that does not need the data; raises ConfigError naming the field.

    Returns the config, so `validate(load(path))` reads naturally."""
    for field, allowed in CHOICES.items():
        section, name = field.split(".")
        value = config[section][name]
        if value not in allowed:
            label = _LABELS.get(field, field)
            raise ConfigError(f"unknown {label} {value!r}; choose one of {list(allowed)}")
    kind, _ = parse_source(config.data.source)
    for field, (kinds, instead) in SOURCE_FIELDS.items():
        value = config.data[field.split(".")[1]]
        if value and kind not in kinds:
            hint = f"; use {instead[kind]}" if kind in instead else ""
            raise ConfigError(f"{field} is read only for data.source {' or '.join(kinds)}, "
                              f"not {config.data.source!r}{hint}")
    d, m, o, t = config.data, config.model, config.optimizer, config.train
    labelled = tuple(d.labelled_classes)
    checks = [
        (_int_at_least(config.seed, 0),
         f"seed must be an integer >= 0, got {config.seed!r}"),
        (all(_int_at_least(c, 0) for c in labelled),
         f"data.labelled_classes must be class indices >= 0, got {list(labelled)}"),
        (len(set(labelled)) == len(labelled),
         f"data.labelled_classes has duplicates: {list(labelled)}"),
        (not labelled or _positive_int(d.labels_per_class),
         f"data.labels_per_class must be >= 1 when classes are labelled, got "
         f"{d.labels_per_class!r}"),
        (_int_at_least(d.num_extra_slots, 0),
         f"data.num_extra_slots must be >= 0, got {d.num_extra_slots}"),
        (_positive_int(d.validation_size),
         f"data.validation_size must be >= 1, got {d.validation_size!r}"),
        (_int_at_least(d.test_size, 0),
         f"data.test_size must be >= 0, got {d.test_size!r}"),
        (_int_at_least(d.test_split_seed, 0),
         f"data.test_split_seed must be an integer >= 0, got {d.test_split_seed!r}"),
        (_finite(d.pixel_std_threshold, 0.0),
         f"data.pixel_std_threshold must be finite and >= 0, got {d.pixel_std_threshold!r}"),
        (_positive_int(d.labelled_batch_size),
         f"data.labelled_batch_size must be >= 1, got {d.labelled_batch_size!r}"),
        (_positive_int(d.unlabelled_batch_size),
         f"data.unlabelled_batch_size must be >= 1, got {d.unlabelled_batch_size!r}"),
        (len(m.hidden_sizes) >= 1 and all(_positive_int(h) for h in m.hidden_sizes),
         f"model.hidden_sizes must be one or more sizes >= 1, got {m.hidden_sizes!r}"),
        (_positive_int(m.z_dim), f"model.z_dim must be >= 1, got {m.z_dim!r}"),
        (_finite(m.alpha, 0.0), f"model.alpha must be finite and >= 0, got {m.alpha!r}"),
        (_finite(m.output_stddev, 0.0, strict=True),
         f"model.output_stddev must be finite and > 0, got {m.output_stddev!r}"),
        (_finite(m.weight_prior_scale, 0.0),
         f"model.weight_prior_scale must be finite and >= 0, got {m.weight_prior_scale!r}"),
        (_positive_int(m.aux_dim), f"model.aux_dim must be >= 1, got {m.aux_dim!r}"),
        (_positive_int(m.aux_predict_samples),
         f"model.aux_predict_samples must be >= 1, got {m.aux_predict_samples!r}"),
        (_finite(m.prior_loc_stddev, 0.0),
         f"model.prior_loc_stddev must be finite and >= 0, got {m.prior_loc_stddev!r}"),
        (_finite(o.learning_rate, 0.0, strict=True),
         f"optimizer.learning_rate must be finite and > 0, got {o.learning_rate!r}"),
        (o.clipvalue is None or _finite(o.clipvalue, 0.0, strict=True),
         f"optimizer.clipvalue must be None or finite and > 0, got {o.clipvalue!r}"),
        (_int_at_least(o.decay_epoch, 0),
         f"optimizer.decay_epoch must be an integer >= 0, got {o.decay_epoch!r}"),
        (_finite(o.decay_factor, 0.0, strict=True) and o.decay_factor <= 1.0,
         f"optimizer.decay_factor must be in (0, 1], got {o.decay_factor!r}"),
        (_positive_int(t.epochs), f"train.epochs must be >= 1, got {t.epochs!r}"),
        (_int_at_least(t.steps_per_epoch, 0),
         f"train.steps_per_epoch must be >= 0, got {t.steps_per_epoch!r}"),
        (_finite(t.max_minutes, 0.0),
         f"train.max_minutes must be finite and >= 0, got {t.max_minutes!r}"),
        (_int_at_least(t.checkpoint_every_steps, 0),
         f"train.checkpoint_every_steps must be >= 0, got {t.checkpoint_every_steps!r}"),
        (_int_at_least(t.sample_grid_every, 0),
         f"train.sample_grid_every must be >= 0, got {t.sample_grid_every!r}"),
        (_positive_int(t.keep_checkpoints),
         f"train.keep_checkpoints must be >= 1, got {t.keep_checkpoints!r}"),
        (_positive_int(t.restarts), f"train.restarts must be >= 1, got {t.restarts!r}"),
        (_int_at_least(t.restart_index, 0),
         f"train.restart_index must be an integer >= 0, got {t.restart_index!r}"),
        (t.restarts == 1 or (_positive_int(t.restart_epochs) and t.restart_epochs <= t.epochs),
         f"train.restart_epochs must be between 1 and train.epochs ({t.epochs}) when "
         f"train.restarts > 1, got {t.restart_epochs!r}"),
        (t.restarts > 1 or t.restart_epochs == 0,
         "train.restart_epochs is read only when train.restarts > 1; leave it 0"),
        (t.restarts == 1 or not t.max_minutes,
         "train.max_minutes cannot be combined with train.restarts > 1 (the budget could end "
         "a candidate before the choice); set one of them"),
    ]
    if d.prior is not None:
        prior = [float(p) for p in d.prior]
        checks += [
            (all(math.isfinite(p) and p > 0 for p in prior),
             "data.prior entries must be finite and > 0"),
            (abs(sum(prior) - 1.0) <= 1e-6, f"data.prior must sum to 1, sums to {sum(prior):.6g}"),
        ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    return config
