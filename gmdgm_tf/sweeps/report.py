r"""Table 1 and Figure 2 from the summaries `gmdgm_tf.sweeps.run` filed, nothing else.

  python -m gmdgm_tf.sweeps.report --summaries=results/table1/runs --out=results/table1 \
      [--recipes=gmdgm_fast,m2_fast]

Reads SUMMARIES/NAME_seedK/ (config.json, history.jsonl, metrics.json, data_meta.json,
runner.json, and samples.png when present; sweeps/records.py): no weights, no data, no
TensorFlow, so it works from a fresh clone with only results/ committed. SUMMARIES may be a
comma-separated list of directories (a probe's runs beside Table 1's). Writes into OUT:
  table1.md, table1.csv   per (recipe, protocol): test accuracy in %, mean (sample SD) over
                          seeds, for labelled classes, unlabelled classes and overall, next
                          to the paper's numbers; NMI, ARI, epochs, seconds; a per-run table
                          (runs of the other regimes, unsupervised or semi-supervised: next
                          to their published numbers instead, sweeps/regimes.py)
  all_runs.json           every run's metrics and records, plus the table rows
  figure2.png             best run per recipe by VALIDATION accuracy: confusion (top) and
                          class x slot assignment (bottom) matrices, heldout protocol
  learning_curves.png     validation accuracy by epoch, every seed, every recipe
  samples_<recipe>.png    the best run's samples.png, where it has one
"""

import csv
import json
import os
import shutil
import sys

import numpy as np
from absl import app, flags

from gmdgm_tf import evaluation, filenames, machine, plots, registry
from gmdgm_tf.sweeps import regimes
from gmdgm_tf.sweeps.records import ReportError, describe, num_classes, read_runs

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
SD_NOTE = ("SD is the sample standard deviation over seeds (ddof=1), as the paper's (SD); "
           "n/a with fewer than 2 seeds.")
PROTOCOL_NOTE = ("heldout: slots are named on the validation split (held out from the "
                 "training set), accuracy on the test split; paper: slots named on the test "
                 "split itself, as the paper did. Model selection (best epoch, best run) uses "
                 "validation only.")


# ------------------------------------------------------------------------ aggregation


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


def format_mean_sd(stat, digits=1):
    """{"mean": 74.31, "sd": 4.42} -> '74.3 (4.4)'; missing SD -> '74.3 (n/a)'."""
    if stat is None or stat.get("mean") is None:
        return "n/a"
    sd = "n/a" if stat.get("sd") is None else f"{stat['sd']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ({sd})"


def headline(table_rows):
    """-> {recipe: {protocol: {"overall": "90.7 (2.0)", "labelled", "unlabelled", "n"}}},
    the accuracies as table1.md prints them (for checking quotes of the table)."""
    out = {}
    for row in table_rows:
        cell = {group: format_mean_sd(row[group]) for group, _, _ in GROUPS}
        out.setdefault(row["recipe"], {})[row["protocol"]] = dict(cell, n=row["n_seeds"])
    return out


def best_runs(runs):
    """-> {recipe: run record} with the highest VALIDATION accuracy (ties: lowest seed)."""
    best = {}
    for r in sorted(runs, key=lambda r: r["seed"]):
        current = best.get(r["recipe"])
        if current is None or (r["metrics"]["validation"]["accuracy"]
                               > current["metrics"]["validation"]["accuracy"]):
            best[r["recipe"]] = r
    return best


# ---------------------------------------------------------------------------- writing


def _paper(row, group):
    if not row["paper"]:
        return "-"
    mean, sd = row["paper"][group]
    return f"{mean:.1f} ({sd:.1f})"


def readme_markers(block="table1"):
    """-> (begin, end): the README lines around a table this report writes (--readme_block)."""
    return (f"<!-- {block}: written by gmdgm_tf.sweeps.report --readme; do not edit -->",
            f"<!-- {block}: end -->")


README_BEGIN, README_END = readme_markers()


def _only_semi_unsupervised(rows):
    return all(row["regime"] == regimes.SEMI_UNSUPERVISED for row in rows)


def summary_markdown(rows):
    """The compact Table 1 that the README quotes (table1_summary.md): test accuracy in %,
    mean (sample SD) over seeds, per recipe and protocol, next to the paper's overall.
    Rows of other regimes (the README's Regimes table): per regime and recipe, the overall
    accuracy and NMI next to the published overall accuracy, on the heldout protocol and,
    where cluster-and-label names the slots, the paper's; the semi-supervised paper rows
    repeat the heldout ones (both are the argmax) and paper_selection stays in the full
    table."""
    if not _only_semi_unsupervised(rows):
        header = ["Regime", "Recipe", "Protocol", "Seeds", "Overall", "NMI",
                  "Published overall"]
        shown = [r for r in rows if r["protocol"] == "heldout" or (
            r["protocol"] == "paper" and r["regime"] != regimes.SEMI_SUPERVISED)]
        body = [[r["regime"], plots.model_title(r["recipe"]), r["protocol"], r["n_seeds"],
                 format_mean_sd(r["overall"]), format_mean_sd(r["nmi"], 3),
                 regimes.format_published(r["published"])] for r in shown]
        return _md_table(header, body) + "\n"
    header = ["Recipe", "Protocol", "Seeds", "Labelled classes", "Unlabelled classes",
              "Overall", "Paper overall"]
    body = [[plots.model_title(r["recipe"]), r["protocol"], r["n_seeds"],
             *(format_mean_sd(r[group]) for group, _, _ in GROUPS), _paper(r, "overall")]
            for r in rows]
    return _md_table(header, body) + "\n"


def replace_readme_block(text, block, name="table1"):
    """README text with the part between the `name` markers replaced by block."""
    begin, end = readme_markers(name)
    if begin not in text or end not in text:
        raise ReportError(f"the README has no {begin!r} ... {end!r} block")
    head, rest = text.split(begin, 1)
    return head + begin + "\n" + block + rest[rest.index(end):]


def _md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _pct(v):
    return "n/a" if v is None else f"{100 * v:.1f}"


def _seconds(v):
    return "n/a" if v is None else f"{v:.0f}"


def machine_line(runs):
    """-> 'Machine: ...' from the runs' runner.json records, else this machine's."""
    machines = [r["runner"]["machine"] for r in runs if r["runner"].get("machine")]
    where = "the runs trained on"
    if not machines:
        machines, where = [machine.describe()], "this report was built on; the runs name none"
    text = " | ".join(dict.fromkeys(f"{m['platform']}; {m['cpu']}; {m['cpu_count']} CPUs"
                                    for m in machines))
    return f"Machine: {text} ({where})"


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


def table_markdown(rows, runs, machine_text):
    """Table 1, the recipes, training costs and a per-run table -> Markdown text."""
    data = runs[0]["config"].get("data", {}) if runs else {}
    labelled = data.get("labelled_classes")
    every_class = bool(runs) and len(labelled or ()) >= num_classes(runs[0])
    rest = "every class labelled" if every_class else "the other classes unlabelled"
    table1 = _only_semi_unsupervised(rows)
    title = ("Table 1: semi-unsupervised learning" if table1 else
             "Regimes: " + ", ".join(dict.fromkeys(row["regime"] for row in rows)))
    lines = [f"# {title}", "",
             f"Data: {data.get('source')}; " + (
                 f"labelled classes {labelled} with {data.get('labels_per_class')} labels "
                 f"each, {rest}." if labelled else "no labels at all."),
             "", "Test-set accuracy in %, mean (SD) over seeds, next to " + (
                 "the paper's published numbers for the recipe's model (Willetts et al., "
                 "Table 1, MNIST). " if table1 else
                 "the published numbers of the same regime, listed below the table (the "
                 "paper columns are Table 1's regime alone). ") + SD_NOTE, ""]
    if any(r["config"].get("data", {}).get("source") != "mnist" for r in runs):
        lines += ["**Not all runs are on MNIST: their paper columns are not comparable.**", ""]
    header = ["Recipe", "Protocol", "Seeds"]
    for _, _, title in GROUPS:
        header += [title, "paper"]
    table = []
    for row in rows:
        cells = [row["recipe"], row["protocol"], row["n_seeds"]]
        for group, _, _ in GROUPS:
            cells += [format_mean_sd(row[group]), _paper(row, group)]
        table.append(cells + [format_mean_sd(row["nmi"], 3), format_mean_sd(row["ari"], 3)])
    note = PROTOCOL_NOTE
    if any(evaluation.ARGMAX_NOTE in r["metrics"]["heldout"].get("protocol", "") for r in runs):
        note += (" Semi-supervised runs, where every slot is its labelled class: "
                 "cluster-and-label is the identity and both protocols are the plain argmax "
                 "of q(y|x).")
    if any(row["protocol"] == evaluation.PAPER_SELECTION for row in rows):
        note += f" {evaluation.PAPER_SELECTION_NOTE}."
    lines += [_md_table(header + ["NMI", "ARI"], table), "", note, ""]
    published = [row for row in rows if row["published"] and row["protocol"] == "heldout"]
    if published:
        lines += ["Published overall accuracy of the same regime on MNIST (sweeps/regimes.py):",
                  ""] + [f"- `{row['recipe']}` ({row['regime']}): "
                         f"{regimes.format_published(row['published'])}"
                         for row in published] + [""]
    lines += ["## Recipes", "", "Besides model, rates, slots, prior, precision, budget and "
              "initialisations, each line names the settings that depart from "
              "`gmdgm_tf/config.py`'s base_config (hidden sizes, z, a, alpha, batch sizes ...).",
              ""]
    first = [row for row in rows if row["protocol"] == rows[0]["protocol"]]
    lines += [f"- `{row['recipe']}`: {row['description']}; seeds "
              f"{', '.join(map(str, row['seeds']))}" for row in first]
    lines += ["", "## Training", "", _md_table(
        ["Recipe", "Seeds", "Validation acc (selection)", "Validation acc (late half)",
         "Epochs run", "Selected epoch (best validation)", "Training s / run",
         "Wall s / run", "Median s / epoch"],
        [[row["recipe"], row["n_seeds"], format_mean_sd(row["validation_accuracy"]),
          format_mean_sd(row["validation_late"]), format_mean_sd(row["epochs_run"]),
          format_mean_sd(row["selected_epoch"]), format_mean_sd(row["train_seconds"], 0),
          format_mean_sd(row["wall_seconds"], 0), format_mean_sd(row["seconds_per_epoch"], 2)]
         for row in first]), "",
        "- Validation acc (late half): the mean over the second half of the epochs run, "
        "the level training settles on; the selected epoch's is the best of many noisy "
        "draws.",
        "- Training s: the epochs' training time; wall s: the whole `python -m gmdgm_tf.train` "
        "run (start-up, data, evaluation, checkpoints) summed over attempts.",
        f"- {machine_text}", ""]
    epochs, curves = validation_by_epoch(runs, [row["recipe"] for row in first])
    if epochs:
        lines += ["## Validation accuracy by epoch", "",
                  "Mean (SD) over seeds of the validation accuracy (slots named on validation) "
                  "at the end of the epoch; whether it still rises at the last epochs tells "
                  "whether the budget reached the plateau. Curves: learning_curves.png.", "",
                  _md_table(["Recipe", "Seeds"] + [f"epoch {e}" for e in epochs],
                            [[row["recipe"], row["n_seeds"]]
                             + [format_mean_sd(curves[row["recipe"]][e])
                                if e in curves[row["recipe"]] else "-" for e in epochs]
                             for row in first if row["recipe"] in curves]), ""]
    lines += ["## Per run", ""]
    per_run = []
    for r in runs:
        m, t = r["metrics"], r["metrics"].get("training", {})
        per_run.append([r["recipe"], r["seed"], _pct(m["validation"]["accuracy"]),
                        " / ".join(_pct(m["heldout"][k]) for _, k, _ in GROUPS),
                        _pct(m["paper"]["accuracy"]), f"{m['heldout']['nmi']:.3f}",
                        t.get("epochs_run"), t.get("selected_epoch"),
                        f"{_seconds(t.get('seconds'))} / {_seconds(r.get('wall_seconds'))}"])
    lines.append(_md_table(["Recipe", "Seed", "Validation acc", "heldout: labelled / "
                            "unlabelled / overall", "paper: overall", "NMI (heldout)", "Epochs",
                            "Selected", "Training s / wall s"], per_run))
    restarted = [(r, r["metrics"]["training"]["restarts"]) for r in runs
                 if r["metrics"].get("training", {}).get("restarts")]
    if restarted:
        lines += ["", "## Restarts", "", "Runs trained with train.restarts: the validation "
                  "accuracy (%) of each initialisation at the choice epoch; * marks the one "
                  "the run trained on (the best).", "",
                  _md_table(["Recipe", "Seed", "Choice at epoch", "Initialisations"],
                            [[r["recipe"], r["seed"], c["epochs"], " / ".join(
                                _pct(v) + ("*" if i == c["chosen"] else "")
                                for i, v in zip(c["candidates"], c["validation"]))]
                             for r, c in restarted])]
    return "\n".join(lines) + "\n"


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


def write_figures(out, runs, recipes):
    """figure2.png, learning_curves.png, samples_<recipe>.png -> their paths."""
    best = best_runs(runs)
    best = {name: best[name] for name in recipes if name in best}
    meta = next(iter(best.values()))["data_meta"]
    paths = [plots.save_png(plots.figure2(
        {name: (r["seed"], r["metrics"]) for name, r in best.items()},
        class_names=meta.get("class_names"), labelled_classes=meta.get("labelled_classes", ())),
        os.path.join(out, "figure2.png"))]
    histories = {name: {r["seed"]: r["history"] for r in runs if r["recipe"] == name}
                 for name in recipes}
    paths.append(plots.save_png(plots.learning_curves_figure(histories),
                                os.path.join(out, "learning_curves.png")))
    for name, r in best.items():
        samples = os.path.join(r["folder"], filenames.SAMPLES_FIGURE)
        if os.path.exists(samples):
            paths.append(shutil.copyfile(samples, os.path.join(out, f"samples_{name}.png")))
    return paths


def write_report(summaries, out, recipes=None):
    """Reads the summaries and writes every file into out -> {"rows", "runs", "paths"}."""
    recipes, runs = read_runs(summaries, recipes)
    rows = aggregate(runs, recipes)
    machine_text = machine_line(runs)
    os.makedirs(out, exist_ok=True)
    paths = [os.path.join(out, name) for name in ("table1.md", "table1.csv", "all_runs.json",
                                                   "table1_summary.md")]
    with open(paths[0], "w", encoding="utf-8") as f:
        f.write(table_markdown(rows, runs, machine_text))
    with open(paths[3], "w", encoding="utf-8") as f:
        f.write(summary_markdown(rows))
    with open(paths[1], "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(table_csv_rows(rows))
    records = [dict({k: v for k, v in r.items() if k not in ("history", "folder", "data_meta")},
                    summary=os.path.relpath(r["folder"], out)) for r in runs]
    with open(paths[2], "w", encoding="utf-8") as f:
        json.dump({"machine": machine_text, "sd": "sample standard deviation, ddof=1",
                   "protocols": PROTOCOL_NOTE, "table": rows, "runs": records}, f, indent=1)
    paths += write_figures(out, runs, recipes)
    return {"rows": rows, "runs": runs, "paths": paths}


def define_flags():
    flags.DEFINE_list("summaries", None, "Directory of run summaries (NAME_seedK/ folders "
                      "as gmdgm_tf.sweeps.run files them); a comma-separated list reports "
                      "several directories together.")
    flags.DEFINE_string("out", None, "Directory for table1.md/.csv, all_runs.json, figures.")
    flags.DEFINE_list("recipes", None, "Recipes to show, in this order (default: all found, "
                      "sorted).")
    flags.DEFINE_string("readme", None, "Also rewrite this README's block (between the "
                        "--readme_block markers) with table1_summary.md.")
    flags.DEFINE_string("readme_block", "table1", "Name in the README markers "
                        "'<!-- NAME: written by ... -->' ... '<!-- NAME: end -->'.")
    flags.mark_flags_as_required(["summaries", "out"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    try:
        result = write_report(f.summaries, f.out, f.recipes)
        if f.readme:
            with open(f.readme, encoding="utf-8") as fh:
                text = replace_readme_block(fh.read(), summary_markdown(result["rows"]),
                                            f.readme_block)
            with open(f.readme, "w", encoding="utf-8") as fh:
                fh.write(text)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    with open(result["paths"][0], encoding="utf-8") as fh:
        print(fh.read())
    print("wrote:\n  " + "\n  ".join(result["paths"]))


if __name__ == "__main__":
    define_flags()
    app.run(main)
