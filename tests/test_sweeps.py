"""Multi-seed sweeps: recipes, seeds and commands (sweeps.run); Table 1 from hand-made
summaries (sweeps.report); and one tiny sweep end to end, run then report."""

import csv
import datetime
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time

import numpy as np
import pytest
from matplotlib import image as mpimg

from gmdgm_tf import filenames, machine
from gmdgm_tf.sweeps import markdown, records, report, run, tables
from conftest import REPO, absolute_paths, load_config

DIGITS = os.path.join(REPO, "configs", "digits_gmdgm.py")


# ------------------------------------------------------------------ hand-made summaries


def protocol(overall, labelled, unlabelled):
    """A protocol's metrics; NMI and ARI differ per run (overall - 0.3, overall - 0.4)."""
    nmi, ari = round(overall - 0.3, 6), round(overall - 0.4, 6)
    return {"accuracy": overall, "accuracy_labelled_classes": labelled,
            "accuracy_unlabelled_classes": unlabelled, "nmi": nmi, "ari": ari,
            "confusion_matrix": np.eye(10, dtype=int).tolist(),
            "assignment_matrix": np.eye(10, 15, dtype=int).tolist(),
            "slot_map": list(range(10)) + [-1] * 5}


def write_summary(summaries, recipe, seed, heldout, paper=None, val=0.5, model="gmdgm",
                  epochs=10, seconds=100.0, wall=120.0, samples=False):
    """A summary folder as sweeps.run files it -> its path."""
    folder = os.path.join(summaries, f"{recipe}_seed{seed}")
    os.makedirs(folder)
    files = {
        "metrics.json": {"heldout": protocol(*heldout), "paper": protocol(*(paper or heldout)),
                         "validation": protocol(val, val, val),
                         "training": {"epochs_run": epochs, "selected_epoch": epochs - 1,
                                      "seconds": seconds, "seconds_per_epoch_median": 2.0}},
        "config.json": {"seed": seed, "model": {"name": model},
                        "optimizer": {"learning_rate": 0.001},
                        "data": {"source": "mnist", "labelled_classes": [0, 1, 2, 8, 9],
                                 "labels_per_class": 100, "num_extra_slots": 15},
                        "train": {"epochs": epochs, "precision": "float32"}},
        "data_meta.json": {"class_names": [str(c) for c in range(10)],
                           "labelled_classes": [0, 1, 2, 8, 9]},
        filenames.RUNNER_RECORD: {"recipe": recipe, "seed": seed, "attempts": [],
                                  "wall_seconds": wall, "command": "python -m gmdgm_tf.train",
                                  "machine": {"platform": "TestOS", "cpu": "test cpu",
                                              "cpu_count": 2, "python": "3"}}}
    for name, obj in files.items():
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            json.dump(obj, f)
    with open(os.path.join(folder, "history.jsonl"), "w", encoding="utf-8") as f:
        for epoch in range(1, epochs + 1):
            f.write(json.dumps({"epoch": epoch, "val_accuracy": val * epoch / epochs}) + "\n")
    if samples:
        mpimg.imsave(os.path.join(folder, "samples.png"), np.random.default_rng(seed).random(
            (20, 30, 3)))
    return folder


@pytest.fixture
def summaries(tmp_path):
    """gm: 3 seeds (seed 0 best on test, seed 1 best on validation); m2u: 1 seed."""
    root = str(tmp_path / "summaries")
    os.makedirs(root)
    write_summary(root, "gm", 0, (0.90, 0.95, 0.85), paper=(0.92, 0.95, 0.89), val=0.91,
                  epochs=10, wall=100.0)
    write_summary(root, "gm", 1, (0.80, 0.90, 0.70), paper=(0.82, 0.90, 0.74), val=0.93,
                  epochs=20, wall=200.0, samples=True)
    write_summary(root, "gm", 2, (0.70, 0.85, None), val=0.80, epochs=30, wall=None)
    write_summary(root, "m2u", 0, (0.74, 0.86, 0.63), val=0.7, model="m2")
    os.makedirs(os.path.join(root, "m2u_seed1"))      # no metrics.json: not a finished run
    return root


def test_aggregate_mean_and_sample_sd(summaries):
    recipes, runs = records.read_runs(summaries, ["m2u", "gm"])
    assert recipes == ["m2u", "gm"] and [(r["recipe"], r["seed"]) for r in runs] == [
        ("m2u", 0), ("gm", 0), ("gm", 1), ("gm", 2)]
    rows = tables.aggregate(runs, recipes)
    by = {(r["recipe"], r["protocol"]): r for r in rows}
    assert [(r["recipe"], r["protocol"]) for r in rows] == [
        ("m2u", "heldout"), ("m2u", "paper"), ("gm", "heldout"), ("gm", "paper")]
    g = by["gm", "heldout"]
    assert g["n_seeds"] == 3 and g["seeds"] == [0, 1, 2] and g["model"] == "gmdgm"
    assert g["overall"]["mean"] == pytest.approx(80.0)
    assert g["overall"]["sd"] == pytest.approx(10.0)           # ddof=1: sqrt(200 / 2)
    assert g["labelled"]["mean"] == pytest.approx(90.0)
    assert g["labelled"]["sd"] == pytest.approx(5.0)
    # a None group accuracy (no test points) is left out, not counted as 0
    assert g["unlabelled"] == {"mean": pytest.approx(77.5), "sd": pytest.approx(
        np.std([85.0, 70.0], ddof=1)), "n": 2}
    assert g["epochs_run"]["mean"] == pytest.approx(20.0) and g["epochs_run"]["sd"] == 10.0
    assert g["wall_seconds"]["mean"] == pytest.approx(150.0)   # the unknown wall time skipped
    assert g["train_seconds"]["mean"] == pytest.approx(100.0)
    assert g["seconds_per_epoch"]["mean"] == pytest.approx(2.0)
    assert g["nmi"] == {"mean": pytest.approx(0.5), "sd": pytest.approx(0.1), "n": 3}
    assert g["ari"] == {"mean": pytest.approx(0.4), "sd": pytest.approx(0.1), "n": 3}
    assert g["paper"] == tables.PAPER["gmdgm"]
    assert by["gm", "paper"]["overall"]["mean"] == pytest.approx(np.mean([92, 82, 70]))
    m2 = by["m2u", "heldout"]   # one seed has no SD; the paper's numbers follow the model
    assert m2["n_seeds"] == 1 and m2["overall"] == {"mean": pytest.approx(74.0), "sd": None,
                                                    "n": 1}
    assert m2["paper"] == tables.PAPER["m2"]
    assert markdown.format_mean_sd(m2["overall"]) == "74.0 (n/a)"
    assert markdown.format_mean_sd(g["overall"]) == "80.0 (10.0)"
    assert markdown.format_mean_sd({"mean": None, "sd": None, "n": 0}) == "n/a"
    assert g["description"] == ("GM-DGM, lr 0.001, 25 slots, prior rule paper, float32, "
                                "10 epochs | GM-DGM, lr 0.001, 25 slots, prior rule paper, "
                                "float32, 20 epochs | GM-DGM, lr 0.001, 25 slots, prior rule "
                                "paper, float32, 30 epochs")


def test_late_validation_is_the_mean_over_the_second_half_of_the_epochs():
    history = [{"epoch": e, "val_accuracy": e / 10} for e in range(1, 8)] + [{"epoch": 8}]
    assert tables.late_validation({"history": history}) == pytest.approx(55.0)  # epochs 4-7
    assert tables.late_validation({"history": [{"epoch": 1}]}) is None


def test_other_datasets_get_their_slot_count_and_no_paper_numbers(summaries):
    folder = os.path.join(summaries, "gm_seed0")
    for name, edit in (("config.json", lambda c: c["data"].update(source="npz:x.npz")),
                       ("data_meta.json", lambda m: m.update(class_names=list("abcd")))):
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            obj = json.load(f)
        edit(obj)
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            json.dump(obj, f)
    recipes, runs = records.read_runs(summaries, ["gm", "m2u"])
    rows = {row["recipe"]: row for row in tables.aggregate(runs, recipes)}
    assert rows["gm"]["paper"] is None and rows["m2u"]["paper"] == tables.PAPER["m2"]
    assert rows["gm"]["description"].startswith("GM-DGM, lr 0.001, 19 slots")  # 4 + 15


def test_markdown_and_csv_from_hand_made_runs(summaries):
    recipes, runs = records.read_runs(summaries)
    assert recipes == ["gm", "m2u"]                 # default: every recipe found, sorted
    rows = tables.aggregate(runs, recipes)
    text = markdown.table_markdown(rows, runs, markdown.machine_line(runs))
    assert "| gm | heldout | 3 | 90.0 (5.0) | 93.7 (1.9) | 77.5 (10.6) | 87.4 (4.5) " \
           "| 80.0 (10.0) | 90.7 (2.0) | 0.500 (0.100) | 0.400 (0.100) |" in text
    assert "| m2u | paper | 1 | 86.0 (n/a) | 86.3 (2.2) | 63.0 (n/a) | 63.4 (8.3) " \
           "| 74.0 (n/a) | 74.3 (4.4) |" in text
    assert "- `m2u`: M2, lr 0.001, 25 slots, prior rule paper, float32, 10 epochs; seeds 0" \
        in text
    assert "| gm | 1 | 93.0 | 90.0 / 70.0 / 80.0 | 82.0 | 0.500 | 20 | 19 | 100 / 200 |" in text
    assert "ddof=1" in text and "TestOS; test cpu; 2 CPUs (the runs trained on)" in text
    assert markdown.PROTOCOL_NOTE in text and "not comparable" not in text
    # validation by epoch: gm's seeds ran 10, 20, 30 epochs (val * epoch / epochs), so up
    # to epoch 10 only; at epoch e the seeds give 91 e / 10, 93 e / 20 and 80 e / 30 %
    assert "| Recipe | Seeds | epoch 1 | epoch 5 | epoch 10 |" in text
    cells = [f"{statistics.mean(v):.1f} ({statistics.stdev(v):.1f})"
             for v in ([91 * e / 10, 93 * e / 20, 80 * e / 30] for e in (1, 5, 10))]
    assert cells == ["5.5 (3.3)", "27.4 (16.5)", "54.7 (32.9)"]
    assert f"| gm | 3 | {' | '.join(cells)} |" in text
    assert "| m2u | 1 | 7.0 (n/a) | 35.0 (n/a) | 70.0 (n/a) |" in text
    flat = tables.table_csv_rows(rows)
    assert len(flat) == 4 and set(flat[0]) == set(tables.CSV_FIELDS)
    g = next(r for r in flat if r["recipe"] == "gm" and r["protocol"] == "heldout")
    assert (g["overall_mean"], g["overall_sd"], g["paper_overall_mean"]) == (80.0, 10.0, 90.7)
    assert g["seeds"] == "0 1 2" and g["wall_seconds_mean"] == 150.0


def test_best_run_is_chosen_on_validation_never_test(summaries):
    _, runs = records.read_runs(summaries)
    best = tables.best_runs(runs)
    # gm seed 0 has the best test accuracy, seed 1 the best validation accuracy
    assert best["gm"]["seed"] == 1
    assert best["m2u"]["seed"] == 0
    tie = [dict(r, seed=s) for s, r in ((5, runs[0]), (2, runs[0]))]
    assert tables.best_runs(tie)["gm"]["seed"] == 2        # ties: the lowest seed


def check_png(path):
    pixels = mpimg.imread(path)
    assert pixels[..., :3].std() > 0.01, path


def report_cli(*args):
    """`python -m gmdgm_tf.sweeps.report ARGS` -> CompletedProcess (text, not checked)."""
    return subprocess.run([sys.executable, "-m", "gmdgm_tf.sweeps.report", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)


def test_report_files_and_cli_errors(summaries, tmp_path):
    out = str(tmp_path / "report")
    result = report.write_report(summaries, out, ["gm", "m2u"])
    names = sorted(os.path.basename(p) for p in result["paths"])
    # m2u's best run has no samples.png
    assert names == ["all_runs.json", "figure2.png", "learning_curves.png", "samples_gm.png",
                     "table1.csv", "table1.md", "table1_summary.md"]
    for name in ("figure2.png", "learning_curves.png", "samples_gm.png"):
        check_png(os.path.join(out, name))
    with open(os.path.join(summaries, "gm_seed1", "samples.png"), "rb") as a, \
            open(os.path.join(out, "samples_gm.png"), "rb") as b:
        assert a.read() == b.read()                   # the best-by-validation run's
    with open(os.path.join(out, "all_runs.json"), encoding="utf-8") as f:
        everything = json.load(f)
    assert len(everything["table"]) == 4 and len(everything["runs"]) == 4
    assert everything["runs"][0]["metrics"]["heldout"]["accuracy"] == 0.90
    assert everything["runs"][0]["summary"] == os.path.join("..", "summaries", "gm_seed0")

    os.makedirs(tmp_path / "empty")
    (tmp_path / "README.md").write_text("no markers\n", encoding="utf-8")
    for args, message in [((f"--summaries={tmp_path / 'nowhere'}",), "no such directory"),
                          ((f"--summaries={tmp_path / 'empty'}",), "no run summaries"),
                          ((f"--summaries={summaries}", "--recipes=gm,nope"), "['nope']"),
                          ((f"--summaries={summaries}", f"--readme={tmp_path / 'README.md'}"),
                           "the README has no '<!-- table1: written"),
                          ((f"--summaries={summaries}", f"--readme={tmp_path / 'nope.md'}"),
                           "cannot read --readme=")]:
        proc = report_cli(*args, f"--out={tmp_path / 'cli'}")
        assert proc.returncode == 2 and proc.stderr.startswith("error: "), proc.stderr
        assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "cli")     # refused before anything was written
    begin, end = markdown.readme_markers()
    (tmp_path / "README.md").write_text(f"intro\n{begin}\nold\n{end}\n", encoding="utf-8")
    proc = report_cli(f"--summaries={summaries}", f"--out={tmp_path / 'cli'}", "--recipes=m2u",
                      f"--readme={tmp_path / 'README.md'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| m2u | heldout | 1 |" in proc.stdout and "| gm |" not in proc.stdout
    summary = (tmp_path / "cli" / "table1_summary.md").read_text(encoding="utf-8")
    assert (tmp_path / "README.md").read_text(encoding="utf-8") == (
        f"intro\n{begin}\n{summary}{end}\n")
    assert not [name for folder in (tmp_path, tmp_path / "cli") for name in os.listdir(folder)
                if name.endswith(".tmp")]                     # each file renamed into place


def test_several_summary_directories_report_together_and_a_run_filed_twice_is_refused(
        summaries, tmp_path):
    probe = str(tmp_path / "probe")
    write_summary(probe, "gm25", 0, (0.95, 0.96, 0.94), val=0.94)
    recipes, runs = records.read_runs([summaries, probe])
    assert recipes == ["gm", "gm25", "m2u"]
    assert [(r["recipe"], r["seed"]) for r in runs][3] == ("gm25", 0)
    proc = report_cli(f"--summaries={summaries},{probe}", f"--out={tmp_path / 'both'}",
                      "--recipes=gm25,gm")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| gm25 | heldout | 1 |" in proc.stdout and "| gm | heldout | 3 |" in proc.stdout
    write_summary(probe, "gm", 1, (0.5, 0.5, 0.5))              # gm seed 1 is in summaries too
    with pytest.raises(records.ReportError, match="gm seed 1 is filed twice"):
        records.read_runs([summaries, probe])


# ------------------------------------------------------------------------ recipes, seeds


def test_recipe_parsing_and_bad_input():
    recipe = run.Recipe.parse(f"m2-u={DIGITS}:smoke,model.name=m2,data.prior_rule=uniform",
                              common=[("train.epochs", "3")])
    assert (recipe.name, recipe.config_file, recipe.config_arg) == ("m2-u", DIGITS, "smoke")
    assert recipe.overrides == (("train.epochs", "3"), ("model.name", "m2"),
                                ("data.prior_rule", "uniform"))
    assert run.Recipe.parse(f"gm={DIGITS}").config_arg is None
    wide = run.Recipe.parse(f"w={DIGITS},model.hidden_sizes=(500,500),train.epochs=3")
    assert wide.overrides == (("model.hidden_sizes", "(500,500)"), ("train.epochs", "3"))
    assert wide.portable()[1] == ["model.hidden_sizes=(500,500)", "train.epochs=3"]
    for bad, message in [("gm", "expected NAME="), (f"={DIGITS}", "expected NAME="),
                         ("gm=", "expected NAME="), (f"g m={DIGITS}", "letters, digits"),
                         (f"gm={DIGITS},model.name", "not FIELD=VALUE"),
                         ("gm=configs/nope.py", "not found")]:
        with pytest.raises(run.SweepError, match=message):
            run.Recipe.parse(bad)


def test_asked_epochs_are_the_override_else_the_config_files():
    assert run.asked_epochs(run.Recipe.parse(f"gm={DIGITS}:smoke,train.epochs=7")) == 7
    assert run.asked_epochs(run.Recipe.parse(f"gm={DIGITS}:smoke")) == 2   # config.shrink
    assert run.asked_epochs(run.Recipe.parse(f"gm={DIGITS}")) == \
        load_config("digits_gmdgm").train.epochs


def test_seeds():
    assert run.parse_seeds("5") == [0, 1, 2, 3, 4]
    assert run.parse_seeds("1") == [0]
    assert run.parse_seeds("2-4") == [2, 3, 4] and run.parse_seeds("0-0") == [0]
    assert run.parse_seeds("3,7") == [3, 7]
    with pytest.raises(run.SweepError, match="at least 1"):
        run.parse_seeds("0")
    for bad in ("", "x", "-1", "4-2", "1-2-3", "3,3", "1,-2", "2.5"):
        with pytest.raises(run.SweepError):
            run.parse_seeds(bad)


def test_plan_is_seed_major_and_refuses_repeated_names(tmp_path):
    recipes = [run.Recipe.parse(f"gm={DIGITS}:smoke"),
               run.Recipe.parse(f"m2={DIGITS}:smoke,model.name=m2")]
    runs = run.plan(recipes, [0, 1], str(tmp_path))
    assert [r.name for r in runs] == ["gm_seed0", "m2_seed0", "gm_seed1", "m2_seed1"]
    assert runs[3].workdir == os.path.join(str(tmp_path), "runs", "m2_seed1")
    with pytest.raises(run.SweepError, match="repeat"):
        run.plan([recipes[0], recipes[0]], [0], str(tmp_path))


def test_a_filed_summary_counts_only_for_the_epochs_it_trained(tmp_path, monkeypatch):
    """A summary filed from another machine (no workdir here) stands in for its run only
    while the recipe asks for the epochs it trained; asked for more, the run trains."""
    summaries, out = str(tmp_path / "summaries"), str(tmp_path / "out")
    filed = tmp_path / "summaries" / "gm_seed0"
    filed.mkdir(parents=True)
    (filed / "metrics.json").write_text("{}")
    (filed / "config.json").write_text(json.dumps({"train": {"epochs": 2}}))
    trained = []
    monkeypatch.setattr(run, "train", lambda r: trained.append(r.name) or 0)
    for epochs, expected in ((2, []), (4, ["gm_seed0"])):
        runs = run.plan([run.Recipe.parse(f"gm={DIGITS}:smoke,train.epochs={epochs}")], [0],
                        out)
        assert run.sweep(runs, summaries) == {"gm_seed0": "finished"}
        assert trained == expected, epochs


def test_a_run_killed_while_being_extended_is_not_taken_for_finished(tmp_path, monkeypatch):
    """Extending a finished run rewrites config.json with the new epochs at once, while
    metrics.json stays the shorter run's until the extension finishes: a sweep killed in
    between must train it again (it resumes), not file the old metrics as the new run."""
    out = str(tmp_path / "out")
    trained = []
    monkeypatch.setattr(run, "train", lambda r: trained.append(r.name) or 0)
    runs = run.plan([run.Recipe.parse(f"gm={DIGITS}:smoke,train.epochs=4")], [0], out)
    workdir = runs[0].workdir
    os.makedirs(workdir)
    with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
        json.dump({"train": {"epochs": 4}}, f)   # the extension's config, already written
    for training, expected in (({"epochs_run": 2}, ["gm_seed0"]),  # metrics of older runs
                               ({"epochs_run": 2, "epochs_asked": 2}, ["gm_seed0"]),
                               ({"epochs_run": 3, "epochs_asked": 4}, [])):  # e.g. max_minutes
        with open(os.path.join(workdir, "metrics.json"), "w", encoding="utf-8") as f:
            json.dump({"training": training}, f)
        trained.clear()
        run.sweep(runs, str(tmp_path / "summaries"))
        assert trained == expected, training


def test_a_recipe_changed_under_its_name_is_refused_before_anything_trains(tmp_path):
    """A workdir (or, where it is gone, a filed summary) that ran another experiment than
    the recipe now resolves to (an edited config file or override) would count as the
    recipe's: refused in one line. The budget may change (an extension); bad overrides of
    any run are refused before the first run trains."""
    out, summaries = tmp_path / "out", tmp_path / "summaries"
    recipe = run.Recipe.parse(f"gm={DIGITS}:smoke")
    first, second = run.plan([recipe], [0, 1], str(out))
    filed = run.resolved_config(first)
    assert filed["seed"] == 0 and filed["train"]["epochs"] == load_config(
        "digits_gmdgm", "smoke").train.epochs
    summary = summaries / second.name                  # seed 1: filed from another machine
    summary.mkdir(parents=True)
    (summary / "metrics.json").write_text("{}")
    (summary / "config.json").write_text(json.dumps(dict(run.resolved_config(second))))
    os.makedirs(first.workdir)
    (out / "runs" / first.name / "history.jsonl").write_text("")
    edited = json.loads(json.dumps(filed))
    edited["train"]["epochs"] += 5                     # a budget field: not another experiment
    (out / "runs" / first.name / "config.json").write_text(json.dumps(edited))
    run.check_filed([first, second], str(summaries))
    edited["optimizer"]["learning_rate"] = 0.5
    (out / "runs" / first.name / "config.json").write_text(json.dumps(edited))
    with pytest.raises(run.SweepError, match=r"gm_seed0: .* holds another experiment than the "
                       r"recipe asks for \(optimizer.learning_rate: 0.5 -> 0.001\)"):
        run.check_filed([first, second], str(summaries))
    shutil.rmtree(out)                                 # gone: the filed summary decides
    (summary / "config.json").write_text(json.dumps(edited))
    with pytest.raises(run.SweepError, match=r"gm_seed1: .*summaries/gm_seed1 holds another"):
        run.check_filed([first, second], str(summaries))
    proc = subprocess.run(
        [sys.executable, "-m", "gmdgm_tf.sweeps.run", f"--out={out}", f"--summaries={summaries}",
         f"--recipe=gm={DIGITS}:smoke", "--recipe=typo=" + DIGITS + ":smoke,model.z_dm=3",
         "--seeds=2"], cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: typo_seed0: unknown config field --config.model.z_dm (did you mean "
        "--config.model.z_dim?)"]
    assert not out.exists()                            # nothing trained


def test_runner_record_keeps_every_attempt_even_one_killed_with_its_sweep(tmp_path,
                                                                          monkeypatch):
    """An attempt is recorded as running before it starts; one a killed sweep left running
    is closed as interrupted, its seconds up to its train.log's last write."""
    r = run.plan([run.Recipe.parse(f"gm={DIGITS}:smoke")], [0], str(tmp_path))[0]
    record_path = os.path.join(r.workdir, filenames.RUNNER_RECORD)
    log_path = os.path.join(r.workdir, "train.log")
    os.makedirs(r.workdir)
    started = datetime.datetime.now() - datetime.timedelta(seconds=300)
    with open(record_path, "w", encoding="utf-8") as f:   # as a killed sweep left it
        json.dump({"attempts": [{"started": started.isoformat(timespec="seconds"),
                                 "seconds": 0.0, "status": "running"}]}, f)
    with open(log_path, "w", encoding="utf-8") as f:
        f.write("epoch 1/4\n")
    last_write = started.timestamp() + 200
    os.utime(log_path, (last_write, last_write))
    # the training command reports what the record says while it runs, then exits with 3
    script = ("import json, sys; print(json.load(open(sys.argv[1]))['attempts'][-1]"
              "['status']); sys.exit(3)")
    monkeypatch.setattr(run.Run, "command", lambda self: [sys.executable, "-c", script,
                                                          record_path])
    assert run.train(r) == 3
    with open(log_path, encoding="utf-8") as f:
        assert f.read().splitlines()[-1] == "running"
    with open(record_path, encoding="utf-8") as f:
        record = json.load(f)
    first, second = record["attempts"]
    assert first["status"] == "interrupted" and abs(first["seconds"] - 200) <= 1
    assert second["status"] == "exit code 3" and 0 <= second["seconds"] < 60
    assert record["wall_seconds"] == round(first["seconds"] + second["seconds"], 1)
    assert (record["recipe"], record["seed"]) == ("gm", 0)


def test_ctrl_c_lets_the_run_checkpoint_and_stops_the_sweep(tmp_path):
    """Ctrl-C reaches the sweep and its run alike (one process group). The run's own
    handler checkpoints before it exits; the sweep must wait for that (subprocess.call
    killed it after 0.25 s), record the attempt and stop before the next run."""
    ready, done = tmp_path / "ready", tmp_path / "done"
    child = ("import pathlib, signal, sys, time; got = []; "
             "signal.signal(signal.SIGINT, lambda s, f: got.append(s)); "
             f"pathlib.Path({str(ready)!r}).write_text('x')\n"
             "while not got: time.sleep(0.02)\n"
             f"time.sleep(1.0); pathlib.Path({str(done)!r}).write_text('x'); sys.exit(130)")
    parent = (
        "import sys\nfrom gmdgm_tf.sweeps import run\n"
        f"runs = run.plan([run.Recipe.parse('gm={DIGITS}:smoke')], [0, 1], {str(tmp_path)!r})\n"
        f"run.Run.command = lambda self: [sys.executable, '-c', {child!r}]\n"
        "run.sweep(runs, 'unused')\n")
    proc = subprocess.Popen([sys.executable, "-c", parent], cwd=REPO, start_new_session=True,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not ready.exists() and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)                 # as a terminal's Ctrl-C
    _, stderr = proc.communicate(timeout=60)
    assert done.exists(), stderr[-2000:]               # the run finished its checkpoint
    assert proc.returncode != 0 and "KeyboardInterrupt" in stderr
    with open(tmp_path / "runs" / "gm_seed0" / filenames.RUNNER_RECORD, encoding="utf-8") as f:
        assert json.load(f)["attempts"][-1]["status"] == "exit code 130"
    assert not (tmp_path / "runs" / "gm_seed1").exists()   # the sweep stopped


def test_commands_parse_as_the_train_entry_point_does(tmp_path, monkeypatch):
    from absl import flags  # pylint: disable=import-outside-toplevel
    from ml_collections import config_flags  # pylint: disable=import-outside-toplevel
    recipe = run.Recipe.parse(f"m2={DIGITS}:smoke,model.name=m2,train.epochs=3",
                              common=[("train.max_minutes", "0.5")])
    sweep_run = run.plan([recipe], [3], str(tmp_path))[0]
    command = sweep_run.command()
    assert command[:3] == [sys.executable, "-m", "gmdgm_tf.train"]
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True)
    flags.DEFINE_string("workdir", None, "", flag_values=fv)
    argv = ["train"] + command[3:]
    monkeypatch.setattr(sys, "argv", argv)   # config_flags reads its overrides there
    fv(argv)
    expected = load_config("digits_gmdgm", "smoke")
    expected.model.name, expected.seed = "m2", 3
    expected.train.epochs, expected.train.max_minutes = 3, 0.5
    assert fv.workdir == sweep_run.workdir
    assert fv.config.to_json() == expected.to_json()


def test_runner_record_is_portable(tmp_path, monkeypatch):
    """runner.json names the config file relative to the checkout, the overrides and the
    commit, and its command trains the same experiment from the checkout's root: no
    absolute path, no field that names a place on this machine."""
    from absl import flags  # pylint: disable=import-outside-toplevel
    from ml_collections import config_flags  # pylint: disable=import-outside-toplevel
    recipe = run.Recipe.parse(f"m2={DIGITS}:smoke,model.name=m2,train.tpu_address=grpc://t:1,"
                              "model.hidden_sizes=(40,40)",
                              common=[("data.tfds_dir", str(tmp_path / "tfds")),
                                      ("train.epochs", "3")])
    r = run.plan([recipe], [4], str(tmp_path / "out"))[0]
    monkeypatch.setattr(run.Run, "command", lambda self: [sys.executable, "-c", "pass"])
    assert run.train(r) == 0
    with open(os.path.join(r.workdir, filenames.RUNNER_RECORD), encoding="utf-8") as f:
        text = f.read()
    record = json.loads(text)
    assert record["config"] == "configs/digits_gmdgm.py:smoke"
    assert record["overrides"] == ["train.epochs=3", "model.name=m2",
                                   "model.hidden_sizes=(40,40)"]
    head = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()   # the tests run in a checkout
    assert record["commit"] == head == record["attempts"][-1]["commit"]
    assert (record["recipe"], record["seed"], record["machine"]) == ("m2", 4, machine.describe())
    assert {"attempts", "wall_seconds"} <= set(record)
    assert not absolute_paths(text) and "tfds" not in text
    assert record["command"] == (
        "python -m gmdgm_tf.train --config=configs/digits_gmdgm.py:smoke "
        f"--workdir={os.path.relpath(r.workdir, REPO)} --config.seed=4 "
        "--config.train.epochs=3 --config.model.name=m2 '--config.model.hidden_sizes=(40,40)'")
    # run from the checkout's root, it parses to the config the sweep trained (the
    # machine's fields aside)
    monkeypatch.chdir(REPO)
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True)
    flags.DEFINE_string("workdir", None, "", flag_values=fv)
    argv = ["train"] + shlex.split(record["command"])[3:]
    monkeypatch.setattr(sys, "argv", argv)
    fv(argv)
    expected = load_config("digits_gmdgm", "smoke")
    expected.model.name, expected.seed, expected.train.epochs = "m2", 4, 3
    expected.model.hidden_sizes = (40, 40)
    assert fv.config.to_json() == expected.to_json()
    assert os.path.abspath(fv.workdir) == r.workdir


def test_code_commit_is_none_outside_a_checkout(tmp_path, monkeypatch):
    monkeypatch.setattr(machine, "REPO", str(tmp_path))
    assert machine.code_commit() is None
    (tmp_path / "sub").mkdir()   # a folder inside a checkout is not a checkout of its own
    monkeypatch.setattr(machine, "REPO", os.path.join(REPO, "gmdgm_tf"))
    assert machine.code_commit() is None


def test_a_filed_config_leaves_out_the_machines_fields(tmp_path):
    """The filed config.json blanks data.dir, data.tfds_dir, train.tpu_address; the
    workdir's keeps them (a resume reads them)."""
    r = run.plan([run.Recipe.parse(f"gm={DIGITS}:smoke")], [0], str(tmp_path / "out"))[0]
    os.makedirs(r.workdir)
    config = {"seed": 0, "data": {"source": "mnist", "dir": "/data/mnist",
                                  "tfds_dir": "/data/tfds"},
              "train": {"epochs": 2, "tpu_address": "grpc://10.0.0.2:8470"}}
    with open(os.path.join(r.workdir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f)
    filed = run.file_summary(r, str(tmp_path / "summaries"))
    with open(os.path.join(filed, "config.json"), encoding="utf-8") as f:
        assert json.load(f) == {"seed": 0, "data": {"source": "mnist", "dir": "", "tfds_dir": ""},
                                "train": {"epochs": 2, "tpu_address": ""}}
    with open(os.path.join(r.workdir, "config.json"), encoding="utf-8") as f:
        assert json.load(f) == config


@pytest.mark.parametrize("flag", ["out", "summaries"])
def test_an_empty_directory_flag_is_refused(tmp_path, flag):
    """--out=$UNSET would put the runs in the current directory: refused in one line."""
    args = {"out": str(tmp_path / "out"), "summaries": str(tmp_path / "summaries"), flag: ""}
    proc = subprocess.run(
        [sys.executable, "-m", "gmdgm_tf.sweeps.run", f"--out={args['out']}",
         f"--summaries={args['summaries']}", f"--recipe=gm={DIGITS}:smoke"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": REPO})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: --{flag} is empty (an unset shell variable?); give a directory"]
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------- end to end


def test_sweep_then_report_end_to_end(tmp_path):
    out, summaries, table = (str(tmp_path / d) for d in ("out", "summaries", "table"))

    def sweep():
        proc = subprocess.run(
            [sys.executable, "-m", "gmdgm_tf.sweeps.run", f"--out={out}",
             f"--summaries={summaries}", f"--recipe=m2={DIGITS}:smoke,model.name=m2",
             "--seeds=2"],
            cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]

    def attempts(name):
        with open(os.path.join(summaries, name, filenames.RUNNER_RECORD), encoding="utf-8") as f:
            return json.load(f)["attempts"]

    sweep()
    # one recipe (overrides: test_commands_parse...; several recipes: hand-made summaries)
    names = ["m2_seed0", "m2_seed1"]
    assert sorted(os.listdir(summaries)) == names
    required = {"config.json", "history.jsonl", "metrics.json", "data_meta.json",
                filenames.RUNNER_RECORD}
    for name in names:
        files = set(os.listdir(os.path.join(summaries, name)))
        assert required <= files <= set(run.SUMMARY_FILES), (name, files)   # no weights
        with open(os.path.join(summaries, name, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
        assert (config["model"]["name"], config["seed"]) == ("m2", int(name[-1]))
        assert [a["status"] for a in attempts(name)] == ["finished"]
    assert set(os.listdir(os.path.join(out, "runs", "m2_seed0"))) - set(run.SUMMARY_FILES)

    sweep()                                         # finished runs are not retrained
    assert all(len(attempts(name)) == 1 for name in names)

    proc = subprocess.run([sys.executable, "-m", "gmdgm_tf.sweeps.report",
                           f"--summaries={summaries}", f"--out={table}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("table1.md", "table1.csv", "all_runs.json", "table1_summary.md"):
        assert os.path.getsize(os.path.join(table, name)) > 0, name
    for name in ("figure2.png", "learning_curves.png"):
        check_png(os.path.join(table, name))
    with open(os.path.join(table, "table1.csv"), encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["recipe"], r["model"], r["protocol"], r["n_seeds"], r["seeds"]) for r in rows] \
        == [("m2", "m2", "heldout", "2", "0 1"), ("m2", "m2", "paper", "2", "0 1"),
            ("m2", "m2", "paper_selection", "2", "0 1")]
    for row in rows:
        metrics = []
        for seed in (0, 1):
            with open(os.path.join(summaries, f"{row['recipe']}_seed{seed}", "metrics.json"),
                      encoding="utf-8") as f:
                metrics.append(json.load(f))
        accuracies = [100 * m[row["protocol"]]["accuracy"] for m in metrics]
        assert float(row["overall_mean"]) == pytest.approx(np.mean(accuracies), abs=1e-4)
        assert float(row["overall_sd"]) == pytest.approx(np.std(accuracies, ddof=1), abs=1e-4)
        nmi = [m[row["protocol"]]["nmi"] for m in metrics]
        assert float(row["nmi_mean"]) == pytest.approx(np.mean(nmi), abs=1e-4)
        epochs = [m["training"]["epochs_run"] for m in metrics]
        assert float(row["epochs_run_mean"]) == pytest.approx(np.mean(epochs))


def test_a_recipe_with_restarts_says_so():
    config = {"model": {"name": "gmdgm"}, "optimizer": {"learning_rate": 0.001},
              "data": {"num_extra_slots": 25},
              "train": {"precision": "float32", "epochs": 20, "restarts": 2, "restart_epochs": 10}}
    assert records.describe(config) == ("GM-DGM, lr 0.001, 35 slots, prior rule paper, float32, "
                                        "20 epochs, best of 2 initialisations at epoch 10")
    config["train"]["restarts"] = 1
    assert records.describe(config).endswith("float32, 20 epochs")


def test_a_recipe_with_a_learning_rate_decay_says_so():
    config = {"model": {"name": "gmdgm"},
              "optimizer": {"learning_rate": 0.001, "decay_epoch": 40, "decay_factor": 0.1},
              "data": {"num_extra_slots": 25}, "train": {"precision": "float32", "epochs": 50}}
    assert records.describe(config).startswith("GM-DGM, lr 0.001 (x 0.1 after epoch 40), 35 slots")
    config["optimizer"]["decay_epoch"] = 0
    assert records.describe(config).startswith("GM-DGM, lr 0.001, 35 slots")


def test_a_recipe_with_grey_level_targets_says_so():
    config = {"model": {"name": "gmdgm", "binarize": False},
              "optimizer": {"learning_rate": 0.001}, "data": {"num_extra_slots": 25},
              "train": {"precision": "float32", "epochs": 50}}
    assert records.describe(config) == ("GM-DGM, lr 0.001, 35 slots, prior rule paper, "
                                        "grey-level targets, float32, 50 epochs")
    del config["model"]["binarize"]            # filed before the field: binarised
    assert "grey" not in records.describe(config)


def test_a_recipe_names_the_settings_it_changes_from_the_base_config():
    config = {"model": {"name": "gmdgm", "hidden_sizes": [256, 256], "z_dim": 100,
                        "alpha": 10.0, "weight_prior_scale": 1.0},
              "optimizer": {"learning_rate": 0.001}, "data": {"unlabelled_batch_size": 25},
              "train": {"precision": "float32", "epochs": 50}}
    assert records.describe(config).endswith(
        "float32, 50 epochs, hidden 256x256, alpha 10.0, unlabelled batch 25")
    config["model"].update(hidden_sizes=[500, 500], alpha=1.1)   # base_config's values
    config["data"] = {}
    assert records.describe(config).endswith("float32, 50 epochs")


def test_the_report_lists_each_restarted_runs_initialisations(summaries, tmp_path):
    path = os.path.join(summaries, "gm_seed1", "metrics.json")
    metrics = json.load(open(path, encoding="utf-8"))
    metrics["training"]["restarts"] = {"epochs": 5, "candidates": [0, 1, 2],
                                       "validation": [0.8, 0.855, 0.81], "seconds": [1, 1, 1],
                                       "chosen": 1}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(metrics, f)
    report.write_report(summaries, str(tmp_path / "out"))
    text = open(tmp_path / "out" / "table1.md", encoding="utf-8").read()
    assert text.split("## Restarts")[1].count("| gm |") == 1
    assert "| gm | 1 | 5 | 80.0 / 85.5* / 81.0 |" in text
