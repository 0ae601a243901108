"""tf.distribute: N replicas take the step one device takes; the strategy factory.

The training checks run in subprocesses (this file run as a script) that split the CPU
into logical devices before TensorFlow starts, leaving this process's devices alone: one
device, MirroredStrategy over two, and two MultiWorkerMirroredStrategy workers on
localhost (one device each) all train on the same global batches and must end equal.

Equivalence needs the same noise in both runs, and the model's noise cannot match as
drawn: one device draws [B, ...] from one seed where two replicas draw [B/2, ...] each.
So the equivalence run swaps the two noise sources (dynamic binarisation and the
reparameterisation noise) for deterministic functions of each example: identical
whichever replica gets the example, non-zero, and the Bernoulli path stays exercised.
The real RNG is then checked separately under MirroredStrategy.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import gmdgm_tf
from gmdgm_tf import distribute
from conftest import REPO

RTOL = 1e-5  # observed ~1e-6: float32 sums in another order
# The equivalence runs train AGM-DGM: every path of GM-DGM (its learnt p(z|y) weights too)
# plus the auxiliary a's draws, one model for both strategies.
MODEL = "agmdgm"
LOGGED = ("loss", "elbo_labelled", "elbo_unlabelled", "log_q_y_labelled", "labelled_accuracy",
          "weight_prior")


def _child_command(*args):
    """(command, env) running this file as a script with the gmdgm_tf this process tests."""
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(gmdgm_tf.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [package_root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    env.pop("TF_CONFIG", None)
    return [sys.executable, os.path.abspath(__file__), *map(str, args)], env


def _child(*args):
    command, env = _child_command(*args)
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _run_values(workdir):
    """A finished run -> ({checkpoint variable: array}, history records)."""
    reader = tf.train.load_checkpoint(os.path.join(workdir, "checkpoints"))
    values = {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
              if k.startswith(("model/", "optimizer/"))}
    with open(os.path.join(workdir, "history.jsonl"), encoding="utf-8") as f:
        return values, [json.loads(line) for line in f]


def _assert_same_run(reference, other):
    """Every weight, both Adam slots of each, the counters and the logged means agree."""
    (a_values, a_history), (b_values, b_history) = _run_values(reference), _run_values(other)
    assert a_values.keys() == b_values.keys()
    assert len(a_values) > 40
    worst = {}
    for key, a in a_values.items():
        a, b = np.asarray(a, np.float64), np.asarray(b_values[key], np.float64)
        if a.size:
            difference = np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-12)
            if difference > RTOL:
                worst[key] = float(difference)
    assert not worst, f"variables differ from the single-device run: {worst}"
    assert len(a_history) == len(b_history) == 2
    for single, distributed in zip(a_history, b_history):
        for key in LOGGED:
            assert distributed[key] == pytest.approx(single[key], rel=1e-5, abs=1e-6), key


@pytest.fixture(scope="module")
def single_device_runs(tmp_path_factory):
    """model name -> the finished single-device run of that model (trained once)."""
    runs = {}

    def get(model=MODEL):
        if model not in runs:
            workdir = tmp_path_factory.mktemp("single") / model
            assert _child("train", "none", workdir, 1, model)["replicas"] == 1
            runs[model] = workdir
        return runs[model]
    return get


def test_two_replicas_take_the_single_device_step(single_device_runs, tmp_path):
    out = _child("train", "mirrored", tmp_path / "run", 2, MODEL)
    assert out["replicas"] == 2 and out["strategy"].startswith("MirroredStrategy")
    _assert_same_run(single_device_runs(), tmp_path / "run")


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_take_the_single_device_step(single_device_runs, tmp_path):
    workers = [f"localhost:{port}" for port in _free_ports(2)]
    procs = []
    for index in range(2):
        command, env = _child_command("train", "multi_worker", tmp_path / "run", 1, MODEL,
                                      tmp_path / "export")
        env["TF_CONFIG"] = json.dumps({"cluster": {"worker": workers},
                                       "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=600)
            assert proc.returncode == 0, stderr[-4000:]
            outputs.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert [o["replicas"] for o in outputs] == [2, 2]
    assert outputs[0]["strategy"].startswith("MultiWorkerMirroredStrategy")
    # The chief (worker 0) writes the run; worker 1 writes alike to a private directory.
    assert (tmp_path / "run" / "metrics.json").exists()
    assert (tmp_path / "run" / "workers" / "worker_1" / "metrics.json").exists()
    # --export_dir: the chief exports once (a second export there would have failed).
    assert (tmp_path / "export" / "saved_model.pb").exists()
    _assert_same_run(single_device_runs(), tmp_path / "run")


@pytest.fixture(scope="module")
def rng_checks():
    return _child("rng")


def test_mirrored_rng_unsupervised_and_batch_split(rng_checks):
    out = rng_checks
    # The RNG state is a mirrored variable every replica advances: it must stay in step.
    assert out["seed_states_equal"], out["seed_states"]
    assert out["iterations"] == out["steps"], "fit ran more steps than the data holds"
    # 3 draws a step (one binarisation of [x_l; x_u], z noise for each bound), + 3 in build
    assert out["seed_draws"] == 3 * (out["steps"] + 1)
    assert out["finite"]
    assert out["unsupervised_history_keys"] == ["elbo_unlabelled", "loss", "weight_prior"]
    assert "data.unlabelled_batch_size=49 not divisible by the 2 replicas" in out["odd_batch"]
    assert not out["odd_batch_workdir_exists"]


def test_replicas_draw_different_noise(rng_checks):
    assert rng_checks["replica_noise_distinct"]


# --------------------------------------------------------------------------- factory


def test_factory_picks_the_strategy_per_flag():
    assert distribute.make_strategy("none") is tf.distribute.get_strategy()
    mirrored = distribute.make_strategy("mirrored")
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    assert mirrored.num_replicas_in_sync == (len(tf.config.list_logical_devices("GPU")) or 1)
    # on this CPU-only machine with no TPU in sight, auto is the default strategy
    if not distribute.tpu_hint() and not tf.config.list_physical_devices("GPU"):
        assert distribute.make_strategy("auto") is tf.distribute.get_strategy()
    assert distribute.auto_choice(tpu_found=True, num_gpus=8) == "tpu"
    assert distribute.auto_choice(tpu_found=False, num_gpus=2) == "mirrored"
    assert distribute.auto_choice(tpu_found=False, num_gpus=1) == "none"
    assert distribute.auto_choice(tpu_found=False, num_gpus=0) == "none"
    assert "MirroredStrategy with" in distribute.describe(mirrored)


def test_every_strategy_choice_has_its_own_factory(monkeypatch):
    """A train.strategy added to config.STRATEGIES without a factory would not train on
    the default strategy unnoticed: make_strategy refuses a name it does not know."""
    from gmdgm_tf import config as config_lib  # pylint: disable=import-outside-toplevel
    for factory in ("_auto", "_tpu", "_mirrored", "_multi_worker"):
        monkeypatch.setattr(distribute, factory, lambda *args, _name=factory: _name)
    made = [distribute.make_strategy(name) for name in config_lib.STRATEGIES]
    assert len(set(map(id, made))) == len(config_lib.STRATEGIES), made
    with pytest.raises(distribute.StrategyError, match="no strategy 'gpu'"):
        distribute.make_strategy("gpu")


def test_unknown_strategy_is_refused():
    from gmdgm_tf import config as config_lib  # pylint: disable=import-outside-toplevel
    config = config_lib.base_config()
    config.train.strategy = "gpu"
    with pytest.raises(config_lib.ConfigError, match="unknown train.strategy 'gpu'; "
                       "choose one of"):
        config_lib.validate(config)


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_tpu_address_fails_fast_naming_it():
    address = f"grpc://127.0.0.1:{_closed_port()}"
    start = time.time()
    with pytest.raises(distribute.StrategyError) as info:
        distribute.make_strategy("tpu", address, timeout_s=2)
    assert time.time() - start < 10
    message = str(info.value)
    assert address in message and "not reachable" in message and "\n" not in message


def test_local_tpu_on_a_machine_without_one_fails_fast(monkeypatch):
    monkeypatch.setattr(distribute.glob, "glob", lambda pattern: [])
    with pytest.raises(distribute.StrategyError, match="no TPU on this machine.*'local'"):
        distribute.make_strategy("tpu", "local")


def test_bad_tf_config_is_refused(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["localhost:1"]}, '
                                    '"task": {"type": "worker", "index": 3}}')
    with pytest.raises(distribute.StrategyError, match="TF_CONFIG is not a valid cluster"):
        distribute.make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(distribute.StrategyError, match="TF_CONFIG is not a valid cluster"):
        distribute.make_strategy("multi_worker")


def test_batch_split_messages():
    assert distribute.check_batch_split(100, 100, 4) is None
    assert distribute.check_batch_split(7, 100, 4, has_labels=False) is None
    message = distribute.check_batch_split(100, 100, 8)
    assert message.startswith("data.labelled_batch_size=100 and data.unlabelled_batch_size="
                              "100 not divisible by the 8 replicas")


# ------------------------------------------------------------- private Keras hooks

# (owner, hook): what adapt_model and CrossReplicaAdam replace; setup.py pins the Keras
# minor version they were verified on.
KERAS_HOOKS = (("model", "_maybe_symbolic_build"), ("optimizer", "_clip_gradients"),
               ("optimizer", "_all_reduce_sum_gradients"))


def _tiny_keras_fit(optimizer, wrap=None):
    """A 2-unit Dense model fitted 3 steps by `optimizer` -> its weights. wrap(owner, hook)
    may replace a hook of the model or optimizer before fit."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=optimizer, loss="mse")
    for owner, hook in KERAS_HOOKS if wrap else ():
        wrap(model if owner == "model" else model.optimizer, hook)
    x = np.linspace(-4, 4, 24, dtype=np.float32).reshape(8, 3)
    model.fit(x, x[:, :2] * 3.0, batch_size=8, epochs=3, shuffle=False, verbose=0)
    return [w.numpy() for w in model.weights]


def test_keras_still_calls_the_private_hooks_distribute_replaces():
    """A Keras that drops or stops calling a hook fails here, by the hook's name: the
    multi-worker and clip-after-sum workarounds would silently no longer apply."""
    calls = []

    def record(owner, hook):
        original = getattr(owner, hook, None)
        assert callable(original), (f"Keras {keras.__version__}: {type(owner).__name__} has "
                                    f"no {hook}, which gmdgm_tf.distribute replaces")

        def recorded(*args, **kwargs):
            calls.append((hook, args, kwargs))
            return original(*args, **kwargs)
        object.__setattr__(owner, hook, recorded)

    _tiny_keras_fit(keras.optimizers.Adam(0.1, clipvalue=0.5), wrap=record)
    called = [hook for hook, _, _ in calls]
    for _, hook in KERAS_HOOKS:
        assert hook in called, f"Keras {keras.__version__}'s fit no longer calls {hook}"
    # Keras clips each replica's gradients, then sums them: CrossReplicaAdam reverses that.
    assert called.index("_clip_gradients") < called.index("_all_reduce_sum_gradients"), (
        f"Keras {keras.__version__} no longer clips before _all_reduce_sum_gradients")
    # adapt_model's stand-in takes whatever fit passes to _maybe_symbolic_build.
    for hook, args, kwargs in calls:
        if hook == "_maybe_symbolic_build":
            distribute.skip_symbolic_build(*args, **kwargs)


def test_one_replica_trains_with_keras_adam_which_cross_replica_adam_equals():
    """On one device `adam` gives Keras' Adam, so no private hook is in use; there
    CrossReplicaAdam (clipping after the identity all-reduce) takes the same steps."""
    assert type(distribute.adam(0.1, clipvalue=0.5)) is keras.optimizers.Adam
    assert type(distribute.adam(0.1)) is keras.optimizers.Adam
    plain = _tiny_keras_fit(keras.optimizers.Adam(0.1, clipvalue=0.5))
    deferred = _tiny_keras_fit(distribute.CrossReplicaAdam(0.1, clipvalue=0.5))
    unclipped = _tiny_keras_fit(keras.optimizers.Adam(0.1))
    assert not all(np.array_equal(a, b) for a, b in zip(plain, unclipped))  # clipping acts
    for a, b in zip(plain, deferred):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------- subprocess checks


def _deterministic_noise():
    """Replaces the model's noise sources by functions of each example (see top)."""
    from keras import ops  # pylint: disable=import-outside-toplevel
    from gmdgm_tf.models import base  # pylint: disable=import-outside-toplevel
    elbo, draw_aux = base.DeepGenerativeModel.elbo, base.DeepGenerativeModel.draw_aux

    def binarize(self, x):
        del self
        pixel = ops.cast(ops.arange(ops.shape(x)[-1]), x.dtype)
        u = ops.sin(x * 12.9898 + pixel * 78.233) * 43758.5453
        return ops.cast(u - ops.floor(u) < x, x.dtype)

    def example_noise_elbo(self, x, y_onehot, eps=None, aux=None):
        if eps is None:
            slots = ops.shape(y_onehot)[-2]
            per_example = ops.sum(x, axis=-1)[:, None, None]
            slot = ops.cast(ops.arange(slots), "float32")[None, :, None]
            unit = ops.cast(ops.arange(self.z_dim), "float32")[None, None, :]
            eps = ops.sin(per_example * 3.7 + slot * 1.3 + unit * 2.1)
        return elbo(self, x, y_onehot, eps, aux)

    def example_noise_draw_aux(self, x, eps=None):
        if eps is None and self.aux_dim:
            unit = ops.cast(ops.arange(self.aux_dim), "float32")[None, :]
            eps = ops.cos(ops.sum(x, axis=-1)[:, None] * 1.9 + unit * 0.7)
        return draw_aux(self, x, eps)

    base.DeepGenerativeModel.binarize = binarize
    base.DeepGenerativeModel.elbo = example_noise_elbo
    base.DeepGenerativeModel.draw_aux = example_noise_draw_aux


def _tiny_config(strategy, **train):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from conftest import plain_digits  # pylint: disable=import-outside-toplevel
    config = plain_digits()  # global batches 50 + 50
    config.train.update({"strategy": strategy, "epochs": 2, "steps_per_epoch": 3,
                         "select": "last", "deterministic": True,
                         "checkpoint_every_steps": 0, **train})
    return config


def _train(strategy, workdir, model, export_dir=None):
    """One tiny run with deterministic noise; clipping that matters (0.05 clips many
    gradient entries, so clipping each replica's share instead of the sum would show)."""
    from gmdgm_tf import experiment  # pylint: disable=import-outside-toplevel
    _deterministic_noise()
    config = _tiny_config(strategy)
    config.model.name = model
    config.optimizer.clipvalue = 0.05
    training = experiment.train_and_evaluate(config, workdir,
                                             export_dir=export_dir)["training"]
    return {"replicas": training["replicas"], "strategy": training["strategy"]}


def _check_rng(tmp):
    from gmdgm_tf import experiment  # pylint: disable=import-outside-toplevel
    built = []
    build = experiment.build
    experiment.build = lambda *a, **k: built.append(build(*a, **k)) or built[-1]
    config = _tiny_config("mirrored", epochs=1)
    experiment.train_and_evaluate(config, os.path.join(tmp, "rng"))
    model = built[-1]
    states = [v.numpy().tolist() for v in model.seed_generator.state.value.values]
    strategy = model.distribute_strategy
    noise = strategy.experimental_local_results(tf.function(lambda: strategy.run(
        lambda: model.binarize(tf.fill([8, model.dim], 0.5))))())
    with open(os.path.join(tmp, "rng", "history.jsonl"), encoding="utf-8") as f:
        record = json.loads(f.readline())

    unsupervised = _tiny_config("mirrored", epochs=1)
    unsupervised.data.labelled_classes = ()
    unsupervised.data.labelled_batch_size = 7  # unused without labels: no split needed
    experiment.train_and_evaluate(unsupervised, os.path.join(tmp, "unsupervised"))
    with open(os.path.join(tmp, "unsupervised", "history.jsonl"), encoding="utf-8") as f:
        unsupervised_keys = sorted(k for k in json.loads(f.readline())
                                   if not k.startswith(("val_", "test_"))
                                   and k not in ("epoch", "seconds", "learning_rate"))

    odd = _tiny_config("mirrored")
    odd.data.unlabelled_batch_size = 49
    try:
        experiment.train_and_evaluate(odd, os.path.join(tmp, "odd"))
        odd_message = "no error"
    except ValueError as e:  # config.ConfigError
        odd_message = str(e)
    return {"seed_states": states, "seed_states_equal": all(s == states[0] for s in states),
            "seed_draws": states[0][1], "iterations": int(model.optimizer.iterations.numpy()),
            "steps": 3, "finite": bool(np.isfinite(record["loss"])),
            "unsupervised_history_keys": unsupervised_keys, "odd_batch": odd_message,
            "odd_batch_workdir_exists": os.path.exists(os.path.join(tmp, "odd")),
            "replica_noise_distinct": not np.array_equal(noise[0], noise[1])}


def _main(check, *args):
    if check == "train":  # strategy workdir logical_cpus model [export_dir]
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * int(args[2]))
        out = _train(args[0], args[1], *args[3:])
    else:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        with tempfile.TemporaryDirectory() as tmp:
            out = _check_rng(tmp)
    print(json.dumps(out))


if __name__ == "__main__":
    _main(*sys.argv[1:])
