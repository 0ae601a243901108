"""Reading what `gmdgm_tf.sweeps.run` filed: one summary folder per (recipe, seed), as the
report's run records, and a filed config described in one line.

No TensorFlow: the report reads results/ from a fresh clone.
"""

import json
import os

from gmdgm_tf import config as config_lib
from gmdgm_tf import evaluation, filenames, plots
from gmdgm_tf.sweeps.run import read_json


class ReportError(ValueError):
    """No summaries, a recipe that has none, or a README without the block to rewrite."""


def read_run(folder):
    """A summary folder -> {"recipe", "seed", "folder", "model", "config", "metrics",
    "runner", "wall_seconds", "history", "data_meta"}; None without metrics.json.
    Recipe and seed come from runner.json, else from the folder name and config.json."""
    def path(name):
        return os.path.join(folder, name)
    metrics = read_json(path(filenames.METRICS))
    if metrics is None:
        return None
    runner = read_json(path(filenames.RUNNER_RECORD), {})
    config = read_json(path(filenames.CONFIG), {})
    history = []
    if os.path.exists(path(filenames.HISTORY)):
        with open(path(filenames.HISTORY), encoding="utf-8") as f:
            history = [json.loads(line) for line in f if line.strip()]
    if evaluation.PAPER_SELECTION not in metrics:
        selection = evaluation.paper_selection(history)
        if selection is not None:
            metrics[evaluation.PAPER_SELECTION] = selection
    return {"recipe": runner.get("recipe", os.path.basename(folder).rpartition("_seed")[0]),
            "seed": int(runner.get("seed", config.get("seed", 0))),
            "folder": folder, "model": config.get("model", {}).get("name"), "config": config,
            "metrics": metrics, "runner": runner, "wall_seconds": runner.get("wall_seconds"),
            "history": history, "data_meta": read_json(path(filenames.DATA_META), {})}


def read_runs(summaries, recipes=None):
    """-> (recipes in table order, [run record] sorted by recipe order then seed).

    summaries: a directory of summary folders, or a list of them (e.g. Table 1's runs and
    a probe's, to compare them in one report). recipes: names to show, in order (None:
    every recipe found, sorted). Raises ReportError for a missing or empty summaries dir,
    for a recipe with no summaries and for a (recipe, seed) filed in two directories."""
    dirs = [summaries] if isinstance(summaries, str) else list(summaries)
    runs, where = [], {}
    for folder in dirs:
        if not os.path.isdir(folder):
            raise ReportError(f"--summaries {folder}: no such directory")
        for run in (read_run(os.path.join(folder, d))
                    for d in sorted(os.listdir(folder)) if not d.endswith(".tmp")):
            if run is None:
                continue
            key = (run["recipe"], run["seed"])
            if key in where:
                raise ReportError(f"--summaries: {key[0]} seed {key[1]} is filed twice: "
                                  f"{where[key]} and {run['folder']}")
            where[key] = run["folder"]
            runs.append(run)
    if not runs:
        raise ReportError(f"--summaries {','.join(dirs)}: no run summaries (metrics.json) "
                          "in it")
    found = sorted({r["recipe"] for r in runs})
    unknown = [name for name in recipes or () if name not in found]
    if unknown:
        raise ReportError(f"--recipes: no summaries for {unknown}; found {found}")
    recipes = list(dict.fromkeys(recipes)) if recipes else found
    runs = sorted((r for r in runs if r["recipe"] in recipes),
                  key=lambda r: (recipes.index(r["recipe"]), r["seed"]))
    return recipes, runs


def num_classes(run):
    """A run record's class count, from its data_meta.json (10 where it names none)."""
    return len(run["data_meta"].get("class_names", range(10)))


def _value(config, field):
    """A config dict's value of `field` ('section.key'); None where it has none."""
    section, key = field.split(".")
    return config.get(section, {}).get(key)


def _filed(config, field):
    """A filed config.json's value of `field` ('section.key'), or, where it was filed before
    the field existed, the value those runs had (config.ADDED_FIELDS)."""
    value = _value(config, field)
    return config_lib.ADDED_FIELDS[field] if value is None else value


# Settings a recipe line names only where a run's config.json departs from base_config's:
# (field, label). A field the file lacks (a hand-made or older record) is not named.
NAMED_IF_CHANGED = (("model.hidden_sizes", "hidden"), ("model.z_dim", "z"),
                    ("model.aux_dim", "a"), ("model.alpha", "alpha"),
                    ("model.alpha_scaling", "alpha scaling"),
                    ("model.weight_prior_scale", "weight prior x"),
                    ("model.prior_loc_stddev", "slot-mean init SD"),
                    ("data.labelled_batch_size", "labelled batch"),
                    ("data.unlabelled_batch_size", "unlabelled batch"))


def _changed(config):
    """-> 'hidden 256x256, alpha 10': config.json's NAMED_IF_CHANGED departures."""
    base, named = config_lib.base_config().to_dict(), []
    for field, label in NAMED_IF_CHANGED:
        value, default = _value(config, field), _value(base, field)
        if isinstance(default, tuple) and value is not None:
            value = tuple(value)                          # JSON keeps tuples as lists
        if value is not None and value != default:
            text = "x".join(map(str, value)) if isinstance(value, tuple) else value
            named.append(f"{label} {text}")
    return ", ".join(named)


def describe(config, num_classes=10):
    """config.json -> 'GM-DGM, lr 0.0003, 15 slots, prior rule paper, float32, 3 epochs',
    then the settings of NAMED_IF_CHANGED that depart from base_config's ('..., alpha 10')
    (num_classes: the dataset's, from data_meta.json)."""
    data, train = config.get("data", {}), config.get("train", {})
    optimizer = config.get("optimizer", {})
    epochs, restarts = train.get("epochs"), _filed(config, "train.restarts")
    decay_epoch = _filed(config, "optimizer.decay_epoch")
    return (f"{plots.model_title(config.get('model', {}).get('name'))}, "
            f"lr {optimizer.get('learning_rate')}"
            + (f" (x {_filed(config, 'optimizer.decay_factor')} after epoch {decay_epoch})"
               if decay_epoch else "") + ", "
            f"{num_classes + int(data.get('num_extra_slots', 0))} slots, "
            f"prior rule {_filed(config, 'data.prior_rule')}, "
            + ("" if _filed(config, "model.binarize") else "grey-level targets, ")
            + f"{train.get('precision')}, "
            f"{epochs} epoch{'' if epochs == 1 else 's'}"
            + (f", best of {restarts} initialisations at epoch {train.get('restart_epochs')}"
               if restarts > 1 else "")
            + (f", {changed}" if (changed := _changed(config)) else ""))
