"""The report's numbers: run records (sweeps/records.py) -> one row per (recipe, protocol)
with each accuracy and statistic as a mean (sample SD) over the recipe's seeds.

No TensorFlow, as the rest of the report.
"""

import numpy as np

from gmdgm_tf import evaluation, registry
from gmdgm_tf.sweeps import regimes
from gmdgm_tf.sweeps.records import describe, num_classes

# Willetts, Roberts & Holmes, Table 1: MNIST test accuracy (%), mean (SD) over seeds.
PAPER = {name: spec.paper_table1 for name, spec in registry.MODELS.items()
         if spec.paper_table1}
# paper_selection only for recipes whose every run recorded it (evaluation.py)
PROTOCOLS = ("heldout", "paper", evaluation.PAPER_SELECTION)
GROUPS = (("labelled", "accuracy_labelled_classes", "Labelled classes"),
          ("unlabelled", "accuracy_unlabelled_classes", "Unlabelled classes"),
          ("overall", "accuracy", "Overall"))
STATS = ("nmi", "ari", "validation_accuracy", "validation_late", "epochs_run", "selected_epoch",
         "train_seconds", "wall_seconds", "seconds_per_epoch")


def mean_sd(values):
    """-> {"mean", "sd", "n"}: sd is the sample SD (ddof=1); None where undefined.
    None entries (a group with no test points) are left out."""
    values = np.asarray([v for v in values if v is not None], np.float64)
    n = len(values)
    return {"mean": float(values.mean()) if n else None,
            "sd": float(values.std(ddof=1)) if n >= 2 else None, "n": n}


def validation_curve(run):
    """-> {epoch: validation accuracy in %} from the run's history (epochs that have one)."""
    return {h["epoch"]: 100 * h["val_accuracy"] for h in run["history"] if "val_accuracy" in h}


def late_validation(run):
    """-> mean validation accuracy in % over the second half of the epochs run (epochs
    151-300 of 300): the level training settles on, which the noise of single epochs moves
    far less than the selected epoch's; None without a history."""
    curve = validation_curve(run)
    if not curve:
        return None
    half = max(curve) // 2
    return float(np.mean([v for e, v in curve.items() if e > half]))


def run_stats(run, protocol):
    """-> {stat: value} for one run under protocol, a value for each of STATS."""
    report, training = run["metrics"][protocol], run["metrics"].get("training", {})
    return {"nmi": report["nmi"], "ari": report["ari"],
            "validation_accuracy": 100 * run["metrics"]["validation"]["accuracy"],
            "validation_late": late_validation(run),
            "epochs_run": training.get("epochs_run"),
            "selected_epoch": report.get("epoch", training.get("selected_epoch")),
            "train_seconds": training.get("seconds"), "wall_seconds": run.get("wall_seconds"),
            "seconds_per_epoch": training.get("seconds_per_epoch_median")}


def aggregate(runs, recipes=None, protocols=PROTOCOLS):
    """Run records (as `read_run` returns) -> Table 1 rows, one per (recipe, protocol):
    {"recipe", "model", "description", "protocol", "seeds", "n_seeds", "regime", "paper",
    "published"} and a mean_sd for each group's accuracy in % and each of STATS. paper:
    the paper's Table 1 numbers (semi-unsupervised MNIST); published: (mean, SD, who) for
    the other regimes (sweeps/regimes.py)."""
    if recipes is None:
        recipes = list(dict.fromkeys(r["recipe"] for r in runs))
    rows = []
    for recipe in recipes:
        mine = sorted((r for r in runs if r["recipe"] == recipe), key=lambda r: r["seed"])
        model = mine[0]["model"] if mine else None
        names = sorted({regimes.regime(r["config"], num_classes(r)) for r in mine})
        regime = names[0] if len(names) == 1 else None
        on_mnist = _paper_dataset(mine)
        paper = PAPER.get(model) if on_mnist and regime == regimes.SEMI_UNSUPERVISED else None
        published = (regimes.published(model, regime, [r["config"] for r in mine])
                     if on_mnist else None)
        description = " | ".join(dict.fromkeys(describe(r["config"], num_classes(r))
                                               for r in mine))
        for protocol in protocols:
            if not all(protocol in r["metrics"] for r in mine):
                continue
            row = {"recipe": recipe, "model": model, "protocol": protocol,
                   "description": description,
                   "seeds": [r["seed"] for r in mine], "n_seeds": len(mine),
                   "regime": " | ".join(names), "paper": paper, "published": published}
            for group, key, _ in GROUPS:
                row[group] = mean_sd([None if r["metrics"][protocol][key] is None
                                      else 100 * r["metrics"][protocol][key] for r in mine])
            stats = [run_stats(r, protocol) for r in mine]
            row.update({k: mean_sd([s[k] for s in stats]) for k in STATS})
            rows.append(row)
    return rows


def _paper_dataset(runs):
    """The paper's numbers sit beside runs on its dataset (MNIST) only."""
    return bool(runs) and all(r["config"]["data"]["source"] == "mnist" for r in runs)


def best_runs(runs):
    """-> {recipe: run record} with the highest VALIDATION accuracy (ties: lowest seed)."""
    best = {}
    for r in sorted(runs, key=lambda r: r["seed"]):
        current = best.get(r["recipe"])
        if current is None or (r["metrics"]["validation"]["accuracy"]
                               > current["metrics"]["validation"]["accuracy"]):
            best[r["recipe"]] = r
    return best


EPOCH_STEPS = (5, 10, 25, 50, 100, 250, 500, 1000)  # validation_by_epoch's column spacing


def validation_by_epoch(runs, recipes):
    """-> (epochs, {recipe: {epoch: mean_sd of val_accuracy in %}}): epoch 1, every k-th
    (k from EPOCH_STEPS: at most ~10 columns) and each recipe's last, wherever all of the
    recipe's runs have it; shows whether the budget reached the plateau."""
    seeds = {name: [validation_curve(r) for r in runs if r["recipe"] == name]
             for name in recipes}
    longest = max((max(c) for per_seed in seeds.values() for c in per_seed if c), default=1)
    every = next((k for k in EPOCH_STEPS if longest / k <= 10), EPOCH_STEPS[-1])
    curves = {}
    for name in recipes:
        common = set.intersection(*(set(c) for c in seeds[name])) if seeds[name] else set()
        if common:
            keep = {e for e in common if e == 1 or e % every == 0} | {max(common)}
            curves[name] = {e: mean_sd([c[e] for c in seeds[name]]) for e in keep}
    return sorted(set().union(*curves.values())) if curves else [], curves


CSV_FIELDS = (["recipe", "model", "regime", "protocol", "n_seeds", "seeds"]
              + [f"{g}_{s}" for g, _, _ in GROUPS for s in ("mean", "sd")]
              + [f"paper_{g}_{s}" for g, _, _ in GROUPS for s in ("mean", "sd")]
              + [f"{k}_{s}" for k in STATS for s in ("mean", "sd")]
              + ["published_mean", "published_sd", "published_by", "sd", "description"])


def table_csv_rows(rows):
    """Table 1 rows -> flat dicts with CSV_FIELDS (accuracies in %, empty when undefined)."""
    out = []
    for row in rows:
        flat = {"recipe": row["recipe"], "model": row["model"], "regime": row["regime"],
                "protocol": row["protocol"],
                "n_seeds": row["n_seeds"], "seeds": " ".join(str(s) for s in row["seeds"]),
                "sd": "sample, ddof=1", "description": row["description"]}
        for key in [g for g, _, _ in GROUPS] + list(STATS):
            for s in ("mean", "sd"):
                flat[f"{key}_{s}"] = "" if row[key][s] is None else round(row[key][s], 4)
        for g, _, _ in GROUPS:
            flat[f"paper_{g}_mean"], flat[f"paper_{g}_sd"] = (row["paper"] or {}).get(g, ("", ""))
        flat["published_mean"], flat["published_sd"], flat["published_by"] = (
            row["published"] or ("", "", ""))
        out.append(flat)
    return out
