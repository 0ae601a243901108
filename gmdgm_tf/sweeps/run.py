r"""Trains recipes x seeds, one `python -m gmdgm_tf.train` at a time, filing each summary.

  python -m gmdgm_tf.sweeps.run --out=runs/table1 --summaries=results/table1/runs \
      --recipe=gmdgm_fast=configs/mnist_gmdgm_fast.py \
      --recipe=m2_fast=configs/mnist_m2_fast.py \
      --recipe=m2_fast_uniform=configs/mnist_m2_fast.py,data.prior_rule=uniform \
      --seeds=0-4 --set=data.dir=/path/to/mnist

A recipe is NAME=CONFIG_FILE[:ARG][,FIELD=VALUE...]: a config file passed by path (as to
`gmdgm_tf.train`) and field overrides (a tuple in brackets is one value:
`model.hidden_sizes=(500,500)`); `--set` adds overrides to every recipe. Each
(recipe, seed) trains in OUT/runs/NAME_seedK with config.seed = K and logs to its
train.log there. Runs are ordered seed by seed (every recipe's seed 0, then seed 1 ...),
so a sweep stopped part-way leaves comparable seeds for every recipe.

As each run finishes, its small summary (SUMMARY_FILES: config, history, metrics, data
metadata, figures, the runner's record; never weights or checkpoints) is copied to
SUMMARIES/NAME_seedK/, ready to commit, with the fields that name places on this machine
(config.MACHINE_ONLY: data.dir, ...) blanked in its config.json; `gmdgm_tf.sweeps.report`
builds the table from those folders alone. Rerunning the same command skips runs whose
summary is filed and resumes interrupted ones from their checkpoints; a finished run
asked for more epochs resumes and trains on, or, when its workdir is gone (filed from
another machine), trains again from scratch: a filed summary counts only for the epochs
it trained. A recipe whose config (file or overrides) now differs from what its workdir,
or filed summary, ran is refused before any run trains (budget fields such as
train.epochs aside); so is a bad override of any run. Ctrl-C stops the running run at its
next checkpoint, as `gmdgm_tf.train` does, and the sweep with it. The runner's record
(runner.json) lists every attempt with its seconds, one killed with its sweep too (closed
as "interrupted" when the run resumes), so wall_seconds is the whole run's. It reads the
same on any machine: the config file relative to the checkout (with its :ARG), the
overrides as FIELD=VALUE and the `python -m gmdgm_tf.train` command they make (both
without the MACHINE_ONLY fields), the git commit of the code (None outside a checkout;
each attempt keeps its own), recipe, seed and a description of the machine (no paths).
"""

import dataclasses
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from typing import Optional

from absl import app, flags, logging
from ml_collections import config_flags

from gmdgm_tf import config as config_lib
from gmdgm_tf import filenames, machine

# Files of a run directory that make its summary (small; no weights, no checkpoints).
SUMMARY_FILES = (filenames.CONFIG, filenames.HISTORY, filenames.METRICS, filenames.DATA_META,
                 filenames.RUNNER_RECORD) + filenames.FIGURES


class SweepError(ValueError):
    """A bad recipe, seed list or sweep directory."""


@dataclasses.dataclass(frozen=True)
class Recipe:
    """NAME=CONFIG_FILE[:ARG][,FIELD=VALUE...] -> name, config file, argument, overrides."""
    name: str
    config_file: str
    config_arg: Optional[str]
    overrides: tuple  # ((field, text value), ...)

    @classmethod
    def parse(cls, text, common=()):
        name, sep, rest = text.partition("=")
        if not sep or not name or not rest:
            raise SweepError(f"--recipe {text!r}: expected NAME=CONFIG_FILE[:ARG][,FIELD=VALUE...]")
        if not name.replace("_", "").replace("-", "").isalnum():
            raise SweepError(f"--recipe name {name!r}: use letters, digits, _ and -")
        path, *fields = _split_top_level(rest)
        path, _, arg = path.partition(":")
        overrides = list(common)
        for field in fields:
            key, sep, value = field.partition("=")
            if not sep or not key:
                raise SweepError(f"--recipe {name}: override {field!r} is not FIELD=VALUE")
            overrides.append((key, value))
        if not os.path.isfile(path):
            raise SweepError(f"--recipe {name}: config file not found: {path}")
        return cls(name, os.path.abspath(path), arg or None, tuple(overrides))

    @property
    def spec(self):
        """CONFIG_FILE[:ARG] as --config= takes it (the file's absolute path)."""
        return self.config_file + self._arg

    @property
    def _arg(self):
        return f":{self.config_arg}" if self.config_arg else ""

    def portable(self):
        """-> (CONFIG_FILE[:ARG] relative to the checkout, ["FIELD=VALUE", ...]): what a run
        record keeps, without the fields that name places on this machine."""
        return (machine.portable_path(self.config_file) + self._arg,
                [f"{k}={v}" for k, v in self.overrides if k not in config_lib.MACHINE_ONLY])


def _split_top_level(text):
    """'a,b=(1,2),c' -> ['a', 'b=(1,2)', 'c']: commas inside brackets stay in their field,
    so a tuple override (model.hidden_sizes=(500,500)) is one field."""
    fields, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += (char in "([") - (char in ")]")
        if char == "," and depth == 0:
            fields.append(text[start:i])
            start = i + 1
    return fields + [text[start:]]


def parse_seeds(text):
    """'5' -> [0, 1, 2, 3, 4] (N seeds: 0..N-1); '2-4' -> [2, 3, 4]; '3,7' -> [3, 7]."""
    try:
        numbers = [int(t) for t in text.replace("-", ",").split(",")]
    except ValueError as e:
        raise SweepError(f"--seeds {text!r}: expected N, A-B or A,B,... (seeds >= 0)") from e
    if "-" in text:
        if len(numbers) != 2 or numbers[0] > numbers[1]:
            raise SweepError(f"--seeds {text!r}: A-B needs two seeds, A <= B")
        seeds = list(range(numbers[0], numbers[1] + 1))
    elif "," in text:
        seeds = numbers
    elif numbers[0] < 1:
        raise SweepError(f"--seeds {text!r}: N (seeds 0..N-1) must be at least 1; "
                         "for seed 0 alone write --seeds=0-0")
    else:
        seeds = list(range(numbers[0]))
    if min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise SweepError(f"--seeds {text!r}: need distinct seeds >= 0")
    return seeds


@dataclasses.dataclass(frozen=True)
class Run:
    recipe: Recipe
    seed: int
    workdir: str

    @property
    def name(self):
        return f"{self.recipe.name}_seed{self.seed}"

    def _train_args(self, config, workdir, overrides):
        """`gmdgm_tf.train`'s arguments: config file, workdir, seed, then FIELD=VALUE each."""
        return ([f"--config={config}", f"--workdir={workdir}", f"--config.seed={self.seed}"]
                + [f"--config.{o}" for o in overrides])

    def command(self):
        """The `python -m gmdgm_tf.train` argv that trains this run."""
        return [sys.executable, "-m", "gmdgm_tf.train"] + self._train_args(
            self.recipe.spec, self.workdir, [f"{k}={v}" for k, v in self.recipe.overrides])

    def portable(self):
        """-> the record's {"config", "overrides", "command"}: the command as one line from
        the checkout's root (quoted for a POSIX shell), no absolute paths, no MACHINE_ONLY
        fields."""
        config, overrides = self.recipe.portable()
        workdir = machine.portable_path(self.workdir)
        command = " ".join(["python -m gmdgm_tf.train"] + [
            shlex.quote(a) for a in self._train_args(config, workdir, overrides)])
        return {"config": config, "overrides": overrides, "command": command}


def plan(recipes, seeds, out):
    """-> [Run], seed-major (every recipe's first seed, then the next seed ...)."""
    names = [r.name for r in recipes]
    if len(set(names)) != len(names):
        raise SweepError(f"recipe names repeat: {names}")
    return [Run(r, s, os.path.join(os.path.abspath(out), "runs", f"{r.name}_seed{s}"))
            for s in seeds for r in recipes]


def read_json(path, default=None):
    """The JSON in path, or default when there is no such file."""
    if not os.path.exists(path):
        return default
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_text(path, text, newline=None):
    """Writes text to path through a temporary file renamed over it, so an interrupted
    write leaves the previous file whole, never half of a new one."""
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8", newline=newline) as f:
        f.write(text)
    os.replace(temporary, path)


def asked_epochs(recipe):
    """The train.epochs a recipe asks for: its override, else its config file's."""
    overrides = dict(recipe.overrides)  # text values: train.epochs is the one read here
    if "train.epochs" in overrides:
        return int(overrides["train.epochs"])
    return int(config_lib.load(recipe.spec).train.epochs)


def finished_epochs(folder):
    """The train.epochs that the finished run in folder (a workdir or a filed summary) was
    asked for, as its metrics.json records it: None without metrics.json.

    Not config.json's: a finished run that is being extended already has the new epochs in
    config.json while its metrics.json is still the shorter run's, so a sweep killed
    mid-extension must not take it for finished. Older metrics lack "epochs_asked": their
    epochs_run stands in, then (hand-made summaries) config.json's train.epochs."""
    metrics = read_json(os.path.join(folder, filenames.METRICS))
    if metrics is None:
        return None
    training = metrics.get("training", {})
    if "epochs_asked" in training:
        return training["epochs_asked"]
    if "epochs_run" in training:
        return training["epochs_run"]
    return read_json(os.path.join(folder, filenames.CONFIG), {}).get("train", {}).get("epochs")


def resolved_config(run):
    """The config `python -m gmdgm_tf.train` will run for `run`, its --config flags parsed
    as train.py parses them -> config.json's dict; a bad override is a SweepError."""
    argv = ["gmdgm_tf.train"] + [a for a in run.command() if a.startswith("--config")]
    values = flags.FlagValues()
    try:
        config_lib.check_fields(config_lib.load(run.recipe.spec),
                                [field for field, _ in run.recipe.overrides])
        # sys_argv: config_flags defines the --config.FIELD flags it finds there
        config_flags.DEFINE_config_file("config", None, "", flag_values=values,
                                        lock_config=True, sys_argv=argv)
        values(argv)
        return json.loads(values.config.to_json())
    except Exception as e:  # pylint: disable=broad-except  # flags.Error, a config file's own
        raise SweepError(f"{run.name}: {config_lib.error_line(e)}") from e


def check_filed(runs, summaries):
    """Refuses (SweepError) the sweep when a run's workdir, or where it is gone its filed
    summary, holds another experiment than its recipe now resolves to (an edited config
    file or override under the same name): its epochs would count as this recipe's.
    Budget fields (config.NOT_EXPERIMENT: train.epochs ...) may differ, as on a resume."""
    for run in runs:
        resolved = resolved_config(run)  # every run's overrides checked before any trains
        gone = not os.path.exists(run.workdir)
        folder = os.path.join(summaries, run.name) if gone else run.workdir
        filed = read_json(os.path.join(folder, filenames.CONFIG))
        trained = any(os.path.exists(os.path.join(folder, name))
                      for name in (filenames.HISTORY, filenames.METRICS))
        diffs = config_lib.config_differences(filed, resolved) if filed and trained else []
        if diffs:
            raise SweepError(f"{run.name}: {folder} holds another experiment than the recipe "
                             f"asks for ({'; '.join(diffs)}); give the recipe a new name, or "
                             "remove that folder")


def without_machine_fields(config):
    """config.json's dict with its MACHINE_ONLY fields blanked (in place) -> it."""
    for field in config_lib.MACHINE_ONLY:
        section, name = field.split(".")
        if name in config.get(section, {}):
            config[section][name] = ""
    return config


def copy_summary_files(workdir, dest, names=SUMMARY_FILES):
    """Copies the files `names` that workdir holds into the directory dest, config.json
    without its MACHINE_ONLY values (the workdir's keeps them: a resume reads them)."""
    for name in names:
        src = os.path.join(workdir, name)
        if name == filenames.CONFIG and os.path.exists(src):
            with open(os.path.join(dest, name), "w", encoding="utf-8") as f:
                json.dump(without_machine_fields(read_json(src)), f, indent=1)
        elif os.path.exists(src):
            shutil.copy2(src, dest)


def file_summary(run, summaries):
    """Copies the run's SUMMARY_FILES to summaries/<name>/ (atomically: a temp dir renamed),
    as copy_summary_files does."""
    dest = os.path.join(summaries, run.name)
    tmp = dest + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    copy_summary_files(run.workdir, tmp)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return dest


def _write_record(run, record):
    """Writes the run's runner.json atomically; wall_seconds summed over its attempts."""
    record["wall_seconds"] = round(sum(a["seconds"] for a in record["attempts"]), 1)
    record["recipe"] = run.recipe.name
    record["seed"] = run.seed
    record.update(run.portable())
    record["commit"] = record["attempts"][-1].get("commit")  # the last attempt's code
    record["machine"] = machine.describe()
    write_text(os.path.join(run.workdir, filenames.RUNNER_RECORD), json.dumps(record, indent=1))


def _start_attempt(run):
    """Records an attempt as "running" before it starts -> the record.

    An attempt still "running" here was killed with its sweep (e.g. a session's end): it
    is closed as "interrupted", its seconds counted up to its train.log's last write, so
    that wall_seconds keeps the time of every attempt."""
    record = read_json(os.path.join(run.workdir, filenames.RUNNER_RECORD), {"attempts": []})
    log = os.path.join(run.workdir, filenames.TRAIN_LOG)
    for attempt in record["attempts"]:
        if attempt["status"] == "running":
            started = datetime.datetime.fromisoformat(attempt["started"]).timestamp()
            last = os.path.getmtime(log) if os.path.exists(log) else started
            attempt.update(status="interrupted", seconds=round(max(0.0, last - started), 1))
    record["attempts"].append({"started": datetime.datetime.now().isoformat(timespec="seconds"),
                               "seconds": 0.0, "status": "running",
                               "commit": machine.code_commit()})
    _write_record(run, record)
    return record


def train(run):
    """Trains (or resumes) one run as a subprocess -> exit code; logs to its train.log.

    Ctrl-C reaches the run too (it shares the sweep's process group): the run checkpoints
    at its next step and exits (a second Ctrl-C stops it at once), so the sweep waits for
    it, records the attempt, then raises KeyboardInterrupt to stop before the next run."""
    os.makedirs(run.workdir, exist_ok=True)
    record = _start_attempt(run)
    t0, interrupted = time.time(), False
    with open(os.path.join(run.workdir, filenames.TRAIN_LOG), "a", encoding="utf-8") as log:
        child = subprocess.Popen(run.command(), stdout=log, stderr=subprocess.STDOUT)
        while True:
            try:
                code = child.wait()
                break
            except KeyboardInterrupt:
                interrupted = True
                logging.warning("%s: interrupted; waiting for it to checkpoint and stop",
                                run.name)
    record["attempts"][-1].update(seconds=round(time.time() - t0, 1),
                                  status="finished" if code == 0 else f"exit code {code}")
    _write_record(run, record)
    if interrupted:
        raise KeyboardInterrupt
    return code


def sweep(runs, summaries):
    """Trains what is missing, filing each finished run -> {name: status}."""
    statuses = {}
    for i, run in enumerate(runs):
        asked = asked_epochs(run.recipe)  # runs the config file: once per run
        gone = not os.path.exists(run.workdir)  # e.g. trained on another machine
        # the workdir decides; only where it is gone does the filed summary stand in
        trained = finished_epochs(os.path.join(summaries, run.name) if gone else run.workdir)
        if trained == asked:
            statuses[run.name] = "finished"
        else:
            if gone and trained is not None:
                logging.warning("%s: the filed summary trained %s epochs, %d are asked, and "
                                "its workdir is gone: training from scratch",
                                run.name, trained, asked)
            logging.info("run %d/%d: %s", i + 1, len(runs), run.name)
            code = train(run)
            statuses[run.name] = "finished" if code == 0 else f"failed (exit code {code})"
            logging.info("%s: %s", run.name, statuses[run.name])
        if statuses[run.name] == "finished" and os.path.exists(run.workdir):
            logging.info("filed %s", file_summary(run, summaries))
    return statuses


def define_flags():
    flags.DEFINE_string("out", None, "Directory for the runs' workdirs (weights, "
                        "checkpoints: not for committing).")
    flags.DEFINE_string("summaries", None, "Directory for the runs' summaries (commit "
                        "these), one folder per run.")
    flags.DEFINE_multi_string("recipe", None, "NAME=CONFIG_FILE[:ARG][,FIELD=VALUE...]; "
                              "repeat for more recipes.")
    flags.DEFINE_string("seeds", "5", "N (seeds 0..N-1), A-B or A,B,...")
    flags.DEFINE_multi_string("set", [], "FIELD=VALUE override for every recipe.")
    flags.mark_flags_as_required(["out", "summaries", "recipe"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    try:
        for name in ("out", "summaries"):  # "" would be the current directory
            if not getattr(f, name).strip():
                raise SweepError(f"--{name} is empty (an unset shell variable?); give a "
                                 "directory")
        common = []
        for item in f.set:
            key, sep, value = item.partition("=")
            if not sep:
                raise SweepError(f"--set {item!r} is not FIELD=VALUE")
            common.append((key, value))
        runs = plan([Recipe.parse(r, common) for r in f.recipe], parse_seeds(f.seeds), f.out)
        check_filed(runs, f.summaries)
    except SweepError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    try:
        statuses = sweep(runs, f.summaries)
    except KeyboardInterrupt:
        print("stopped: interrupted, each run's checkpoint kept; rerun the same command to "
              "resume", file=sys.stderr)
        sys.exit(130)
    failed = {k: v for k, v in statuses.items() if v != "finished"}
    for name, status in failed.items():
        print(f"{name}: {status}; see {os.path.join(f.out, 'runs', name, 'train.log')}",
              file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    define_flags()
    app.run(main)
