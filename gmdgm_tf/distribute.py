"""tf.distribute strategies for training: `make_strategy(config.train.strategy, ...)`.

  auto          a TPU when one is found (TPU_NAME / Colab / TPU VM), else MirroredStrategy
                over the GPUs when there are two or more, else the default strategy (one
                GPU or the CPU: nothing to split).
  tpu           TPUStrategy; tpu_address "" (TPU_NAME, COLAB_TPU_ADDR, else the TPU VM's
                own chips), "local" (a TPU VM), a Cloud TPU name or "grpc://host:port".
  mirrored      MirroredStrategy over all GPUs of this machine (all logical CPUs when
                there is no GPU: tests split the CPU into two logical devices).
  multi_worker  MultiWorkerMirroredStrategy; the cluster comes from $TF_CONFIG.
  none          the default strategy.

How training uses a strategy (experiment.train_and_evaluate): the model, its optimizer,
metrics and RNG state are created under `strategy.scope()`; Keras' `fit` splits each
global batch (data.labelled_batch_size + data.unlabelled_batch_size) evenly across the
replicas, so both must be divisible by `num_replicas_in_sync`. Each replica's loss is a
mean over its share divided by the number of replicas (models/base.py, train_step) and
the optimizer sums the gradients over replicas: N replicas with global batch B take the
step one device takes with batch B. Over several replicas `adam` gives a
`CrossReplicaAdam`, which clips that sum, not each replica's share (Keras clips before its
all-reduce). `adapt_model` works around two Keras 3 fit() failures under
MultiWorkerMirroredStrategy. Both reach into private Keras hooks, so they are applied only
where they are needed (one device trains with Keras' own Adam and fit), setup.py pins the
Keras minor version they were verified on, and tests/test_distribute.py fails naming the
hook a Keras upgrade removes. In a multi-worker cluster only the chief writes the run; the
other workers write the same files to workdir/workers/<task>.
"""

import glob
import importlib.util
import json
import os
import socket
import urllib.parse

import keras
import tensorflow as tf
from absl import logging

from gmdgm_tf import filenames

CONNECT_TIMEOUT_S = 10.0
_TPU_ENV = ("TPU_NAME", "KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS", "TPU_CONFIG")


class StrategyError(ValueError):
    """A strategy that cannot be built here (unreachable TPU, bad TF_CONFIG)."""


# ------------------------------------------------------------------------------ factory


def make_strategy(name, tpu_address="", timeout_s=CONNECT_TIMEOUT_S):
    """A validated config.train.strategy (config.STRATEGIES) + train.tpu_address -> a
    tf.distribute.Strategy.

    Raises StrategyError with a one-line reason, fast: an unreachable TPU address fails
    within about `timeout_s` seconds instead of hanging in TensorFlow's connection retries.
    """
    if name == "auto":
        return _auto(tpu_address, timeout_s)
    if name == "tpu":
        return _tpu(tpu_address, timeout_s)
    if name == "mirrored":
        return _mirrored()
    if name == "multi_worker":
        return _multi_worker()
    if name == "none":
        return tf.distribute.get_strategy()
    raise StrategyError(f"no strategy {name!r} (config.STRATEGIES names the choices)")


def auto_choice(tpu_found, num_gpus):
    """What `auto` picks: 'tpu', 'mirrored' (two or more GPUs) or 'none'."""
    if tpu_found:
        return "tpu"
    return "mirrored" if num_gpus > 1 else "none"


def _auto(tpu_address, timeout_s):
    if tpu_address or tpu_hint():
        try:
            return _tpu(tpu_address, timeout_s)
        except StrategyError as e:
            if tpu_address:  # asked for explicitly: do not silently train elsewhere
                raise
            logging.warning("a TPU looked present but could not be used (%s); "
                            "falling back to GPUs/CPU", e)
    choice = auto_choice(False, len(tf.config.list_physical_devices("GPU")))
    return _mirrored() if choice == "mirrored" else tf.distribute.get_strategy()


def tpu_hint():
    """Cheap signs of a TPU (no network, no TF initialisation): env vars Cloud TPU / Colab
    set, or a TPU VM's chips (/dev/accel*, or /dev/vfio/N with libtpu installed)."""
    if any(os.environ.get(k) for k in _TPU_ENV + ("COLAB_TPU_ADDR",)):
        return True
    if glob.glob("/dev/accel[0-9]*"):
        return True
    return bool(glob.glob("/dev/vfio/[0-9]*")) and importlib.util.find_spec("libtpu") is not None


def _mirrored():
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    return tf.distribute.MirroredStrategy(devices)


def _multi_worker():
    raw = os.environ.get("TF_CONFIG", "")
    if raw:
        try:
            tf_config = json.loads(raw)
            cluster, task = tf_config["cluster"], tf_config["task"]
            if task["type"] not in cluster or not 0 <= int(task["index"]) < len(
                    cluster[task["type"]]):
                raise KeyError(f"task {task} is not in the cluster {sorted(cluster)}")
        except (ValueError, KeyError, TypeError) as e:
            raise StrategyError(f"TF_CONFIG is not a valid cluster description ({e}); "
                                'expected {"cluster": {"worker": ["host:port", ...]}, '
                                '"task": {"type": "worker", "index": 0}}') from e
    else:
        logging.warning("train.strategy=multi_worker without $TF_CONFIG: one worker only")
    if not _MULTI_WORKER:  # collectives are configured once a process: reuse it
        _MULTI_WORKER.append(tf.distribute.MultiWorkerMirroredStrategy())
    return _MULTI_WORKER[0]


_MULTI_WORKER = []


# -------------------------------------------------------------------------------- TPU


def _tpu_target(tpu_address):
    """train.tpu_address -> what TPUClusterResolver takes (None: resolve from env)."""
    if tpu_address:
        return tpu_address
    if os.environ.get("COLAB_TPU_ADDR") and not any(os.environ.get(k) for k in _TPU_ENV):
        return "grpc://" + os.environ["COLAB_TPU_ADDR"]  # Colab's older TPU-node runtime
    if any(os.environ.get(k) for k in _TPU_ENV):
        return None
    return "local"


def _check_reachable(address, timeout_s):
    """grpc://host:port -> StrategyError unless a TCP connection opens within timeout_s."""
    parsed = urllib.parse.urlparse(address)
    host, port = parsed.hostname, parsed.port or 8470
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as e:
        raise StrategyError(f"TPU at {address} is not reachable within {timeout_s:g} s "
                            f"({e.strerror or e}); check train.tpu_address") from e


_TPU_STRATEGIES = {}  # target -> TPUStrategy: the TPU system is initialised once a process


def _tpu(tpu_address, timeout_s):
    target = _tpu_target(tpu_address)
    if target in _TPU_STRATEGIES:
        return _TPU_STRATEGIES[target]
    shown = tpu_address or target or os.environ.get("TPU_NAME", "(from $TPU_NAME)")
    if target == "local" and not (glob.glob("/dev/accel[0-9]*") or glob.glob("/dev/vfio/[0-9]*")):
        raise StrategyError("no TPU on this machine (train.tpu_address "
                            f"{shown!r}: no /dev/accel* or /dev/vfio devices); use "
                            "train.strategy=auto, or give a TPU name or grpc://host:port")
    if target and target.startswith("grpc://"):
        _check_reachable(target, timeout_s)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)  # name lookups query GCE metadata with no timeout
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=target)
        master = resolver.master()
    except Exception as e:  # pylint: disable=broad-except  # urllib, googleapiclient, ...
        raise StrategyError(f"cannot resolve TPU {shown!r}: {type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''}") from e
    finally:
        socket.setdefaulttimeout(previous)
    if master.startswith("grpc://") and master != target:
        _check_reachable(master, timeout_s)
    try:
        if target != "local":
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (tf.errors.OpError, ValueError, RuntimeError) as e:
        raise StrategyError(f"cannot initialise TPU {shown!r}: {type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''}") from e
    _TPU_STRATEGIES[target] = tf.distribute.TPUStrategy(resolver)
    return _TPU_STRATEGIES[target]


# ------------------------------------------------------------------------- helpers


def describe(strategy):
    """One line for logs: the strategy, its replica count and devices."""
    try:
        devices = strategy.extended.worker_devices
    except RuntimeError:  # the default strategy has none to list
        devices = ()
    where = ", ".join(d.split("/")[-1] if d.startswith("/job:localhost") else d
                      for d in devices)
    name = ("MultiWorkerMirroredStrategy"  # an alias of CollectiveAllReduceStrategy
            if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            else type(strategy).__name__)
    return (f"{name} with {strategy.num_replicas_in_sync} "
            f"replica{'s' if strategy.num_replicas_in_sync != 1 else ''}"
            + (f" on {where}" if where else ""))


def task(strategy):
    """(task_type, task_id) of this process in a multi-worker cluster; (None, None)
    when there is no cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return None, None
    return resolver.task_type, resolver.task_id


def is_chief(strategy):
    """True for the one process that writes the run's files (the chief, else worker 0)."""
    task_type, task_id = task(strategy)
    if task_type is None or task_type == "chief":
        return True
    has_chief = "chief" in strategy.cluster_resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


def worker_workdir(strategy, workdir):
    """The directory this process writes to: the workdir for the chief; for every other
    multi-worker process a private one inside it (all processes must checkpoint at the
    same steps, as saving reads synchronised variables, but only the chief's files are
    the run)."""
    if is_chief(strategy):
        return workdir
    task_type, task_id = task(strategy)
    return os.path.join(workdir, filenames.WORKERS_DIR, f"{task_type}_{task_id}")


def check_batch_split(labelled_batch_size, unlabelled_batch_size, num_replicas,
                      has_labels=True):
    """-> None, or a message: each replica must get an equal, whole share of each batch."""
    bad = [f"{name}={size}" for name, size, used in (
        ("data.labelled_batch_size", labelled_batch_size, has_labels),
        ("data.unlabelled_batch_size", unlabelled_batch_size, True))
        if used and size % num_replicas]
    if not bad:
        return None
    return (f"{' and '.join(bad)} not divisible by the {num_replicas} replicas of the "
            "strategy (batch sizes are global and split evenly); pick multiples of "
            f"{num_replicas} or another train.strategy")


def adapt_model(model, strategy):
    """Works around two Keras 3 fit() failures under MultiWorkerMirroredStrategy (model
    fully built); under any other strategy the model is left as it is.

    1. fit() first takes a batch and averages it across replicas with `strategy.reduce`
       to build unbuilt state (the private `_maybe_symbolic_build`; on the default
       strategy it returns at once, and MirroredStrategy reduces the batch fine), but
       MultiWorkerMirroredStrategy cannot reduce a nested batch (ValueError: PerReplica
       to Tensor). experiment.build creates every variable (the optimizer's too), so that
       step has nothing to build and is skipped.
    2. fit() reduces each logged value with `strategy.reduce("MEAN", value, axis=0)`,
       which fails on the scalars train_step returns ("Invalid reduction dimension 0 for
       input with 0 dimensions", tensorflow/tensorflow#72388). The step's logs are
       returned as [1] vectors, which that reduce averages over replicas into scalars.
    """
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        object.__setattr__(model, "_maybe_symbolic_build", skip_symbolic_build)
        train_step = model.train_step

        def rank1_logs_train_step(data):
            return {k: tf.reshape(v, [1]) for k, v in train_step(data).items()}

        object.__setattr__(model, "train_step", rank1_logs_train_step)


def skip_symbolic_build(iterator=None, data_batch=None):
    """What a multi-worker model's `_maybe_symbolic_build` becomes (adapt_model, 1.)."""
    del iterator, data_batch


def adam(learning_rate, clipvalue=None):
    """The training optimizer, made under the strategy's scope: Keras' Adam, or a
    CrossReplicaAdam when gradients are clipped and summed over several replicas.

    On one replica the two take the same steps bit for bit (the all-reduce is the
    identity, and clipping commutes with it), so only where the order matters does
    training go through CrossReplicaAdam's private hooks. Their variables are named
    alike, so a checkpoint resumes under either.
    """
    if clipvalue and tf.distribute.get_strategy().num_replicas_in_sync > 1:
        return CrossReplicaAdam(learning_rate, clipvalue=clipvalue)
    return keras.optimizers.Adam(learning_rate, clipvalue=clipvalue)


class CrossReplicaAdam(keras.optimizers.Adam):
    """Adam that clips the gradients after the cross-replica sum, not before.

    Keras 3 (TF backend) clips in `apply` and only then all-reduces in
    `_backend_update_step`, so under N replicas each replica's share of the gradient is
    clipped to `clipvalue` and the sum may reach N * clipvalue: not the step one device
    takes on the same global batch. Here clipping is deferred to right after the sum. On
    one device the all-reduce is the identity and the result is Adam's, bit for bit.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not hasattr(super(), "_all_reduce_sum_gradients"):
            raise RuntimeError("CrossReplicaAdam needs the TensorFlow backend's optimizer "
                               "(keras.optimizers.Adam has no _all_reduce_sum_gradients)")

    def _clip_gradients(self, grads):
        return grads  # done in _all_reduce_sum_gradients, on the summed gradients

    def _all_reduce_sum_gradients(self, grads_and_vars):
        reduced = list(super()._all_reduce_sum_gradients(grads_and_vars))
        clipped = super()._clip_gradients([g for g, _ in reduced])
        return [(g, v) for g, (_, v) in zip(clipped, reduced)]
