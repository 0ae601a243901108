r"""Train-step throughput against the machine's own matmul rate, measured in one run.

  python benchmarks/train_step.py --out=benchmarks/results

1. GEMM rate: chains of dependent matmuls at the model's own shapes (TensorFlow folds
   independent repeats into one, which would fake the number), fp32 and bf16, in graph
   mode; the best shape per precision is the "peak" the steps are compared with.
2. The real GM-DGM and M2 train steps (Adam update included) at the paper's shapes:
   100 labelled + 100 unlabelled per step, 15 slots, 444 pixels, 2x500 MLPs, z=100;
   each precision in graph mode and under XLA. All configurations are built first and
   then timed in interleaved rounds (--rounds x --steps_per_round steps each), so a
   noisy neighbour on a shared machine slows every row alike; ms/step is the median of
   the per-round medians, "best" the fastest round.
3. FLOPs counted analytically from the layer shapes (forward 2nab per [n,a]x[a,b]
   matmul, backward 4nab, 2nab for layers fed by data); achieved GFLOP/s and fraction
   of the same-precision peak.
4. The same for the naive reference (Python loop over slots, nothing shared), in each
   precision, timed in the same rounds.
5. Whole epochs through the real training command (python -m gmdgm_tf.train, paper's
   MNIST config, 2 epochs, the second reported: input pipeline, NaN guard, step
   checkpoints and the validation pass included), with the peak resident memory of
   that training process.
6. Optionally (--threads_grid) the GM-DGM step under each intra:inter-op thread setting,
   one subprocess each (TensorFlow fixes its thread pools at start-up).
Writes <out>/train_step.json and <out>/train_step.md.
"""

import json
import os
import platform
import subprocess
import sys
import tempfile
import time

from absl import app, flags
import keras
import numpy as np
import tensorflow as tf

from gmdgm_tf import config as config_lib
from gmdgm_tf import filenames, models, registry
from gmdgm_tf.machine import peak_rss_mib
from gmdgm_tf.models import reference

flags.DEFINE_string("out", "benchmarks/results", "Output directory.")
flags.DEFINE_integer("rounds", 8, "Interleaved timing rounds over all configurations.")
flags.DEFINE_integer("steps_per_round", 6, "Timed steps per configuration per round.")
flags.DEFINE_integer("warmup", 5, "Untimed steps first.")
flags.DEFINE_list("configs", ["configs/mnist_gmdgm.py", "configs/mnist_m2.py",
                              "configs/mnist_agmdgm.py", "configs/mnist_am2.py"],
                  "Config files (as --config of gmdgm_tf.train) of the models to time; the "
                  "shape flags below override their networks.")
flags.DEFINE_list("precisions", ["float32", "mixed_bfloat16"], "Precisions to time.")
flags.DEFINE_list("modes", ["graph", "xla"], "Execution modes to time.")
flags.DEFINE_bool("time_steps", True, "Time the train steps (false: epochs/threads only).")
flags.DEFINE_bool("naive", True, "Also time the naive slot-loop reference (graph mode).")
flags.DEFINE_integer("hidden", 500, "Hidden units (2 layers).")
flags.DEFINE_integer("z_dim", 100, "Latent size.")
flags.DEFINE_integer("dim", 444, "Input pixels (paper's filtered MNIST).")
flags.DEFINE_integer("slots", 15, "Class slots.")
flags.DEFINE_integer("batch", 100, "Labelled and unlabelled batch size each.")
flags.DEFINE_string("data_dir", "../shared/data/mnist",
                    "MNIST IDX directory for the whole-epoch timing ('' to skip).")
flags.DEFINE_list("threads_grid", [], "intra:inter settings to time the GM-DGM step under, "
                  "e.g. 1:1,1:2,2:1,2:2 (0 = TensorFlow's default); empty to skip.")
flags.DEFINE_integer("intra_op_threads", 0, "TensorFlow intra-op threads (0: TF default).")
flags.DEFINE_integer("inter_op_threads", 0, "TensorFlow inter-op threads (0: TF default).")
FLAGS = flags.FLAGS


def median_ms(fn, steps, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def interleaved_ms(fns, rounds, steps):
    """{name: fn} -> {name: per-round median ms}, every fn timed once in each round."""
    per_round = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            per_round[name].append(median_ms(fn, steps, 0))
    return per_round


def gemm_rate(n, k, m, dtype, chain=16, repeats=7):
    """GFLOP/s of `chain` dependent [n,k]x[k,m] then [n,m]x[m,k] matmuls."""
    a = tf.cast(tf.random.normal([n, k]), dtype)
    w1 = tf.cast(tf.random.normal([k, m], stddev=k ** -0.5), dtype)
    w2 = tf.cast(tf.random.normal([m, k], stddev=m ** -0.5), dtype)

    @tf.function
    def run(a):
        for _ in range(chain // 2):
            a = tf.matmul(tf.matmul(a, w1), w2)
        return a

    ms = median_ms(lambda: run(a).numpy(), repeats, 2)
    return 2 * n * k * m * chain / (ms / 1000) / 1e9


def step_flops(model_name, b, slots, dim, hidden, z_dim, aux_dim=0):
    """Analytic forward+backward matmul FLOPs of one training step (aux_dim: the
    auxiliary models' a, 0 for GM-DGM and M2)."""
    rows_x, rows_slot = 2 * b, b + b * slots   # examples; (example, slot) pairs
    layers = []  # (rows, in, out, fed_by_data)
    for _ in ("q(y|x)", "q(z|x,y)"):  # first layers on x (and a): once per example
        layers += [(rows_x, dim, hidden, True)]
        layers += [(rows_x, aux_dim, hidden, False)] if aux_dim else []
    layers += [(rows_x, hidden, hidden, False), (rows_x, hidden, slots, False)]  # q(y|x)
    layers += [(rows_slot, hidden, hidden, False),
               (rows_slot, hidden, 2 * z_dim, False)]               # q(z|x,y), W_x shared
    layers += [(rows_slot, z_dim, hidden, False), (rows_slot, hidden, hidden, False),
               (rows_slot, hidden, dim, False)]                     # p(x|z) or p(x|y,z)
    if aux_dim:
        layers += [(rows_x, dim, hidden, True), (rows_x, hidden, hidden, False),
                   (rows_x, hidden, 2 * aux_dim, False)]            # q(a|x)
        layers += [(rows_slot, z_dim, hidden, False), (rows_slot, hidden, hidden, False),
                   (rows_slot, hidden, 2 * aux_dim, False)]         # p(a|y,z), p(a|x,y,z)
        if model_name == "am2":
            layers += [(rows_x, dim, hidden, True)]                 # p(a|x,.)'s W_x x
    # M2's decoder differs only by the cheap W_y row
    return sum((4 if data else 6) * n * a * c for n, a, c, data in layers)


def aux_dim(model_config):
    """The auxiliary a's dimensions of a config.model: 0 for a model without a."""
    spec = registry.get(model_config.name)
    return model_config.aux_dim if "aux_dim" in spec.model_class().CONFIG_FIELDS else 0


def load_config(path, cfg):
    """A config file with the benchmark's shapes -> validated ConfigDict."""
    config = config_lib.load(path)
    config.model.hidden_sizes = (cfg["hidden"],) * 2
    config.model.z_dim = cfg["z_dim"]
    return config_lib.validate(config)


def build(path, precision, cfg):
    """The config's model at the benchmark's shapes, objective and optimiser as in training
    (50,000 training examples, 500 labelled)."""
    config = load_config(path, cfg)
    prior = np.full(cfg["slots"], 1.0 / cfg["slots"])
    model = models.build_model(config.model, dim=cfg["dim"], prior=prior, precision=precision)
    model.objective = models.objective(config.model, num_train=50000, num_labelled=500)
    model.compile(optimizer=keras.optimizers.Adam(config.optimizer.learning_rate,
                                                  clipvalue=config.optimizer.clipvalue))
    return model


def make_step(model, batch, jit, naive=False):
    """A compiled, warmed-up `() -> loss` running one full training step (Adam included)."""
    x_l, y_l, x_u = batch
    model.optimizer.build(model.trainable_variables)

    def naive_step():
        with tf.GradientTape() as tape:
            loss = reference.loss_naive(model, x_l, y_l, x_u)
        model.optimizer.apply(tape.gradient(loss, model.trainable_variables),
                              model.trainable_variables)
        return loss

    step = tf.function(naive_step if naive else
                       (lambda: model.train_step(((x_l, y_l), x_u))["loss"]),
                       jit_compile=jit)
    run = lambda: step().numpy()  # pylint: disable=unnecessary-lambda-assignment
    for _ in range(FLAGS.warmup):
        run()
    return run


def train_epoch(config, precision, workdir):
    """Two epochs of the real training command on the config file in a subprocess ->
    (seconds of the second epoch, steps per epoch, peak RSS of that process in MiB)."""
    cmd = [sys.executable, "-m", "gmdgm_tf.train", f"--config={config}",
           f"--workdir={workdir}", "--fresh", f"--config.data.dir={FLAGS.data_dir}",
           "--config.train.epochs=2", f"--config.train.precision={precision}",
           "--config.train.figures=False"]
    run_quietly(cmd, env=dict(os.environ, **thread_env(FLAGS.intra_op_threads,
                                                     FLAGS.inter_op_threads)))
    with open(os.path.join(workdir, filenames.HISTORY), encoding="utf-8") as f:
        history = [json.loads(line) for line in f]
    with open(os.path.join(workdir, filenames.METRICS), encoding="utf-8") as f:
        training = json.load(f)["training"]
    return history[1]["seconds"], training["steps_per_epoch"], training["peak_rss_mib"]


def run_quietly(cmd, env=None):
    """Runs a subprocess, discarding its output unless it fails (then raised, with its
    stderr's tail)."""
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")


def thread_env(intra, inter):
    """TensorFlow reads these at start-up (the training command has no thread flags)."""
    env = {}
    if intra:
        env["TF_NUM_INTRAOP_THREADS"] = str(intra)
    if inter:
        env["TF_NUM_INTEROP_THREADS"] = str(inter)
    return env


def thread_grid(tmp):
    """The first config's graph-mode step per intra:inter setting, one subprocess each."""
    rows = []
    for setting in FLAGS.threads_grid:
        intra, inter = (int(v) for v in setting.split(":"))
        out = os.path.join(tmp, f"threads_{intra}_{inter}")
        cmd = [sys.executable, os.path.abspath(__file__), f"--out={out}",
               f"--configs={os.path.abspath(FLAGS.configs[0])}",
               "--modes=graph", "--naive=false", "--data_dir=", "--threads_grid=",
               f"--precisions={','.join(FLAGS.precisions)}", f"--rounds={FLAGS.rounds}",
               f"--intra_op_threads={intra}", f"--inter_op_threads={inter}",
               f"--steps_per_round={FLAGS.steps_per_round}", f"--warmup={FLAGS.warmup}"]
        cmd += [f"--{k}={getattr(FLAGS, k)}" for k in ("hidden", "z_dim", "dim", "slots",
                                                      "batch")]
        run_quietly(cmd)
        with open(os.path.join(out, "train_step.json"), encoding="utf-8") as f:
            for r in json.load(f)["results"]:
                rows.append(dict(intra=intra, inter=inter, precision=r["precision"],
                                 ms_per_step=r["ms_per_step"]))
                print(rows[-1])
    return rows


def main(argv):
    del argv
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.intra_op_threads)
    tf.config.threading.set_inter_op_parallelism_threads(FLAGS.inter_op_threads)
    cfg = dict(hidden=FLAGS.hidden, z_dim=FLAGS.z_dim, dim=FLAGS.dim, slots=FLAGS.slots)
    b = FLAGS.batch
    rng = np.random.RandomState(0)
    batch = (tf.constant(rng.rand(b, FLAGS.dim).astype(np.float32)),
             tf.constant(rng.randint(0, FLAGS.slots, b).astype(np.int32)),
             tf.constant(rng.rand(b, FLAGS.dim).astype(np.float32)))
    rows = [b + b * FLAGS.slots, 2 * b]
    peaks = {}
    for precision, dtype in (("float32", tf.float32), ("mixed_bfloat16", tf.bfloat16)):
        rates = {f"{n}x{FLAGS.hidden}x{FLAGS.hidden}": gemm_rate(n, FLAGS.hidden, FLAGS.hidden,
                                                                 dtype) for n in rows}
        rates[f"{rows[0]}x{FLAGS.hidden}x{FLAGS.dim}"] = gemm_rate(
            rows[0], FLAGS.hidden, FLAGS.dim, dtype)
        peaks[precision] = {"gflops": max(rates.values()), "by_shape": rates}
        print(f"GEMM {precision}: " + ", ".join(f"{k} {v:.0f}" for k, v in rates.items()))

    configs = {load_config(path, cfg).model.name: path for path in FLAGS.configs}
    flops = {name: step_flops(name, b, FLAGS.slots, FLAGS.dim, FLAGS.hidden, FLAGS.z_dim,
                              aux_dim(load_config(path, cfg).model))
             for name, path in configs.items()}
    runs = [(m, p, mode, False) for m in configs for p in FLAGS.precisions
            for mode in FLAGS.modes] if FLAGS.time_steps else []
    if FLAGS.naive and FLAGS.time_steps:
        runs += [(m, p, "graph", True) for m in configs for p in FLAGS.precisions]
    steps = {run: make_step(build(configs[run[0]], run[1], cfg), batch, run[2] == "xla",
                            run[3]) for run in runs}
    per_round = interleaved_ms(steps, FLAGS.rounds, FLAGS.steps_per_round)
    results = []
    for (name, precision, mode, naive), times in per_round.items():
        ms = float(np.median(times))
        gflops = flops[name] / (ms / 1000) / 1e9
        results.append(dict(
            model=name, precision=precision, mode=mode,
            variant="naive slot loop" if naive else "vectorised",
            ms_per_step=round(ms, 1), ms_best_round=round(min(times), 1),
            examples_per_s=round(2 * b / (ms / 1000)), gflops=round(gflops, 1),
            fraction_of_peak=round(gflops / peaks[precision]["gflops"], 3)))
    for row in results:
        naive = [r for r in results if r["variant"] != "vectorised" and
                 (r["model"], r["precision"]) == (row["model"], row["precision"])]
        if row["variant"] == "vectorised" and naive:
            row["speedup_vs_naive"] = round(naive[0]["ms_per_step"] / row["ms_per_step"], 2)
        print(row)

    epochs, threads = [], []
    with tempfile.TemporaryDirectory() as tmp:
        if FLAGS.data_dir and os.path.isdir(FLAGS.data_dir):
            for name, path in configs.items():
                for precision in FLAGS.precisions:
                    seconds, n, rss = train_epoch(path, precision,
                                                  os.path.join(tmp, f"{name}_{precision}"))
                    epochs.append(dict(model=name, precision=precision, mode="graph",
                                       seconds_per_epoch=round(seconds, 1), steps=n,
                                       peak_rss_mib=round(rss)))
                    print(epochs[-1])
        if FLAGS.threads_grid:
            threads = thread_grid(tmp)

    meta = dict(machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                tensorflow=tf.__version__,
                threads=dict(intra=FLAGS.intra_op_threads, inter=FLAGS.inter_op_threads),
                step_gflop={name: float(f"{f / 1e9:.3g}") for name, f in flops.items()},
                batch=2 * b, shapes=cfg,
                rounds=FLAGS.rounds, steps_per_round=FLAGS.steps_per_round)
    os.makedirs(FLAGS.out, exist_ok=True)
    with open(os.path.join(FLAGS.out, "train_step.json"), "w", encoding="utf-8") as f:
        json.dump(dict(meta=meta, peaks=peaks, results=results, epochs=epochs,
                       threads=threads, peak_rss_mib=peak_rss_mib()), f, indent=1)
    text = markdown(meta, peaks, results, epochs, threads)
    with open(os.path.join(FLAGS.out, "train_step.md"), "w", encoding="utf-8") as f:
        f.write(text)
    print(text)


def markdown(meta, peaks, results, epochs, threads):
    gflop = ", ".join(f"{name} {g}" for name, g in meta["step_gflop"].items())
    lines = [f"Step = {meta['batch']} examples ({meta['batch'] // 2} labelled + "
             f"{meta['batch'] // 2} unlabelled), {FLAGS.slots} slots, GFLOP (analytic): "
             f"{gflop}. Machine: {meta['machine']}, TF {meta['tensorflow']}. GEMM "
             f"peak fp32 {peaks['float32']['gflops']:.0f} GFLOP/s, bf16 "
             f"{peaks['mixed_bfloat16']['gflops']:.0f} GFLOP/s. ms/step: median over "
             f"{meta['rounds']} interleaved rounds (best round in brackets).", ""]
    if results:
        lines += ["| model | precision | mode | variant | ms/step | examples/s | GFLOP/s | "
                  "of peak | vs naive |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['model']} | {r['precision']} | {r['mode']} | {r['variant']} | "
                     f"{r['ms_per_step']} ({r['ms_best_round']}) | {r['examples_per_s']} | "
                     f"{r['gflops']} | {100 * r['fraction_of_peak']:.0f}% | "
                     f"{r.get('speedup_vs_naive', '')} |")
    if epochs:
        lines += ["", f"Paper-shaped MNIST epoch ({epochs[0]['steps']} steps of 100 + 100) "
                  "through the training command, its second epoch: input pipeline, NaN "
                  "guard, checkpoints and the validation pass included:", "",
                  "| model | precision | seconds/epoch | peak RSS of the run (MiB) |",
                  "|---|---|---|---|"]
        lines += [f"| {e['model']} | {e['precision']} | {e['seconds_per_epoch']} | "
                  f"{e['peak_rss_mib']} |" for e in epochs]
    if threads:
        lines += ["", "GM-DGM step (graph mode) by TensorFlow thread setting "
                  "(intra-op:inter-op, 0 = default):", "",
                  "| threads | precision | ms/step |", "|---|---|---|"]
        lines += [f"| {t['intra']}:{t['inter']} | {t['precision']} | {t['ms_per_step']} |"
                  for t in threads]
    lines += ["", f"Peak resident memory of this benchmark process: {peak_rss_mib():.0f} MiB."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    app.run(main)
