"""config.py: the one place configs are checked; every config file loads and validates."""

import copy
import glob
import os

import pytest

from gmdgm_tf import config as config_lib
from gmdgm_tf import models, registry
from conftest import REPO


CONFIG_FILES = sorted(glob.glob(os.path.join(REPO, "configs", "*.py")))
# What shrink() makes of any experiment: tiny networks, 2 epochs of 5 steps, quiet.
SHRUNK = {"model.hidden_sizes": (32, 32), "model.z_dim": 8, "train.epochs": 2,
          "train.steps_per_epoch": 5, "train.verbose": 0, "train.figures": False}


@pytest.mark.parametrize("path", CONFIG_FILES)
@pytest.mark.parametrize("arg", ["", ":smoke"])
def test_every_config_file_loads_and_validates(path, arg):
    config_lib.validate(config_lib.load(path + arg))


@pytest.mark.parametrize("path", CONFIG_FILES)
def test_smoke_is_the_experiment_shrunk_and_no_argument_is_the_experiment_itself(path):
    """`:smoke` changes only the fields shrink() sets, to its values (one restart epoch when
    there are restarts), and the file's own config is not already that small."""
    full, smoke = config_lib.load(path), config_lib.load(path + ":smoke")
    shrunk = dict(SHRUNK, **({"train.restart_epochs": 1} if full.train.restarts > 1 else {}))
    expected = copy.deepcopy(full)
    for field, value in shrunk.items():
        section, key = field.split(".")
        expected[section][key] = value
    assert smoke.to_dict() == expected.to_dict()
    for field in ("model.hidden_sizes", "model.z_dim", "train.epochs"):
        section, key = field.split(".")
        assert full[section][key] != shrunk[field], f"{field}: the config is already shrunk"


def test_the_fast_m2_recipe_is_the_fast_gmdgm_one_but_for_model_budget_restarts_decay():
    """Table 1 compares the models at one recipe; the budget differs (each model's
    validation plateau: GM-DGM 50 epochs, M2 20), and so do the best of 3 initialisations
    and the decay tail, probed for GM-DGM only (configs' docstrings)."""
    gmdgm, m2 = (config_lib.load(os.path.join(REPO, "configs", f"mnist_{m}_fast.py")).to_dict()
                 for m in ("gmdgm", "m2"))
    differ = {"train": ("epochs", "restarts", "restart_epochs"), "optimizer": ("decay_epoch",)}
    assert (gmdgm["model"]["name"], m2["model"]["name"]) == ("gmdgm", "m2")
    assert [gmdgm[s][k] for s, keys in differ.items() for k in keys] == [50, 3, 5, 40]
    assert [m2[s][k] for s, keys in differ.items() for k in keys] == [20, 1, 0, 0]
    for c in (gmdgm, m2):
        del c["model"]["name"]
        for section, keys in differ.items():
            for k in keys:
                del c[section][k]
    assert gmdgm == m2


def _flat(config, prefix=""):
    out = {}
    for k, v in config.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


@pytest.mark.parametrize("model", ["gmdgm", "m2", "agmdgm", "am2"])
def test_a_fast_config_departs_from_the_paper_only_where_its_docstring_says(model):
    """config.fast_recipe's three shared settings, plus each model's own: a setting added to
    one fast config (or to the shared recipe) must be named here to pass."""
    paper, fast = (_flat(config_lib.load(os.path.join(REPO, "configs", f"mnist_{model}{s}.py"))
                         .to_dict()) for s in ("", "_fast"))
    shared = {"optimizer.learning_rate": 1e-3, "data.num_extra_slots": 25,
              "data.prior_rule": "uniform"}
    own = {"gmdgm": {"train.epochs": 50, "train.restarts": 3, "train.restart_epochs": 5,
                     "optimizer.decay_epoch": 40},
           "m2": {"train.epochs": 20}}[{"agmdgm": "gmdgm", "am2": "m2"}.get(model, model)]
    assert {k: v for k, v in fast.items() if paper[k] != v} == {**shared, **own}


@pytest.mark.parametrize("auxiliary, plain", [("agmdgm", "gmdgm"), ("am2", "m2")])
@pytest.mark.parametrize("suffix", ["", "_fast"])
def test_an_auxiliary_models_configs_are_its_plain_models_but_for_the_name(auxiliary, plain,
                                                                         suffix):
    """AGM-DGM and AM2 rows differ from GM-DGM's and M2's by the auxiliary a alone."""
    aux, base = (_flat(config_lib.load(os.path.join(REPO, "configs", f"mnist_{m}{suffix}.py"))
                       .to_dict()) for m in (auxiliary, plain))
    assert {k: v for k, v in aux.items() if base[k] != v} == {"model.name": auxiliary}


def test_unknown_config_argument_is_refused():
    with pytest.raises(config_lib.ConfigError, match="unknown config argument 'smok'"):
        config_lib.load(os.path.join(REPO, "configs", "digits_gmdgm.py:smok"))


def test_missing_config_file_and_unknown_override_field():
    with pytest.raises(config_lib.ConfigError, match="config file not found"):
        config_lib.load("no/such/config.py")
    with pytest.raises(config_lib.ConfigError, match="no field 'train.epoch'"):
        config_lib.load(os.path.join(REPO, "configs", "digits_gmdgm.py"), {"train.epoch": 3})


def test_choices_match_what_the_package_implements():
    assert set(config_lib.MODELS) == set(registry.MODELS)
    for name in config_lib.MODELS:
        assert issubclass(registry.get(name).model_class(), models.DeepGenerativeModel)
    # strategies: tests/test_distribute.py checks that every choice has its own factory


def _with(field, value):
    config = config_lib.base_config()
    section, key = field.split(".")
    with config.unlocked():
        config[section][key] = value
    return config


@pytest.mark.parametrize("field, value, message", [
    ("model.name", "vae", "unknown model 'vae'; choose one of"),
    ("model.likelihood", "poisson", "unknown likelihood 'poisson'"),
    ("data.source", "cifar", "unknown dataset 'cifar'"),
    ("data.source", "npz:", "unknown dataset 'npz:'; choose one of"),
    ("data.source", "hf:mnist", r"'tfds:<name>' \(a TensorFlow Datasets image-classification"),
    ("train.precision", "float16", "unknown precision 'float16'"),
    ("train.select", "best_test", "unknown train.select"),
    ("model.alpha_scaling", "x", "unknown model.alpha_scaling"),
    ("data.prior_rule", "flat", "unknown data.prior_rule"),
    ("train.strategy", "gpu", "unknown train.strategy 'gpu'"),
    ("data.labelled_classes", (1, 1), "duplicates"),
    ("data.labelled_classes", (-1, 2), "class indices >= 0"),
    ("data.labels_per_class", 0, "labels_per_class must be >= 1"),
    ("data.num_extra_slots", -1, "num_extra_slots must be >= 0"),
    ("data.validation_size", 0, "validation_size must be >= 1"),
    ("data.test_split_seed", -1, "test_split_seed must be an integer >= 0"),
    ("data.labelled_batch_size", 0, "labelled_batch_size must be >= 1"),
    ("data.unlabelled_batch_size", -5, "unlabelled_batch_size must be >= 1"),
    ("data.prior", (0.5, 0.6, -0.1), "finite and > 0"),
    ("data.prior", (0.2, 0.2, 0.2), "sum to 1"),
    ("data.prior", (float("nan"), 0.5, 0.5), "finite and > 0"),
    ("model.z_dim", 0, "model.z_dim must be >= 1"),
    ("model.hidden_sizes", (500, 0), "model.hidden_sizes"),
    ("model.alpha", float("inf"), "model.alpha must be finite"),
    ("optimizer.learning_rate", -1.0, "optimizer.learning_rate must be finite and > 0"),
    ("optimizer.learning_rate", 0.0, "optimizer.learning_rate must be finite and > 0"),
    ("optimizer.learning_rate", float("nan"), "optimizer.learning_rate"),
    ("optimizer.clipvalue", 0.0, "optimizer.clipvalue"),
    ("optimizer.decay_epoch", -1, "optimizer.decay_epoch must be an integer >= 0"),
    ("optimizer.decay_factor", 0.0, r"optimizer.decay_factor must be in \(0, 1\]"),
    ("optimizer.decay_factor", 1.5, r"optimizer.decay_factor must be in \(0, 1\]"),
    ("train.epochs", 0, "train.epochs must be >= 1"),
    ("train.steps_per_epoch", -1, "train.steps_per_epoch must be >= 0"),
    ("train.max_minutes", -1.0, "train.max_minutes"),
    ("train.keep_checkpoints", 0, "train.keep_checkpoints must be >= 1"),
    ("seed", -1, "seed must be"),
    ("train.restarts", 0, "train.restarts must be >= 1"),
    ("train.restart_index", -1, "train.restart_index must be an integer >= 0"),
    ("train.restart_epochs", 3, "restart_epochs is read only when train.restarts > 1"),
])
def test_bad_values_are_refused_naming_the_field(field, value, message):
    if field == "seed":
        config = config_lib.base_config()
        config.seed = value
    else:
        config = _with(field, value)
    with pytest.raises(config_lib.ConfigError, match=message):
        config_lib.validate(config)


@pytest.mark.parametrize("field, message", [
    ("seed", "seed must be an integer >= 0"),
    ("data.num_extra_slots", "num_extra_slots must be >= 0"),
    ("data.test_size", "test_size must be >= 0"),
    ("train.steps_per_epoch", "steps_per_epoch must be >= 0"),
    ("train.checkpoint_every_steps", "checkpoint_every_steps must be >= 0"),
    ("train.sample_grid_every", "sample_grid_every must be >= 0"),
    ("optimizer.decay_epoch", "decay_epoch must be an integer >= 0"),
    ("train.restart_index", "restart_index must be an integer >= 0"),
])
def test_a_bool_is_not_an_integer(field, message):
    """ConfigDict takes True for an int field (bool is an int to Python); validate refuses it."""
    config = config_lib.base_config()
    config_lib.set_field(config, field, True)
    with pytest.raises(config_lib.ConfigError, match=message + ", got True"):
        config_lib.validate(config)


def test_a_bool_is_not_a_class_index():
    config = _with("data.labelled_classes", (True, 2))
    with pytest.raises(config_lib.ConfigError, match=r"class indices >= 0, got \[True, 2\]"):
        config_lib.validate(config)


@pytest.mark.parametrize("source, field, value, message", [
    ("tfds:kmnist", "dir", "/data/mnist", "data.dir is read only for data.source mnist or "
     "fashion_mnist, not 'tfds:kmnist'; use data.tfds_dir"),
    ("npz:my.npz", "dir", "/data", "data.dir .* not 'npz:my.npz'; use the file's path"),
    ("digits", "dir", "/data", r"data.dir .* not 'digits'$"),
    ("npz:my.npz", "tfds_dir", "/tfds", "data.tfds_dir is read only for data.source mnist or "
     "fashion_mnist or tfds"),
])
def test_a_data_field_the_source_would_ignore_is_refused(source, field, value, message):
    config = _with("data.source", source)
    config.data[field] = value
    with pytest.raises(config_lib.ConfigError, match=message):
        config_lib.validate(config)


def test_data_fields_of_the_chosen_source_are_accepted():
    for source, field, value in [("mnist", "dir", "/d"), ("fashion_mnist", "tfds_dir", "/t"),
                                 ("tfds:kmnist", "tfds_dir", "/t"),
                                 ("npz:my.npz", "test_size", 400)]:  # the digits config's
        config = _with("data.source", source)
        config.data[field] = value
        config_lib.validate(config)


def test_labels_per_class_may_be_zero_without_labelled_classes():
    config = _with("data.labelled_classes", ())
    config.data.labels_per_class = 0
    config_lib.validate(config)


@pytest.mark.parametrize("train, message", [
    (dict(restart_epochs=0), r"restart_epochs must be between 1 and train.epochs \(10\)"),
    (dict(restart_epochs=11), r"restart_epochs must be between 1 and train.epochs \(10\)"),
    (dict(restart_epochs=5, max_minutes=3.0), "max_minutes cannot be combined"),
])
def test_restarts_need_a_choice_epoch_within_the_run_and_no_time_budget(train, message):
    config = config_lib.base_config()
    config.train.update(epochs=10, restarts=3, **train)
    with pytest.raises(config_lib.ConfigError, match=message):
        config_lib.validate(config)
    config.train.update(restart_epochs=10, max_minutes=0.0)
    config_lib.validate(config)  # the choice may come at the last epoch


def test_a_restart_moves_the_initialisation_seed_only():
    config = config_lib.base_config()
    config.seed = 3
    assert config_lib.model_seed(config) == 3
    config.train.restart_index = 2
    assert config_lib.model_seed(config) == 3 + 2 * config_lib.RESTART_SEED_STRIDE
    assert config.seed == 3  # the split and batch order follow config.seed


def test_error_line_is_the_last_non_empty_line_or_the_type():
    traceback_like = ValueError("Traceback (most recent call last):\n  File 'x.py'\n"
                                "KeyError: 'no field trian'\n  \n")
    assert config_lib.error_line(traceback_like) == "KeyError: 'no field trian'"
    assert config_lib.error_line(OSError()) == "OSError"
