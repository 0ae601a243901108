"""The benchmark script runs end to end at toy shapes and writes what the README quotes."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A script's own folder, not the current one, leads sys.path: the package under test is
# this checkout's, not whichever is installed.
THIS_CHECKOUT = dict(os.environ, PYTHONPATH=ROOT)


def test_train_step_benchmark_smoke(tmp_path):
    out = tmp_path / "bench"
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "train_step.py"), f"--out={out}",
           "--hidden=16", "--z_dim=4", "--dim=20", "--slots=3", "--batch=8",
           "--modes=graph", "--configs=" + ",".join(
               os.path.join(ROOT, "configs", f"mnist_{m}.py") for m in ("gmdgm", "agmdgm")),
           "--rounds=2", "--steps_per_round=2", "--warmup=1", "--data_dir=",
           "--threads_grid=1:1"]
    # from another directory: the benchmark takes config files as arguments
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    result = json.loads((out / "train_step.json").read_text())
    rows = {(r["model"], r["precision"], r["variant"]): r for r in result["results"]}
    assert len(rows) == 8  # 2 models x 2 precisions x (vectorised, naive)
    gflop = result["meta"]["step_gflop"]
    assert gflop["agmdgm"] > gflop["gmdgm"] > 0  # q(a|x) and p(a|y,z) counted
    for key, row in rows.items():
        assert row["ms_per_step"] > 0 and row["fraction_of_peak"] > 0, key
        assert ("speedup_vs_naive" in row) == (key[2] == "vectorised"), key
    assert result["peaks"]["float32"]["gflops"] > 0
    assert [(t["intra"], t["inter"]) for t in result["threads"]] == [(1, 1), (1, 1)]
    table = (out / "train_step.md").read_text()
    assert "| gmdgm | mixed_bfloat16 | graph | vectorised |" in table


def test_time_to_accuracy_smoke_with_a_user_callback(tmp_path):
    """The benchmark adds its own Keras callback to training: every epoch gets a score."""
    workdir = tmp_path / "tta"
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "time_to_accuracy.py"),
           f"--config={os.path.join(ROOT, 'configs', 'digits_gmdgm.py')}:smoke",
           f"--workdir={workdir}", "--minutes=5", "--target=0.0", "--config.train.epochs=3",
           "--config.train.restarts=3", "--config.train.restart_epochs=1",
           f"--summaries={tmp_path / 'filed'}"]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                   env=THIS_CHECKOUT)
    result = json.loads((workdir / "time_to_accuracy.json").read_text())
    assert [r["epoch"] for r in result["epochs"]] == [1, 2, 3]
    # best-of-3 restarts cannot share a time budget: one initialisation is timed
    assert json.loads((workdir / "config.json").read_text())["train"]["restarts"] == 1
    assert not (workdir / "restarts").exists()
    assert all(0 <= r["heldout_accuracy"] <= 1 for r in result["epochs"])
    assert "Time to 0 % heldout: " in (workdir / "time_to_accuracy.md").read_text()
    filed = tmp_path / "filed" / "tta"
    assert sorted(p.name for p in filed.iterdir()) == sorted(
        ["config.json", "history.jsonl", "metrics.json", "time_to_accuracy.md",
         "time_to_accuracy.json"])  # no weights
    # a second run that never reaches its target, filed beside it; then the report
    other = json.loads((filed / "time_to_accuracy.json").read_text())
    for record in other["epochs"]:
        record["heldout_accuracy"] = -0.25  # below the target: never reached
    (tmp_path / "filed" / "tta_s1").mkdir()
    (tmp_path / "filed" / "tta_s1" / "time_to_accuracy.json").write_text(json.dumps(other))
    (tmp_path / "filed" / "tta_s1" / "config.json").write_text(json.dumps({"seed": 1}))
    subprocess.run([sys.executable, cmd[1], f"--report={tmp_path / 'filed'}"], check=True,
                   capture_output=True, text=True, timeout=600, cwd=tmp_path)
    lines = (tmp_path / "filed" / "summary.md").read_text().splitlines()
    minutes = result["epochs"][0]["wall_seconds"] / 60
    assert lines[4].startswith(f"| tta | 0 | 5 | 3 | {minutes:.1f} (epoch 1) |")
    assert lines[5].startswith("| tta_s1 | 1 | 5 | 3 | not reached |")
    assert "| -25.0 |" in lines[5]
    assert lines[-1] == f"Time to 0 %: reached by 1 of 2 runs (those: {minutes:.1f} min)."
    # each run's own table is rewritten from its .json: the filed one as the run wrote it
    assert (filed / "time_to_accuracy.md").read_text() == (
        workdir / "time_to_accuracy.md").read_text()
    rewritten = (tmp_path / "filed" / "tta_s1" / "time_to_accuracy.md").read_text()
    assert "| 1 | " in rewritten and "| -25.00 |" in rewritten
    assert "Time to 0 % heldout: not reached in the budget" in rewritten
    # when every run reaches it: the mean (sample SD) minutes over the runs
    for record in other["epochs"][1:]:
        record["heldout_accuracy"] = 0.5  # reached at epoch 2
    (tmp_path / "filed" / "tta_s1" / "time_to_accuracy.json").write_text(json.dumps(other))
    subprocess.run([sys.executable, cmd[1], f"--report={tmp_path / 'filed'}"], check=True,
                   capture_output=True, text=True, timeout=600, cwd=tmp_path)
    both = [minutes, other["epochs"][1]["wall_seconds"] / 60]
    mean, sd = sum(both) / 2, abs(both[0] - both[1]) / 2 ** 0.5  # sample SD of two values
    last = (tmp_path / "filed" / "summary.md").read_text().splitlines()[-1]
    assert last == f"Time to 0 %: {mean:.1f} ({sd:.1f}) min over 2 runs."


def test_time_to_accuracy_refuses_an_empty_workdir(tmp_path):
    """--workdir=$UNSET: one line, exit 2, nothing trained or written."""
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "time_to_accuracy.py"),
         f"--config={os.path.join(ROOT, 'configs', 'digits_gmdgm.py')}:smoke", "--workdir="],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False,
        env=THIS_CHECKOUT)
    assert proc.returncode == 2
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")] == [
        "error: --workdir is empty (an unset shell variable?); give a directory"]
    assert os.listdir(tmp_path) == []
