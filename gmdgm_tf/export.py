r"""SavedModel export: serve a trained run with TensorFlow alone.

  python -m gmdgm_tf.export --workdir=runs/digits --export_dir=exports/digits
  python -m gmdgm_tf.export --workdir=RUN --export_dir=DIR --overwrite --protocol=paper

The export is a `tf.Module` saved with `tf.saved_model.save`. Loading it needs only
TensorFlow (no gmdgm_tf, Keras model code or TensorFlow Probability):

  m = tf.saved_model.load(DIR)
  m.classify(images)["label"]                      # Python call, any accepted input form
  m.signatures["classify"](images=images)          # serving signature (float32 [N, H, W])

Images go in as the dataset gives them, [N, H, W], [N, H, W, 1] or flat rows [N, H*W]
(H, W = the training images, 28 x 28 for MNIST, 8 x 8 for digits): float16/32/64 in [0, 1],
or uint8/int32/int64 in the raw scale 0..`uint8_divisor` (255 for MNIST-like sources, 16
for scikit-learn's digits). Shape, NaN/Inf and range are checked, one clear message per
bad input, and the images scaled and filtered inside the graph (gmdgm_tf.export_inputs
lists what is accepted and how errors read). The named SavedModel signatures (for TF Serving or
`saved_model_cli`) take the rank-3 forms: `<name>` float32 and `<name>_uint8` uint8.

Functions (dicts of named tensors out, documented with shapes on InferenceModule's
methods): classify, cluster, embed, reconstruct, and sample (the only random one, a pure
function of its seed). `serving_default` is `classify` (float32). The module also carries
`image_shape`, `pixel_mask`, `slot_to_class` and `uint8_divisor` as variables, and
DIR/gmdgm_export.json holds the metadata (the run's name, dataset, class names, slot map
and its protocol, headline metrics, versions and git commit, each signature's inputs and
outputs; no paths of the machine it was made on).
"""

import datetime
import json
import os
import sys
import types

import numpy as np
import tensorflow as tf
from absl import app, flags, logging

import gmdgm_tf
from gmdgm_tf import config as config_lib
from gmdgm_tf import evaluation, filenames, machine, model_card, rundir
from gmdgm_tf.export_inputs import check_images, image_specs

METADATA_FILE = filenames.EXPORT_METADATA
MODEL_CARD_FILE = filenames.EXPORT_MODEL_CARD
FORMAT = "gmdgm_tf.export/1"
PROTOCOLS = ("heldout", "paper")
IMAGE_FUNCTIONS = ("classify", "cluster", "embed", "reconstruct")
SIGNATURE_KEYS = ("serving_default",) + tuple(
    f"{name}{suffix}" for name in IMAGE_FUNCTIONS for suffix in ("", "_uint8")) + ("sample",)


class ExportError(ValueError):
    """An export that cannot be made; raised before anything is written to export_dir."""


# Errors that are the user's to fix: the CLI prints one line and exits with 2; anything
# else (a bug) keeps its traceback.
USER_ERRORS = (ExportError, rundir.RunDirError, rundir.WriteError, config_lib.ConfigError)


class InferenceModule(tf.Module):
    """The exported object, shaped like TF Model Garden's ExportModule: `__init__` checks
    the arguments and stores the state; the serving functions are tf.function methods
    (traced in `__init__` for every input form) built on plain methods for pre- and
    postprocessing. Each runs `preprocess`, then a private tf.function on the pixels
    (`_classify`, ...) traced once for all forms, so the network graphs are saved once.

    model: a trained DeepGenerativeModel, kept in an untracked plain object so that the
    SavedModel holds the graphs and only the variables they read (`model_variables`), not
    Keras objects; image_shape (H, W); pixel_mask [H * W] bool (the pixels the model
    takes); slot_map [S] int (each slot's class, -1 for none); num_classes C; divisor:
    what uint8 images are divided by."""

    def __init__(self, model, image_shape, pixel_mask, slot_map, num_classes, divisor):
        super().__init__(name="gmdgm_export")
        image_shape = tuple(int(s) for s in image_shape)
        pixel_mask = np.asarray(pixel_mask, bool).reshape(-1)
        slot_map = np.asarray(slot_map, np.int32)
        num_pixels = int(np.prod(image_shape))
        if pixel_mask.size != num_pixels:
            raise ExportError(f"pixel mask has {pixel_mask.size} entries, images have "
                              f"{num_pixels} pixels")
        if int(pixel_mask.sum()) != model.dim:
            raise ExportError(f"pixel mask keeps {int(pixel_mask.sum())} pixels but the model "
                              f"takes {model.dim}")
        if slot_map.shape != (model.num_slots,):
            raise ExportError(f"slot map has {slot_map.size} entries, the model has "
                              f"{model.num_slots} slots")
        if np.any((slot_map < evaluation.UNMAPPED) | (slot_map >= num_classes)):
            raise ExportError(f"slot map {slot_map.tolist()} names classes outside "
                              f"0..{num_classes - 1}")
        if not np.any(slot_map != evaluation.UNMAPPED):
            raise ExportError("the slot map names no slot, so no class can be predicted")

        self.image_shape = tf.Variable(image_shape, dtype=tf.int32, trainable=False,
                                       name="image_shape")
        self.pixel_mask = tf.Variable(pixel_mask.reshape(image_shape), trainable=False,
                                      name="pixel_mask")
        self.slot_to_class = tf.Variable(slot_map, trainable=False, name="slot_to_class")
        self.uint8_divisor = tf.Variable(float(divisor), dtype=tf.float32, trainable=False,
                                         name="uint8_divisor")
        self.num_classes = tf.Variable(int(num_classes), dtype=tf.int32, trainable=False,
                                       name="num_classes")
        self._keras = types.SimpleNamespace(model=model)  # not trackable: not saved
        self._height, self._width = image_shape
        self._num_slots = model.num_slots
        self._divisor = float(divisor)
        self._kept = np.flatnonzero(pixel_mask).astype(np.int32)
        # Position of every full-image pixel in [kept pixels..., 0]: dropped pixels read the
        # appended zero, which turns a [N, kept] model output back into a full image.
        self._scatter = np.full(num_pixels, self._kept.size, np.int32)
        self._scatter[self._kept] = np.arange(self._kept.size, dtype=np.int32)
        # membership[s, c]: slot s is named after class c.
        self._membership = np.zeros((model.num_slots, num_classes), bool)
        named = slot_map != evaluation.UNMAPPED
        self._membership[np.flatnonzero(named), slot_map[named]] = True

        traced = [getattr(self, name).get_concrete_function(spec)
                  for name in IMAGE_FUNCTIONS for spec in image_specs(image_shape)]
        traced.append(self.sample.get_concrete_function())
        own = {v.ref() for v in self.variables}
        captured = {v.ref(): v for f in traced for v in f.variables if v.ref() not in own}
        self.model_variables = list(captured.values())

    def preprocess(self, images):
        """images (an accepted form, see gmdgm_tf.export_inputs) -> [N, kept] float32 in
        [0, 1], the pixels the model takes, once `check_images` has passed."""
        check = check_images(images, self._height, self._width, self.uint8_divisor)
        with tf.control_dependencies([check]):
            x = tf.cast(tf.identity(images), tf.float32)
        if images.dtype.is_integer:
            x = x / self.uint8_divisor
        # The row length is read from a variable: shape inference, which runs into this
        # graph when a caller's shape is known ([2, 7, 7]), cannot fail before the check.
        flat = tf.reshape(x, tf.stack([-1, tf.reduce_prod(self.image_shape)]))
        return tf.gather(flat, self._kept, axis=1)

    def unfilter(self, x):
        """x [N, kept] -> float32 [N, H, W], filtered-out pixels 0."""
        x = tf.cast(x, tf.float32)
        padded = tf.concat([x, tf.zeros_like(x[:, :1])], axis=1)
        return tf.reshape(tf.gather(padded, self._scatter, axis=1),
                          [-1, self._height, self._width])

    def _q_y(self, x):
        """x [N, kept] -> (logits of q(y|x) [N, S] float32, argmax slot [N] int32)."""
        logits = self._keras.model.slot_logits(x)
        return logits, tf.argmax(logits, axis=-1, output_type=tf.int32)

    @tf.function(autograph=False)
    def classify(self, images):
        """images (any accepted form, N of them) -> probs [N, C] (slot probabilities summed
        into classes through the slot map, unnamed slots' mass dropped, renormalised),
        label [N] int32, slot_probs [N, S], slot [N] int32 (argmax slot), slot_class [N]
        int32 (the class the argmax slot is named after, -1 if unnamed: the
        cluster-and-label prediction that metrics.json scores)."""
        return self._classify(self.preprocess(images))

    @tf.function(autograph=False)
    def _classify(self, x):
        logits, slot = self._q_y(x)
        log_slot_probs = tf.nn.log_softmax(logits)
        # log sum_{s named c} p(s|x) per class, -inf for a class with no slot; the softmax
        # over classes drops the unnamed slots' mass and renormalises.
        grouped = tf.where(self._membership[None], log_slot_probs[:, :, None],
                           tf.constant(-np.inf, tf.float32))
        probs = tf.nn.softmax(tf.reduce_logsumexp(grouped, axis=1))
        return {"probs": probs, "label": tf.argmax(probs, -1, output_type=tf.int32),
                "slot_probs": tf.exp(log_slot_probs), "slot": slot,
                "slot_class": tf.gather(self.slot_to_class, slot)}

    @tf.function(autograph=False)
    def cluster(self, images):
        """images -> slot_probs [N, S] (q(y|x)), slot [N] int32 (its argmax)."""
        return self._cluster(self.preprocess(images))

    @tf.function(autograph=False)
    def _cluster(self, x):
        logits, slot = self._q_y(x)
        return {"slot_probs": tf.nn.softmax(logits), "slot": slot}

    @tf.function(autograph=False)
    def embed(self, images):
        """images -> z_mean [N, Z], z_scale [N, Z] of q(z|x,y) at the argmax slot; slot [N]."""
        return self._embed(self.preprocess(images))

    @tf.function(autograph=False)
    def _embed(self, x):
        embedding = self._keras.model.embed(x)
        return {"z_mean": embedding["z_mean"], "z_scale": embedding["z_scale"],
                "slot": embedding["slot"]}

    @tf.function(autograph=False)
    def reconstruct(self, images):
        """images -> reconstruction [N, H, W] (mean of p(x|y,z) at the argmax slot and the
        mean of q(z|x,y); Bernoulli probabilities, 0 where pixels were filtered out),
        slot [N] int32."""
        return self._reconstruct(self.preprocess(images))

    @tf.function(autograph=False)
    def _reconstruct(self, x):
        return {"reconstruction": self.unfilter(self._keras.model.reconstruct(x)),
                "slot": self._q_y(x)[1]}

    @tf.function(autograph=False, input_signature=[
        tf.TensorSpec([], tf.int32, name="slot"), tf.TensorSpec([], tf.int32, name="num"),
        tf.TensorSpec([2], tf.int32, name="seed")])
    def sample(self, slot, num, seed):
        """slot int32 [], num int32 [], seed int32 [2] -> images [num, H, W]: the mean of
        p(x|y,z) for z ~ p(z|y=slot), a pure function of the seed."""
        message = f"slot must be in 0..{self._num_slots - 1}"
        checks = [tf.debugging.assert_greater_equal(slot, 0, message=message),
                  tf.debugging.assert_less(slot, self._num_slots, message=message),
                  tf.debugging.assert_non_negative(num, message="num must be >= 0")]
        with tf.control_dependencies(checks):
            images = self._keras.model.sample(slot, num, seed)
        return {"images": self.unfilter(images)}

    def serving_signatures(self):
        """{signature key: concrete function}: rank-3 float32 `<name>`, uint8 `<name>_uint8`."""
        float_spec, uint8_spec = image_specs((self._height, self._width))[:2]
        signatures = {}
        for name in IMAGE_FUNCTIONS:
            function = getattr(self, name)
            signatures[name] = function.get_concrete_function(float_spec)
            signatures[f"{name}_uint8"] = function.get_concrete_function(uint8_spec)
        signatures["sample"] = self.sample.get_concrete_function()
        signatures["serving_default"] = signatures["classify"]
        return signatures


def describe_signatures(signatures):
    """{key: {"inputs": {name: [dtype, shape]}, "outputs": {name: [dtype, shape]}}} for the
    metadata. Inputs traced as positional arguments are named by their TensorSpec."""
    def spec(t):
        return [t.dtype.name, [None if d is None else int(d) for d in t.shape.as_list()]]
    out = {}
    for key in SIGNATURE_KEYS:
        function = signatures[key]
        args, kwargs = function.structured_input_signature
        inputs = {**{a.name: a for a in args}, **kwargs}
        out[key] = {"inputs": {k: spec(v) for k, v in sorted(inputs.items())},
                    "outputs": {k: spec(v) for k, v in
                                sorted(function.structured_outputs.items())}}
    return out


def _headline(metrics):
    return {name: {k: metrics[name].get(k) for k in evaluation.REPORTED}
            for name in PROTOCOLS if name in metrics}


def _full_path(path):
    """An absolute local path, or a TF filesystem URL (gs://...) as given."""
    return path.rstrip("/") if rundir.is_remote(path) else os.path.abspath(path)


def _check_destination(workdir, export_dir, overwrite):
    export_dir, workdir = _full_path(export_dir), _full_path(workdir)
    gfile = tf.io.gfile
    if gfile.exists(export_dir) and not gfile.isdir(export_dir):
        raise ExportError(f"export_dir {export_dir} exists and is not a directory")
    if gfile.isdir(export_dir) and gfile.listdir(export_dir) and not overwrite:
        raise ExportError(f"export_dir {export_dir} exists and is not empty; pass --overwrite "
                          "(overwrite=True) to replace it")
    if export_dir == workdir or workdir.startswith(export_dir + "/"):
        raise ExportError(f"export_dir {export_dir} would replace the run in {workdir}")
    if export_dir == os.path.dirname(export_dir) or export_dir.endswith(":/"):
        raise ExportError("export_dir cannot be a filesystem root")
    return export_dir


def _move_into_place(tmp, export_dir):
    """Puts the finished export `tmp` at `export_dir`, replacing what is there.

    On a local disk, directory renames: atomic. A URL (gs://, ...) is an object store whose
    "directories" are name prefixes that not every filesystem renames, so the files are
    copied, METADATA_FILE last: an export without it is one whose copy did not finish."""
    gfile = tf.io.gfile
    if rundir.is_remote(export_dir):
        rundir.remove_quietly(export_dir)
        files = [os.path.join(root, name) for root, _, names in gfile.walk(tmp) for name in names]
        for path in sorted(files, key=lambda p: os.path.basename(p) == METADATA_FILE):
            target = os.path.join(export_dir, os.path.relpath(path, tmp))
            gfile.makedirs(os.path.dirname(target))
            gfile.copy(path, target, overwrite=True)
        rundir.remove_quietly(tmp)
        return
    if not gfile.exists(export_dir):
        gfile.rename(tmp, export_dir)
        return
    old = _sibling(export_dir, "old")
    gfile.rename(export_dir, old)
    try:
        gfile.rename(tmp, export_dir)
    except BaseException:
        gfile.rename(old, export_dir)
        raise
    rundir.remove_quietly(old)


def _sibling(path, what):
    """A fresh hidden name beside `path`: <parent>/.<base>.<what>-<pid>-<random>."""
    parent, base = os.path.split(path)
    return os.path.join(parent, f".{base}.{what}-{os.getpid()}-{os.urandom(4).hex()}")


def export_run(workdir, export_dir, overwrite=False, protocol="heldout"):
    """Exports the finished run in `workdir` as a SavedModel in `export_dir`.

    protocol picks the slot->class map baked into `classify` (metrics.json's heldout map,
    built on validation, or the paper map, built on test). The export is written to a
    temporary directory beside export_dir and renamed into place only when complete; a
    non-empty export_dir is refused unless overwrite. Returns the metadata dict (also in
    export_dir/gmdgm_export.json).

    Raises ExportError (bad arguments, existing export_dir, inconsistent run) and
    rundir.RunDirError (an empty workdir; rundir.NotFinishedError: no finished run in it).
    """
    rundir.refuse_empty(workdir)
    rundir.refuse_empty(export_dir, "export_dir")
    if protocol not in PROTOCOLS:
        raise ExportError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
    export_dir = _check_destination(workdir, export_dir, overwrite)
    run = rundir.load_run(workdir)
    meta, metrics = run.meta, run.metrics
    if protocol not in metrics or "slot_map" not in metrics[protocol]:
        raise ExportError(f"{workdir}/metrics.json has no {protocol} slot map")
    slot_map = metrics[protocol]["slot_map"]
    class_names = list(meta.class_names)
    module = InferenceModule(run.model, meta.image_shape, meta.pixel_mask, slot_map,
                             len(class_names), meta.uint8_divisor)
    signatures = module.serving_signatures()
    metadata = {
        "format": FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        # the run's name and the code's commit, not a path of the machine it lay on
        "run": os.path.basename(workdir.rstrip("/")),
        "commit": machine.code_commit(),
        "package_version": gmdgm_tf.__version__,
        "tensorflow_version": tf.__version__,
        "dataset": meta.source,
        "model": run.config.model.name,
        "likelihood": run.config.model.likelihood,
        "image_shape": [int(s) for s in meta.image_shape],
        "uint8_divisor": meta.uint8_divisor,
        "num_pixels_kept": meta.dim,
        "class_names": class_names,
        "labelled_classes": list(meta.labelled_classes),
        "num_slots": len(slot_map),
        "slot_map": [int(s) for s in slot_map],
        "slot_map_protocol": protocol,
        "metrics": _headline(metrics),
        "training": metrics.get("training", {}),
        "signatures": describe_signatures(signatures),
    }

    tmp = _sibling(export_dir, "tmp")
    try:
        tf.io.gfile.makedirs(tmp)
        tf.saved_model.save(module, tmp, signatures=signatures)
        with tf.io.gfile.GFile(os.path.join(tmp, METADATA_FILE), "w") as f:
            f.write(json.dumps(metadata, indent=1))
        with tf.io.gfile.GFile(os.path.join(tmp, MODEL_CARD_FILE), "w") as f:
            f.write(model_card.model_card(metadata))
        _move_into_place(tmp, export_dir)
    except BaseException:
        rundir.remove_quietly(tmp)
        raise
    logging.info("exported %s (%s map) to %s", workdir, protocol, export_dir)
    return metadata


def directory_size(path):
    """Total bytes of the files under `path` (any TF filesystem)."""
    return sum(tf.io.gfile.stat(os.path.join(root, name)).length
               for root, _, names in tf.io.gfile.walk(path) for name in names)


# ---------------------------------------------------------------------------- CLI

def define_flags():
    """The CLI's flags; defined only when run as a program, so that importing this module
    (e.g. from the training command) adds no flags that could clash with the caller's."""
    flags.DEFINE_string("workdir", None, "Workdir of a finished training run.")
    flags.DEFINE_string("export_dir", None, "Directory to write the SavedModel to.")
    flags.DEFINE_bool("overwrite", False, "Replace a non-empty export_dir.")
    flags.DEFINE_enum("protocol", "heldout", PROTOCOLS,
                      "Whose slot->class map classify uses: heldout (built on validation) "
                      "or paper (built on test).")
    flags.mark_flags_as_required(["workdir", "export_dir"])


def main(argv):
    del argv
    FLAGS = flags.FLAGS  # pylint: disable=invalid-name
    try:
        metadata = export_run(FLAGS.workdir, FLAGS.export_dir, FLAGS.overwrite, FLAGS.protocol)
    except USER_ERRORS as e:
        logging.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    size = directory_size(FLAGS.export_dir) / 1e6
    print(f"exported {FLAGS.workdir} -> {FLAGS.export_dir} ({size:.2f} MB, "
          f"{metadata['slot_map_protocol']} slot map); signatures: "
          f"{', '.join(SIGNATURE_KEYS)}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
