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
  table1_summary.md       the compact table (recipe x protocol, mean (SD)) that --readme
                          copies into the README's block
  all_runs.json           every run's metrics and records, plus the table rows
  figure2.png             best run per recipe by VALIDATION accuracy: confusion (top) and
                          class x slot assignment (bottom) matrices, heldout protocol
  learning_curves.png     validation accuracy by epoch, every seed, every recipe
  samples_<recipe>.png    the best run's samples.png, where it has one
With --readme, also the README's block. The numbers come from sweeps/tables.py, the
Markdown from sweeps/markdown.py; every text file is replaced whole or not at all.
"""

import csv
import io
import json
import os
import shutil
import sys

from absl import app, flags

from gmdgm_tf import filenames, plots
from gmdgm_tf.sweeps.markdown import (PROTOCOL_NOTE, machine_line, replace_readme_block,
                                      summary_markdown, table_markdown)
from gmdgm_tf.sweeps.records import ReportError, read_runs
from gmdgm_tf.sweeps.run import write_text
from gmdgm_tf.sweeps.tables import CSV_FIELDS, aggregate, best_runs, table_csv_rows


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


def report_texts(runs, recipes, out):
    """The report's text files for runs (as read_runs gives them) written into out ->
    (the table rows, {file name: its text}); all_runs.json names each summary relative
    to out."""
    rows = aggregate(runs, recipes)
    machine_text = machine_line(runs)
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows(table_csv_rows(rows))
    records = [dict({k: v for k, v in r.items() if k not in ("history", "folder", "data_meta")},
                    summary=os.path.relpath(r["folder"], out)) for r in runs]
    return rows, {
        "table1.md": table_markdown(rows, runs, machine_text),
        "table1.csv": table.getvalue(),
        "all_runs.json": json.dumps({
            "machine": machine_text, "sd": "sample standard deviation, ddof=1",
            "protocols": PROTOCOL_NOTE, "table": rows, "runs": records}, indent=1),
        "table1_summary.md": summary_markdown(rows)}


def write_report(summaries, out, recipes=None):
    """Reads the summaries and writes every file into out -> {"rows", "runs", "paths"}."""
    recipes, runs = read_runs(summaries, recipes)
    rows, texts = report_texts(runs, recipes, out)
    os.makedirs(out, exist_ok=True)
    paths = []
    for name, text in texts.items():
        paths.append(os.path.join(out, name))
        write_text(paths[-1], text, newline="")  # as written: the CSV's own \r\n endings
    paths += write_figures(out, runs, recipes)
    return {"rows": rows, "runs": runs, "paths": paths}


def read_readme(path, block):
    """-> the README's text, refused (ReportError) when it is missing or has no such block,
    so that a wrong --readme stops the report before it writes anything."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ReportError(f"cannot read --readme={path}: {e.strerror}") from None
    replace_readme_block(text, "", block)
    return text


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
        readme = read_readme(f.readme, f.readme_block) if f.readme else None
        result = write_report(f.summaries, f.out, f.recipes)
        if f.readme:
            write_text(f.readme, replace_readme_block(
                readme, summary_markdown(result["rows"]), f.readme_block))
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    with open(result["paths"][0], encoding="utf-8") as fh:
        print(fh.read())
    print("wrote:\n  " + "\n  ".join(result["paths"]))


if __name__ == "__main__":
    define_flags()
    app.run(main)
