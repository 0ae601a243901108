"""The report's Markdown: table1.md (Table 1 or a regime's table, the recipes, training
costs, validation by epoch, per run), the compact table the README quotes, and the
README's generated blocks, from `tables.aggregate`'s rows.
"""

from gmdgm_tf import evaluation, machine, plots
from gmdgm_tf.sweeps import regimes
from gmdgm_tf.sweeps.records import ReportError, num_classes
from gmdgm_tf.sweeps.tables import GROUPS, validation_by_epoch

SD_NOTE = ("SD is the sample standard deviation over seeds (ddof=1), as the paper's (SD); "
           "n/a with fewer than 2 seeds.")
PROTOCOL_NOTE = ("heldout: slots are named on the validation split (held out from the "
                 "training set), accuracy on the test split; paper: slots named on the test "
                 "split itself, as the paper did. Model selection (best epoch, best run) uses "
                 "validation only.")


def format_mean_sd(stat, digits=1):
    """{"mean": 74.31, "sd": 4.42} -> '74.3 (4.4)'; missing SD -> '74.3 (n/a)'."""
    if stat is None or stat.get("mean") is None:
        return "n/a"
    sd = "n/a" if stat.get("sd") is None else f"{stat['sd']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ({sd})"


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
