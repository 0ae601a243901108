r"""The paper's Table 1 and Figure 2 over many seeds: M2 and GM-DGM on semi-unsupervised MNIST.

  python -m gmdgm_tf.experiments.table1 --out=runs/table1 --data_dir=../shared/data/mnist
  python -m gmdgm_tf.experiments.table1 --out=runs/table1 --data_dir=../shared/data/mnist \
      --seeds=10 --models=m2,gmdgm --budget_epochs=20 --workers=1
  python -m gmdgm_tf.experiments.table1 --out=/tmp/t1 --dataset=digits --smoke --seeds=2

Each (model, seed) trains in its own workdir OUT/runs/<model>_seed<k> with the config files
configs/mnist_m2.py and configs/mnist_gmdgm.py (config.seed = k). A run whose metrics.json
exists is not rerun; an interrupted one resumes from its checkpoints; rerunning the same
command therefore finishes what is missing. --workers > 1 trains in parallel subprocesses
(`python -m gmdgm_tf.train`); --report_only rebuilds the files below from finished runs.

Files written to OUT:
  table1.md, table1.csv   test accuracy mean (SD) over seeds for labelled classes,
                          unlabelled classes and overall, both protocols (heldout, paper),
                          next to the paper's numbers; NMI, ARI, epochs, time, budget, machine
  all_runs.json           every run's metrics.json, wall time and status (plus the table)
  figure2.png             best run per model (by VALIDATION accuracy): 10 x 10 confusion
                          matrices (heldout protocol) side by side, class x slot assignments
  samples_<model>.png     best run: per slot, images decoded from p(z|y) and test images
                          whose argmax q(y|x) is that slot, labelled with the slot's class
  learning_curves.png     validation accuracy by epoch, every seed, both models
  runs/<model>_seed<k>/   the runs (metrics.json, history.jsonl, ..., runner.json, train.log)
"""

import csv
import dataclasses
import datetime
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from typing import Optional

import numpy as np
from absl import app, flags, logging

from gmdgm_tf import data, experiment, plots

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_DIR = os.path.join(REPO, "configs")

# Willetts, Roberts & Holmes, Table 1: MNIST test accuracy (%), mean (SD) over seeds.
PAPER = {
    "m2": {"labelled": (86.3, 2.2), "unlabelled": (63.4, 8.3), "overall": (74.3, 4.4)},
    "gmdgm": {"labelled": (93.7, 1.9), "unlabelled": (87.4, 4.5), "overall": (90.7, 2.0)},
}
MODELS = ("m2", "gmdgm")
PROTOCOLS = ("heldout", "paper")
GROUPS = (("labelled", "accuracy_labelled_classes", "Labelled classes"),
          ("unlabelled", "accuracy_unlabelled_classes", "Unlabelled classes"),
          ("overall", "accuracy", "Overall"))
# dataset -> model -> (config file in configs/, overrides)
DATASETS = {
    "mnist": {"m2": ("mnist_m2", {}), "gmdgm": ("mnist_gmdgm", {})},
    "digits": {"m2": ("digits_gmdgm", {"model.name": "m2"}), "gmdgm": ("digits_gmdgm", {})},
}
SD_NOTE = ("SD is the sample standard deviation over seeds (ddof=1), as the paper's (SD); "
           "n/a with fewer than 2 seeds.")
PROTOCOL_NOTE = ("heldout: slots are named on the validation split (held out from the "
                 "training set), accuracy on the test split; paper: slots named on the test split "
                 "itself, as the paper did. Model selection (best epoch) uses validation only.")


# ------------------------------------------------------------------------------ runs


def set_field(config, dotted, value):
    """config['a.b.c'] = value for a ConfigDict (existing fields only, types checked)."""
    *parents, leaf = dotted.split(".")
    node = config
    for key in parents:
        node = node[key]
    if leaf not in node:
        raise experiment.ConfigError(f"config has no field {dotted!r}")
    node[leaf] = value


def load_config_file(path, arg=None):
    """Loads a config file the way ml_collections' config_flags does: get_config(arg)."""
    if not os.path.isfile(path):
        raise experiment.ConfigError(f"config file not found: {path}")
    spec = importlib.util.spec_from_file_location(
        os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


@dataclasses.dataclass
class RunSpec:
    """One (model, seed) run: a config file, its argument and field overrides."""
    model: str
    seed: int
    workdir: str
    config_file: str
    config_arg: Optional[str]
    overrides: dict

    @property
    def name(self):
        return f"{self.model}_seed{self.seed}"

    def config(self):
        config = load_config_file(self.config_file, self.config_arg)
        for key, value in self.overrides.items():
            set_field(config, key, value)
        return config

    def command(self):
        """The equivalent `python -m gmdgm_tf.train` command line (argv list)."""
        config = self.config_file + (f":{self.config_arg}" if self.config_arg else "")
        return ([sys.executable, "-m", "gmdgm_tf.train", f"--config={config}",
                 f"--workdir={self.workdir}"]
                + [f"--config.{k}={v}" for k, v in self.overrides.items()])


def make_specs(out, *, models=MODELS, seeds=10, dataset="mnist", smoke=False,
               budget_epochs=None, budget_minutes=None, data_dir="", config_dir=CONFIG_DIR):
    """-> [RunSpec] for every model and seeds 0..seeds-1, in model-major order."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown --dataset {dataset!r}; choose one of {sorted(DATASETS)}")
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise ValueError(f"unknown --models {unknown or models}; choose from {list(MODELS)}")
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    if budget_epochs is not None and budget_epochs < 1:
        raise ValueError(f"--budget_epochs must be >= 1, got {budget_epochs}")
    if budget_minutes is not None and budget_minutes <= 0:
        raise ValueError(f"--budget_minutes must be > 0, got {budget_minutes}")
    specs = []
    for model in models:
        name, overrides = DATASETS[dataset][model]
        for seed in range(seeds):
            o = dict(overrides, seed=seed)
            if budget_epochs is not None:
                o["train.epochs"] = int(budget_epochs)
            if budget_minutes is not None:
                o["train.max_minutes"] = float(budget_minutes)
            if data_dir and dataset != "digits":
                o["data.dir"] = os.path.abspath(os.path.expanduser(data_dir))
            specs.append(RunSpec(model, seed, os.path.join(out, "runs", f"{model}_seed{seed}"),
                                 os.path.join(config_dir, f"{name}.py"),
                                 "smoke" if smoke else None, o))
    return specs


def _read_json(path, default=None):
    if not os.path.exists(path):
        return default
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def is_finished(spec):
    """True when the run's metrics.json exists; raises ConfigError when the finished run in
    the workdir is a different experiment than spec (so it cannot silently be reused)."""
    if not os.path.exists(os.path.join(spec.workdir, "metrics.json")):
        return False
    old = _read_json(os.path.join(spec.workdir, "config.json"), {})
    new = json.loads(spec.config().to_json())
    diffs = experiment.config_differences(old, new)
    if diffs:
        raise experiment.ConfigError(
            f"{spec.workdir} holds a finished run of a different experiment ("
            + "; ".join(diffs) + "); use another --out")
    for key in ("epochs", "max_minutes"):
        if old.get("train", {}).get(key) != new["train"][key]:
            logging.warning("%s finished with train.%s=%s, not %s; kept as it is (delete its "
                            "metrics.json to continue it under the new budget)", spec.name,
                            key, old.get("train", {}).get(key), new["train"][key])
    return True


def _record_session(spec, seconds, status, mode):
    """Appends this attempt to workdir/runner.json (wall time summed over attempts)."""
    path = os.path.join(spec.workdir, "runner.json")
    record = _read_json(path, {"sessions": []})
    record["sessions"].append({
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "seconds": round(seconds, 1), "status": status, "mode": mode})
    record["wall_seconds"] = round(sum(s["seconds"] for s in record["sessions"]), 1)
    record["command"] = spec.command()
    os.makedirs(spec.workdir, exist_ok=True)
    experiment.write_json_atomic(path, record)


def run_in_process(spec):
    """Trains one spec in this process -> 'finished' or 'failed: ...'. Config and data
    errors (the same for every seed) are raised, anything else is recorded."""
    import keras  # pylint: disable=import-outside-toplevel
    t0 = time.time()
    try:
        experiment.train_and_evaluate(spec.config(), spec.workdir)
        status = "finished"
    except (experiment.ConfigError, data.DataError):
        raise
    except Exception as e:  # pylint: disable=broad-except  # one bad seed must not stop the rest
        logging.error("%s failed:\n%s", spec.name, traceback.format_exc())
        status = f"failed: {type(e).__name__}: {e}"
    finally:
        keras.backend.clear_session()
    _record_session(spec, time.time() - t0, status, "in-process")
    return status


def _log_tail(path, lines=15):
    with open(path, encoding="utf-8", errors="replace") as f:
        return "".join(f.readlines()[-lines:])


def run_subprocesses(specs, workers, poll_seconds=0.5):
    """Trains specs as `python -m gmdgm_tf.train` subprocesses, `workers` at a time, each
    logging to workdir/train.log -> {spec.name: status}."""
    env = dict(os.environ)
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    for var in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        env.setdefault(var, threads)  # so parallel runs do not oversubscribe the cores
    pending, running, statuses = list(specs), {}, {}
    try:
        while pending or running:
            while pending and len(running) < workers:
                spec = pending.pop(0)
                os.makedirs(spec.workdir, exist_ok=True)
                log = open(os.path.join(spec.workdir, "train.log"), "a", encoding="utf-8")  # pylint: disable=consider-using-with
                proc = subprocess.Popen(spec.command(), stdout=log, stderr=subprocess.STDOUT,  # pylint: disable=consider-using-with
                                        env=env)
                running[proc] = (spec, log, time.time())
                logging.info("started %s (pid %d)", spec.name, proc.pid)
            time.sleep(poll_seconds)
            for proc in [p for p in running if p.poll() is not None]:
                spec, log, t0 = running.pop(proc)
                log.close()
                status = "finished" if proc.returncode == 0 else (
                    f"failed: exit code {proc.returncode}; end of "
                    f"{os.path.join(spec.workdir, 'train.log')}:\n"
                    + _log_tail(os.path.join(spec.workdir, "train.log")))
                statuses[spec.name] = status
                _record_session(spec, time.time() - t0, status.split("\n")[0], "subprocess")
                logging.info("%s: %s", spec.name, status)
    finally:
        for proc, (spec, log, _) in running.items():  # interrupted: stop our children
            proc.terminate()
            proc.wait()
            log.close()
    return statuses


def train_all(specs, workers=1):
    """Trains every unfinished spec -> {spec.name: status} (finished ones: 'finished')."""
    todo = [s for s in specs if not is_finished(s)]
    statuses = {s.name: "finished" for s in specs if s not in todo}
    logging.info("%d runs finished already, %d to train", len(statuses), len(todo))
    if workers > 1 and len(todo) > 1:
        statuses.update(run_subprocesses(todo, workers))
    else:
        for i, spec in enumerate(todo):
            logging.info("run %d/%d: %s", i + 1, len(todo), spec.name)
            statuses[spec.name] = run_in_process(spec)
    return statuses


def collect(specs, out, statuses=None):
    """-> one record per spec: model, seed, workdir (relative to out), status, metrics (None
    unless finished), history records, wall_seconds, the training config."""
    records = []
    for spec in specs:
        metrics = _read_json(os.path.join(spec.workdir, "metrics.json"))
        history_path = os.path.join(spec.workdir, "history.jsonl")
        history = []
        if os.path.exists(history_path):
            with open(history_path, encoding="utf-8") as f:
                history = [json.loads(line) for line in f if line.strip()]
        config = _read_json(os.path.join(spec.workdir, "config.json"), {})
        status = (statuses or {}).get(spec.name) or ("finished" if metrics else "not run")
        records.append({
            "model": spec.model, "seed": spec.seed,
            "workdir": os.path.relpath(spec.workdir, out), "status": status,
            "wall_seconds": _read_json(os.path.join(spec.workdir, "runner.json"), {}).get(
                "wall_seconds"),
            "train_config": config.get("train", {}), "data_config": config.get("data", {}),
            "metrics": metrics, "history": history})
    return records


# ------------------------------------------------------------------------- aggregation


def mean_sd(values):
    """-> {"mean", "sd", "n"}: sd is the sample SD (ddof=1); None where undefined.
    None entries (a group with no test points) are left out."""
    values = np.asarray([v for v in values if v is not None], np.float64)
    n = len(values)
    return {"mean": float(values.mean()) if n else None,
            "sd": float(values.std(ddof=1)) if n >= 2 else None, "n": n}


def aggregate(runs, models=None, protocols=PROTOCOLS):
    """Per-run records (as `collect` returns; only those with metrics count) -> Table 1 rows.

    One row per (model, protocol): accuracies in % for labelled classes, unlabelled classes
    and overall as mean_sd over seeds, NMI and ARI, epochs run, selected epoch, training
    seconds and wall seconds per run, the seeds, and the paper's (mean, SD) per group.
    """
    done = [r for r in runs if r.get("metrics")]
    if models is None:
        models = list(dict.fromkeys(r["model"] for r in done))
    rows = []
    for model in models:
        mine = sorted((r for r in done if r["model"] == model), key=lambda r: r["seed"])
        training = [r["metrics"].get("training", {}) for r in mine]
        for protocol in protocols:
            row = {"model": model, "protocol": protocol, "seeds": [r["seed"] for r in mine],
                   "n_seeds": len(mine)}
            for group, key, _ in GROUPS:
                row[group] = mean_sd([None if r["metrics"][protocol][key] is None
                                      else 100.0 * r["metrics"][protocol][key] for r in mine])
            row["nmi"] = mean_sd([r["metrics"][protocol]["nmi"] for r in mine])
            row["ari"] = mean_sd([r["metrics"][protocol]["ari"] for r in mine])
            row["epochs_run"] = mean_sd([t.get("epochs_run") for t in training])
            row["selected_epoch"] = mean_sd([t.get("selected_epoch") for t in training])
            row["train_seconds"] = mean_sd([t.get("seconds") for t in training])
            row["wall_seconds"] = mean_sd([r.get("wall_seconds") for r in mine])
            row["paper"] = PAPER.get(model)
            rows.append(row)
    return rows


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


def describe_budget(train_config, smoke=False):
    """A run's train config -> one line saying how long each run was allowed to train."""
    t = train_config or {}
    epochs = t.get("epochs")
    parts = [f"up to {epochs} epoch{'' if epochs == 1 else 's'} per run"]
    parts.append(f"{t['steps_per_epoch']} steps per epoch" if t.get("steps_per_epoch")
                 else "an epoch is one pass over the unlabelled pool")
    if t.get("max_minutes"):
        parts.append(f"wall-clock cap {t['max_minutes']:g} min per run")
    parts.append(f"model selection: {t.get('select', 'best_validation')}")
    if smoke:
        parts.append("SMOKE configs (tiny networks): not comparable with the paper")
    return "; ".join(parts)


def machine_info(workers=1):
    """-> {"platform", "cpu", "cpu_count", "python", "tensorflow", "workers"}."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "gpus": len(tf.config.list_physical_devices("GPU")),
            "python": platform.python_version(), "tensorflow": tf.__version__,
            "workers": workers}


def _md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _pct(v):
    return "n/a" if v is None else f"{100 * v:.1f}"


def table_markdown(rows, runs, *, budget, machine, dataset="mnist"):
    """Table 1 (+ training table, per-run table, unfinished runs) as Markdown text."""
    data_config = next((r["data_config"] for r in runs if r.get("metrics")), {})
    lines = [
        "# Table 1: semi-unsupervised learning, M2 vs GM-DGM",
        "",
        f"Data: {data_config.get('source', dataset)}; labelled classes "
        f"{list(data_config.get('labelled_classes', []))} with "
        f"{data_config.get('labels_per_class')} labels each, the other classes unlabelled; "
        f"{10 + int(data_config.get('num_extra_slots', 0))} slots.",
        "",
        "Test-set accuracy in %, mean (SD) over seeds, next to the paper's published numbers "
        "(Willetts et al., Table 1, MNIST). " + SD_NOTE,
        "",
    ]
    if dataset != "mnist":
        lines += [f"**Dataset is {dataset}, not MNIST: the paper columns are not comparable.**",
                  ""]
    table = []
    for row in rows:
        cells = [plots.model_title(row["model"]), row["protocol"], row["n_seeds"]]
        for group, _, _ in GROUPS:
            cells += [format_mean_sd(row[group]), _paper(row, group)]
        cells += [format_mean_sd(row["nmi"], 3), format_mean_sd(row["ari"], 3)]
        table.append(cells)
    header = ["Model", "Protocol", "Seeds"]
    for _, _, title in GROUPS:
        header += [title, "paper"]
    header += ["NMI", "ARI"]
    lines += [_md_table(header, table), "", PROTOCOL_NOTE, "", "## Training", ""]
    training = [[plots.model_title(row["model"]), row["n_seeds"],
                 format_mean_sd(row["epochs_run"]), format_mean_sd(row["selected_epoch"]),
                 format_mean_sd(row["train_seconds"], 0), format_mean_sd(row["wall_seconds"], 0)]
                for row in rows if row["protocol"] == rows[0]["protocol"]]
    lines += [_md_table(["Model", "Seeds", "Epochs run", "Selected epoch (best validation)",
                         "Training s / run", "Wall s / run"], training), "",
              f"- Budget: {budget}",
              f"- Machine: {machine['platform']}; {machine['cpu']}; {machine['cpu_count']} "
              f"CPUs, {machine['gpus']} GPUs; Python {machine['python']}, TensorFlow "
              f"{machine['tensorflow']}; {machine['workers']} run(s) at a time",
              "- Training s: the epochs' training time; wall s: the whole run (data, "
              "evaluation, checkpoints) summed over attempts, as measured by this runner.",
              "", "## Per run", ""]
    per_run = []
    for r in runs:
        m = r.get("metrics")
        if not m:
            continue
        per_run.append([
            plots.model_title(r["model"]), r["seed"], _pct(m["validation"]["accuracy"]),
            " / ".join(_pct(m["heldout"][k]) for _, k, _ in GROUPS),
            " / ".join(_pct(m["paper"][k]) for _, k, _ in GROUPS),
            f"{m['heldout']['nmi']:.3f}", m.get("training", {}).get("epochs_run"),
            m.get("training", {}).get("selected_epoch"),
            "n/a" if r.get("wall_seconds") is None else f"{r['wall_seconds']:.0f}",
            f"`{r['workdir']}`"])
    lines += [_md_table(["Model", "Seed", "Validation acc", "heldout: labelled / unlabelled "
                         "/ overall", "paper: labelled / unlabelled / overall", "NMI",
                         "Epochs", "Selected", "Wall s", "Workdir"], per_run)]
    missing = [r for r in runs if not r.get("metrics")]
    if missing:
        lines += ["", "## Runs without results (not counted above)", ""]
        lines += [f"- {r['model']} seed {r['seed']}: {r['status'].splitlines()[0]}"
                  for r in missing]
    return "\n".join(lines) + "\n"


CSV_FIELDS = (["model", "protocol", "n_seeds", "seeds"]
              + [f"{g}_{s}" for g, _, _ in GROUPS for s in ("mean", "sd")]
              + [f"paper_{g}_{s}" for g, _, _ in GROUPS for s in ("mean", "sd")]
              + [f"{k}_{s}" for k in ("nmi", "ari", "epochs_run", "selected_epoch",
                                      "train_seconds", "wall_seconds") for s in ("mean", "sd")]
              + ["sd", "budget", "platform", "cpu", "cpu_count"])


def table_csv_rows(rows, *, budget, machine):
    """Table 1 rows -> flat dicts with CSV_FIELDS (accuracies in %, empty when undefined)."""
    out = []
    for row in rows:
        flat = {"model": row["model"], "protocol": row["protocol"], "n_seeds": row["n_seeds"],
                "seeds": " ".join(str(s) for s in row["seeds"]), "sd": "sample, ddof=1",
                "budget": budget, "platform": machine["platform"], "cpu": machine["cpu"],
                "cpu_count": machine["cpu_count"]}
        for key in [g for g, _, _ in GROUPS] + ["nmi", "ari", "epochs_run", "selected_epoch",
                                                "train_seconds", "wall_seconds"]:
            for s in ("mean", "sd"):
                flat[f"{key}_{s}"] = "" if row[key][s] is None else round(row[key][s], 4)
        for g, _, _ in GROUPS:
            paper = (row["paper"] or {}).get(g, ("", ""))
            flat[f"paper_{g}_mean"], flat[f"paper_{g}_sd"] = paper
        out.append(flat)
    return out


# ----------------------------------------------------------------------------- figures


def best_runs(runs):
    """{model: run record} with the highest VALIDATION accuracy (ties: lowest seed)."""
    best = {}
    for r in sorted((r for r in runs if r.get("metrics")), key=lambda r: r["seed"]):
        current = best.get(r["model"])
        if current is None or (r["metrics"]["validation"]["accuracy"]
                               > current["metrics"]["validation"]["accuracy"]):
            best[r["model"]] = r
    return best


def write_figures(out, runs, models):
    """figure2.png, samples_<model>.png, learning_curves.png -> their paths."""
    best = best_runs(runs)
    ordered = {m: best[m] for m in models if m in best}
    if not ordered:
        return []
    meta = _read_json(os.path.join(out, next(iter(ordered.values()))["workdir"],
                                   "data_meta.json"), {})
    paths = [plots.save_png(plots.figure2(
        {m: (r["seed"], r["metrics"]) for m, r in ordered.items()},
        class_names=meta.get("class_names"), labelled_classes=meta.get("labelled_classes", ())),
        os.path.join(out, "figure2.png"))]
    splits = {}  # runs of one seed share their data split
    for model, r in ordered.items():
        trained, config, meta, metrics = experiment.load_run(os.path.join(out, r["workdir"]))
        key = (config.data.to_json(), config.seed)
        if key not in splits:
            splits[key] = data.load_split(config.data, config.seed)
        split = splits[key]
        fig = plots.samples_figure(
            trained, split.x_test, experiment.predict_slots(trained, split.x_test),
            slot_map=metrics["heldout"]["slot_map"], pixel_mask=split.pixel_mask,
            image_shape=split.image_shape, class_names=split.class_names,
            labelled_classes=split.labelled_classes,
            title=f"{plots.model_title(model)}, seed {r['seed']} (best by validation accuracy):"
                  " what each slot became (heldout slot names)")
        paths.append(plots.save_png(fig, os.path.join(out, f"samples_{model}.png")))
    histories = {m: {r["seed"]: r["history"] for r in runs if r["model"] == m and r["history"]}
                 for m in models}
    paths.append(plots.save_png(plots.learning_curves_figure(histories),
                                os.path.join(out, "learning_curves.png")))
    return paths


# -------------------------------------------------------------------------------- main


def write_report(out, specs, statuses=None, *, workers=1, dataset="mnist", smoke=False):
    """Aggregates whatever runs of specs have finished and writes every file into out.

    Returns {"rows", "runs", "paths"}; raises RuntimeError when no run has finished.
    """
    runs = collect(specs, out, statuses)
    done = [r for r in runs if r.get("metrics")]
    if not done:
        raise RuntimeError(f"no finished runs in {os.path.join(out, 'runs')}")
    models = list(dict.fromkeys(s.model for s in specs))
    rows = aggregate(runs, models)
    budget = " | ".join(dict.fromkeys(describe_budget(r["train_config"], smoke) for r in done))
    machine = machine_info(workers)
    paths = []
    path = os.path.join(out, "table1.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write(table_markdown(rows, runs, budget=budget, machine=machine, dataset=dataset))
    paths.append(path)
    path = os.path.join(out, "table1.csv")
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(table_csv_rows(rows, budget=budget, machine=machine))
    paths.append(path)
    path = os.path.join(out, "all_runs.json")
    experiment.write_json_atomic(path, {
        "budget": budget, "machine": machine, "sd": "sample standard deviation, ddof=1",
        "table": rows, "runs": [{k: v for k, v in r.items() if k != "history"} for r in runs]})
    paths.append(path)
    paths += write_figures(out, runs, models)
    return {"rows": rows, "runs": runs, "paths": paths}


def run(out, *, models=MODELS, seeds=10, dataset="mnist", smoke=False, budget_epochs=None,
        budget_minutes=None, data_dir="", workers=1, report_only=False):
    """Trains what is missing (unless report_only), then writes every file into out."""
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    specs = make_specs(out, models=models, seeds=seeds, dataset=dataset, smoke=smoke,
                       budget_epochs=budget_epochs, budget_minutes=budget_minutes,
                       data_dir=data_dir)
    os.makedirs(os.path.join(out, "runs"), exist_ok=True)
    statuses = None if report_only else train_all(specs, workers)
    result = write_report(out, specs, statuses, workers=workers, dataset=dataset, smoke=smoke)
    result["failed"] = [r for r in result["runs"] if r["status"].startswith("failed")]
    return result


def define_flags():
    flags.DEFINE_string("out", None, "Directory for the runs, table1.md/.csv and figures.")
    flags.DEFINE_integer("seeds", 10, "Seeds per model: config.seed = 0 .. seeds-1.")
    flags.DEFINE_list("models", list(MODELS), "Models to train: m2, gmdgm.")
    flags.DEFINE_integer("budget_epochs", None, "Epochs per run (default: the config's).")
    flags.DEFINE_float("budget_minutes", None, "Wall-clock cap in minutes per run "
                       "(config train.max_minutes); with --budget_epochs, whichever is first.")
    flags.DEFINE_string("data_dir", "", "MNIST IDX directory (default: $GMDGM_DATA_DIR, "
                        "then TensorFlow Datasets).")
    flags.DEFINE_enum("dataset", "mnist", sorted(DATASETS), "mnist: the paper's split; "
                      "digits: scikit-learn's 8x8 digits (offline, small).")
    flags.DEFINE_integer("workers", 1, "Runs trained at a time (> 1: subprocesses).")
    flags.DEFINE_bool("smoke", False, "Shrunken configs (seconds per run): checks the "
                      "pipeline, numbers mean nothing.")
    flags.DEFINE_bool("report_only", False, "Train nothing; rebuild the files from the "
                      "finished runs in --out.")
    flags.mark_flag_as_required("out")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    try:
        result = run(f.out, models=f.models, seeds=f.seeds, dataset=f.dataset, smoke=f.smoke,
                     budget_epochs=f.budget_epochs, budget_minutes=f.budget_minutes,
                     data_dir=f.data_dir, workers=f.workers, report_only=f.report_only)
    except (experiment.ConfigError, data.DataError, ValueError, RuntimeError,
            FileNotFoundError) as e:
        logging.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    with open(os.path.join(f.out, "table1.md"), encoding="utf-8") as fh:
        print(fh.read())
    print("wrote:\n  " + "\n  ".join(result["paths"]))
    if result["failed"]:
        print(f"{len(result['failed'])} run(s) failed; see table1.md and their train logs; "
              "rerun the same command to retry them", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    define_flags()
    app.run(main)
