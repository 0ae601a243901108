r"""Train-step throughput against the machine's own matmul rate, measured in one run.

  python benchmarks/train_step.py --out=benchmarks/results

1. GEMM rate: chains of dependent matmuls at the model's own shapes (TensorFlow folds
   independent repeats into one, which would fake the number), fp32 and bf16, in graph
   mode; the best shape per precision is the "peak" the steps are compared with.
2. The real GM-DGM and M2 train steps (Adam update included) at the paper's shapes:
   100 labelled + 100 unlabelled per step, 15 slots, 444 pixels, 2x500 MLPs, z=100;
   each precision in graph mode and under XLA; median over --steps after warm-up.
3. FLOPs counted analytically from the layer shapes (forward 2nab per [n,a]x[a,b]
   matmul, backward 4nab, 2nab for layers fed by data); achieved GFLOP/s and fraction
   of the same-precision peak.
4. The same for the naive reference (Python loop over slots, nothing shared).
Writes <out>/train_step.json and <out>/train_step.md.
"""

import json
import os
import platform
import time

from absl import app, flags
import keras
import ml_collections
import numpy as np
import tensorflow as tf

from gmdgm_tf import models
from gmdgm_tf.models import reference

flags.DEFINE_string("out", "benchmarks/results", "Output directory.")
flags.DEFINE_integer("steps", 30, "Timed steps per configuration (median reported).")
flags.DEFINE_integer("warmup", 5, "Untimed steps first.")
flags.DEFINE_list("models", ["gmdgm", "m2"], "Models to time.")
flags.DEFINE_list("precisions", ["float32", "mixed_bfloat16"], "Precisions to time.")
flags.DEFINE_list("modes", ["graph", "xla"], "Execution modes to time.")
flags.DEFINE_bool("naive", True, "Also time the naive slot-loop reference (graph mode).")
flags.DEFINE_integer("hidden", 500, "Hidden units (2 layers).")
flags.DEFINE_integer("z_dim", 100, "Latent size.")
flags.DEFINE_integer("dim", 444, "Input pixels (paper's filtered MNIST).")
flags.DEFINE_integer("slots", 15, "Class slots.")
flags.DEFINE_integer("batch", 100, "Labelled and unlabelled batch size each.")
flags.DEFINE_string("data_dir", "../shared/data/mnist",
                    "MNIST IDX directory for the epoch-with-pipeline timing ('' to skip).")
flags.DEFINE_integer("epoch_steps", 100, "Steps timed through the real input pipeline.")
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


def step_flops(model_name, b, slots, dim, hidden, z_dim):
    """Analytic forward+backward matmul FLOPs of one training step."""
    rows_x, rows_slot = 2 * b, b + b * slots   # examples; (example, slot) pairs
    layers = []  # (rows, in, out, fed_by_data)
    layers += [(rows_x, dim, hidden, True), (rows_x, hidden, hidden, False),
               (rows_x, hidden, slots, False)]                       # q(y|x)
    layers += [(rows_x, dim, hidden, True), (rows_slot, hidden, hidden, False),
               (rows_slot, hidden, 2 * z_dim, False)]               # q(z|x,y), W_x shared
    layers += [(rows_slot, z_dim, hidden, False), (rows_slot, hidden, hidden, False),
               (rows_slot, hidden, dim, False)]                     # p(x|z) or p(x|y,z)
    del model_name  # M2's decoder differs only by the cheap W_y row
    return sum((4 if data else 6) * n * a * c for n, a, c, data in layers)


def build(name, precision, cfg):
    mc = ml_collections.ConfigDict(dict(
        name=name, hidden_sizes=(cfg["hidden"],) * 2, z_dim=cfg["z_dim"],
        likelihood="bernoulli", alpha=1.1, alpha_scaling="none", output_stddev=1e-3,
        weight_prior=True, prior_loc_stddev=0.1))
    prior = np.full(cfg["slots"], 1.0 / cfg["slots"])
    model = models.build_model(mc, dim=cfg["dim"], prior=prior, num_train=50000,
                               num_labelled=500, precision=precision)
    model.compile(optimizer=keras.optimizers.Adam(3e-4, clipvalue=1.0))
    return model


def time_step(model, batch, jit, naive=False):
    x_l, y_l, x_u = batch
    model(x_l)
    model.compute_losses(x_l, y_l, x_u)
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
    return median_ms(lambda: step().numpy(), FLAGS.steps, FLAGS.warmup)


def epoch_seconds(model_name, precision):
    """A paper-shaped MNIST epoch through model.fit and data.epoch_dataset, extrapolated
    from --epoch_steps steps after one warm-up epoch fragment -> (seconds, steps/epoch)."""
    from gmdgm_tf import data, defaults, experiment  # pylint: disable=import-outside-toplevel
    config = defaults.base_config()
    config.data.dir = FLAGS.data_dir
    config.model.name = model_name
    config.train.precision = precision
    split = data.load_split(config.data, 0)
    model = experiment.build(config, split)
    steps = data.steps_per_epoch(split, config.data.unlabelled_batch_size)

    def run(epoch):
        ds = data.epoch_dataset(split, 100, 100, 0, epoch).take(FLAGS.epoch_steps)
        t = time.perf_counter()
        model.fit(ds, epochs=1, verbose=0, shuffle=False)
        return time.perf_counter() - t

    run(0)
    return run(1) / FLAGS.epoch_steps * steps, steps


def peak_rss_mib():
    import resource  # pylint: disable=import-outside-toplevel
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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

    flops = step_flops("gmdgm", b, FLAGS.slots, FLAGS.dim, FLAGS.hidden, FLAGS.z_dim)
    results = []
    runs = [(m, p, mode, False) for m in FLAGS.models for p in FLAGS.precisions
            for mode in FLAGS.modes]
    if FLAGS.naive:
        runs += [(m, "float32", "graph", True) for m in FLAGS.models]
    for name, precision, mode, naive in runs:
        ms = time_step(build(name, precision, cfg), batch, mode == "xla", naive)
        gflops = flops / (ms / 1000) / 1e9
        row = dict(model=name, precision=precision, mode=mode,
                   variant="naive slot loop" if naive else "vectorised",
                   ms_per_step=round(ms, 1), examples_per_s=round(2 * b / (ms / 1000)),
                   gflops=round(gflops, 1),
                   fraction_of_peak=round(gflops / peaks[precision]["gflops"], 3))
        results.append(row)
        print(row)
    epochs = []
    if FLAGS.data_dir and os.path.isdir(FLAGS.data_dir):
        for name in FLAGS.models:
            for precision in FLAGS.precisions:
                seconds, steps = epoch_seconds(name, precision)
                epochs.append(dict(model=name, precision=precision, mode="graph",
                                   seconds_per_epoch=round(seconds, 1), steps=steps))
                print(epochs[-1])
    for row in results:
        if row["variant"] == "vectorised":
            naive = [r for r in results if r["variant"] != "vectorised"
                     and r["model"] == row["model"]]
            if naive:
                row["speedup_vs_naive"] = round(naive[0]["ms_per_step"] / row["ms_per_step"], 2)

    meta = dict(machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                tensorflow=tf.__version__, threads=dict(intra=FLAGS.intra_op_threads,
                                                        inter=FLAGS.inter_op_threads), step_gflop=round(flops / 1e9, 2), batch=2 * b,
                shapes=cfg)
    os.makedirs(FLAGS.out, exist_ok=True)
    with open(os.path.join(FLAGS.out, "train_step.json"), "w", encoding="utf-8") as f:
        json.dump(dict(meta=meta, peaks=peaks, results=results, epochs=epochs,
                       peak_rss_mib=peak_rss_mib()), f, indent=1)
    lines = [f"Step = {2 * b} examples ({b} labelled + {b} unlabelled), {FLAGS.slots} slots, "
             f"{meta['step_gflop']} GFLOP (analytic). Machine: {meta['machine']}, "
             f"TF {tf.__version__}. GEMM peak fp32 {peaks['float32']['gflops']:.0f} GFLOP/s, "
             f"bf16 {peaks['mixed_bfloat16']['gflops']:.0f} GFLOP/s.", "",
             "| model | precision | mode | variant | ms/step | examples/s | GFLOP/s | "
             "of peak | vs naive |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['model']} | {r['precision']} | {r['mode']} | {r['variant']} | "
                     f"{r['ms_per_step']} | {r['examples_per_s']} | {r['gflops']} | "
                     f"{100 * r['fraction_of_peak']:.0f}% | {r.get('speedup_vs_naive', '')} |")
    if epochs:
        lines += ["", f"Paper-shaped MNIST epoch ({epochs[0]['steps']} steps of 100 + 100, "
                  "input pipeline included, extrapolated from "
                  f"{FLAGS.epoch_steps} steps):", "",
                  "| model | precision | seconds/epoch |", "|---|---|---|"]
        lines += [f"| {e['model']} | {e['precision']} | {e['seconds_per_epoch']} |"
                  for e in epochs]
    lines += ["", f"Peak resident memory of this benchmark process: {peak_rss_mib():.0f} MiB."]
    with open(os.path.join(FLAGS.out, "train_step.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
