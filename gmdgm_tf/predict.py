r"""Predictions from an exported model (gmdgm_tf.export), with TensorFlow alone.

  python -m gmdgm_tf.predict --export_dir=exports/digits --images=x.npy
  python -m gmdgm_tf.predict --export_dir=DIR --images=digit.png --output=pred.json
  python -m gmdgm_tf.predict --export_dir=DIR --images=pngs/ --output=pred.csv
  python -m gmdgm_tf.predict --export_dir=DIR --images=photo.jpg --output=pred.jsonl

--images is a .npy array, a PNG or JPEG file, or a directory of them (*.png, *.jpg,
*.jpeg, sorted by name). A .npy holds [N, H, W], [N, H, W, 1], flat rows [N, H*W] or one
[H, W] image, as
uint8, int32 or int64 in the dataset's raw scale (0..255; 0..16 for digits) or as float16,
float32 or float64 in [0, 1] -- the dtypes the export's Python functions accept
(gmdgm_tf.export_inputs); other dtypes, other shapes (rank 5, 3 channels, ...), NaN/Inf
and values out of range are refused. PNGs may be gray, gray+alpha, RGB or RGBA, 8 or 16
bit, JPEGs gray or RGB; they are converted to grayscale (alpha ignored) and read as
0 = 0.0 .. max = 1.0 whatever the dataset, so a digits PNG is drawn 0..255 like MNIST.
Images must look like the training data (MNIST: white digit on black). --export_dir and
--images may be TF filesystem URLs (gs://bucket/...), read through tf.io.gfile; --output
is a local file.

Output (JSON to stdout without --output; .json, .jsonl or .csv by the --output
extension): per image its id (index or file name), label and class_name (argmax of the
class probabilities), probs over the classes, slot (argmax slot of q(y|x)) and slot_class
(the class that slot is named after, -1 if unnamed). JSON has one line per image; JSON
Lines (.jsonl) holds just those per-image objects. Shape, dtype and range are checked
before the model runs; a bad input is a one-line error and exit status 2.

This file imports only TensorFlow, NumPy and absl (never gmdgm_tf's models or TensorFlow
Probability), so it can be copied next to an export and run on a serving machine.
For a .npy on the local disk, TensorFlow is imported only once the input has passed the
checks, so a bad array fails in well under a second (PNG and JPEG files are decoded by
TensorFlow, so they pay its start-up first).
"""

import csv
import io
import json
import os
import sys

import numpy as np
from absl import app, flags

# = gmdgm_tf.filenames.EXPORT_METADATA, spelled here because this file stands alone.
METADATA_FILE = "gmdgm_export.json"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
OUTPUT_EXTENSIONS = (".json", ".jsonl", ".csv")
INTEGER_DTYPES = ("uint8", "int32", "int64")  # those gmdgm_tf.export_inputs accepts
FLOAT_DTYPES = ("float16", "float32", "float64")
DEFAULT_BATCH = 1000


class PredictError(ValueError):
    """A bad export directory, input file or output path (one line, for the user)."""


class _LocalFiles:
    """The few file operations predict needs, on the local disk (no TensorFlow import)."""
    isdir, isfile, listdir = staticmethod(os.path.isdir), staticmethod(os.path.isfile), os.listdir

    @staticmethod
    def read(path):
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:  # unreadable: permissions, a directory named x.png, ...
            raise PredictError(f"cannot read {path}: {e.strerror or e}") from e


class _TFFiles:
    """The same on a TF filesystem URL (gs://...), through tf.io.gfile (TensorFlow is
    imported only for URLs)."""

    def __init__(self):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        self.gfile, self.errors = tf.io.gfile, tf.errors

    def isdir(self, path):
        return self.gfile.isdir(path)

    def isfile(self, path):
        return self.gfile.exists(path) and not self.gfile.isdir(path)

    def listdir(self, path):
        return self.gfile.listdir(path)

    def read(self, path):
        try:
            with self.gfile.GFile(path, "rb") as f:
                return f.read()
        except self.errors.OpError as e:
            raise PredictError(f"cannot read {path}: {e.message.splitlines()[0]}") from e


def is_remote(path):
    """= gmdgm_tf.rundir.is_remote, spelled here because this file stands alone."""
    return "://" in path


def files(path):
    """-> the file operations for `path`: local, or tf.io.gfile for gs:// and other URLs."""
    return _TFFiles() if is_remote(path) else _LocalFiles


def _full_path(path):
    return path if is_remote(path) else os.path.abspath(path)


# What predict reads of the metadata: field -> the JSON types it may have.
METADATA_FIELDS = {"image_shape": list, "uint8_divisor": (int, float), "dataset": str,
                   "class_names": list, "slot_map_protocol": str}


def load_metadata(export_dir):
    """export_dir's gmdgm_export.json -> dict; a missing or damaged file (not JSON, or
    lacking a field predict reads) is a PredictError naming it."""
    path = os.path.join(export_dir, METADATA_FILE)
    fs = files(export_dir)
    if not fs.isdir(export_dir):
        raise PredictError(f"export_dir {export_dir} does not exist")
    if not fs.isfile(path):
        raise PredictError(f"{export_dir} is not a gmdgm_tf export (no {METADATA_FILE})")
    try:
        metadata = json.loads(fs.read(path).decode("utf-8"))
    except ValueError as e:  # not UTF-8 or not JSON
        raise PredictError(f"{path} is damaged ({e}); export the run again") from e
    if not isinstance(metadata, dict):
        raise PredictError(f"{path} is damaged (not a JSON object); export the run again")
    bad = [k for k, kind in METADATA_FIELDS.items()
           if not isinstance(metadata.get(k), kind) or isinstance(metadata.get(k), bool)]
    shape = metadata.get("image_shape")
    if "image_shape" not in bad and not (len(shape) == 2 and all(
            isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
        bad.append("image_shape")
    if bad:
        raise PredictError(f"{path} is damaged (missing or invalid: {', '.join(bad)}); "
                           "export the run again")
    return metadata


# ------------------------------------------------------------------------------ inputs


def read_image(path):
    """One PNG or JPEG (by extension) -> [H, W] float32 in [0, 1], grayscale."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    raw = files(path).read(path)
    png = path.lower().endswith(".png")
    if png and (not raw.startswith(PNG_SIGNATURE) or len(raw) < 25):
        raise PredictError(f"{path} is not a PNG file")
    if not png and not raw.startswith(JPEG_SIGNATURE):
        raise PredictError(f"{path} is not a JPEG file")
    # PNG IHDR: 8-byte signature, 8-byte chunk header, 8 bytes of size, then the bit depth.
    dtype, top = (tf.uint16, 65535.0) if png and raw[24] == 16 else (tf.uint8, 255.0)
    try:  # a JPEG is decoded straight to gray (libjpeg: the luma of RGB)
        image = (tf.io.decode_png(raw, channels=0, dtype=dtype) if png
                 else tf.io.decode_jpeg(raw, channels=1))
    except tf.errors.InvalidArgumentError as e:
        raise PredictError(f"cannot decode {path}: {e.message.splitlines()[0]}") from e
    image = tf.cast(image, tf.float32) / top
    channels = image.shape[-1]
    if channels in (2, 4):  # drop alpha
        image = image[..., :channels - 1]
    if image.shape[-1] == 3:
        image = tf.image.rgb_to_grayscale(image)
    return image.numpy()[..., 0]


def read_images(path):
    """--images -> (ids [N] str, or None for a .npy (its rows are numbered once its shape is
    read), images array as stored)."""
    fs = files(path)
    if fs.isdir(path):
        names = sorted(n.rstrip("/") for n in fs.listdir(path)
                       if n.lower().rstrip("/").endswith(IMAGE_EXTENSIONS)
                       and fs.isfile(os.path.join(path, n.rstrip("/"))))  # no subfolders
        if not names:
            raise PredictError(f"directory {path} holds no .png, .jpg or .jpeg files")
        images = [read_image(os.path.join(path, n)) for n in names]
        shapes = sorted({im.shape for im in images})
        if len(shapes) > 1:
            odd = next(n for n, im in zip(names, images) if im.shape != images[0].shape)
            raise PredictError(f"images in {path} differ in size: {names[0]} is "
                               f"{images[0].shape[1]}x{images[0].shape[0]}, {odd} is not")
        return names, np.stack(images)
    if not fs.isfile(path):
        raise PredictError(f"--images {path} does not exist")
    if path.lower().endswith(IMAGE_EXTENSIONS):
        return [os.path.basename(path)], read_image(path)[None]
    if path.lower().endswith(".npy"):
        try:
            images = np.load(io.BytesIO(fs.read(path)), allow_pickle=False)
        except (ValueError, OSError) as e:
            raise PredictError(f"cannot read {path}: {e}") from e
        return None, images
    raise PredictError(f"--images {path}: give a .npy file, a .png or .jpg file or a "
                       "directory of them")


def check_images(images, metadata, source="images"):
    """Shape, dtype and range against the export, as the export's own in-graph check does
    (gmdgm_tf.export_inputs; one [H, W] image and flat rows [N, H*W] become [N, H, W]
    here) -> array the model accepts; raises PredictError with one line otherwise."""
    height, width = metadata["image_shape"]
    divisor = metadata["uint8_divisor"]
    shape = list(images.shape)
    if shape == [height, width]:
        images, shape = images[None], [1, height, width]
    elif images.ndim == 2 and shape[1] == height * width:
        images = images.reshape(shape[0], height, width)
        shape = list(images.shape)
    if images.ndim not in (3, 4) or shape[1:3] != [height, width]:
        raise PredictError(
            f"{source} have shape {list(images.shape)}; this model ({metadata['dataset']}) "
            f"takes [N, {height}, {width}], [N, {height}, {width}, 1], [N, {height * width}] "
            f"or [{height}, {width}]")
    if images.ndim == 4 and shape[3] != 1:
        raise PredictError(f"{source} have {shape[3]} channels (shape {shape}); this model "
                           "takes grayscale images, 1 channel")
    scale = f"0..{divisor:g} for {metadata['dataset']}"
    if images.dtype.name in INTEGER_DTYPES:
        low, high = (images.min(), images.max()) if images.size else (0, 0)
        if low < 0 or high > divisor:
            raise PredictError(f"{source}: {images.dtype.name} values must be in {scale} "
                               f"(min {low}, max {high}); or give float in [0, 1]")
        return images.astype(images.dtype.name, copy=False)  # native byte order for TF
    if images.dtype.name not in FLOAT_DTYPES:
        raise PredictError(f"{source} have dtype {images.dtype}; give {'/'.join(INTEGER_DTYPES)}"
                           f" in {scale} or {'/'.join(FLOAT_DTYPES)} in [0, 1]")
    if not np.all(np.isfinite(images)):
        raise PredictError(f"{source} contain {int(np.sum(~np.isfinite(images)))} NaN/Inf values")
    with np.errstate(over="ignore"):  # range checked as float32, as the export does
        images = images.astype(np.float32)
    if images.size and (images.min() < 0 or images.max() > 1):
        raise PredictError(f"{source}: float values must be in [0, 1] (min {images.min():.4g}, "
                           f"max {images.max():.4g})")
    return images


# ------------------------------------------------------------------------ prediction


def predict(export_dir, images_path, batch_size=DEFAULT_BATCH):
    """-> {"class_names": [...], "predictions": [{id, label, class_name, probs, slot,
    slot_class}, ...], ...} for every image in images_path."""
    if batch_size < 1:
        raise PredictError(f"batch_size must be >= 1, got {batch_size}")
    metadata = load_metadata(export_dir)
    ids, images = read_images(images_path)
    images = check_images(images, metadata, source=os.path.basename(images_path.rstrip("/")))
    ids = ids or [str(i) for i in range(len(images))]
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    try:
        module = tf.saved_model.load(export_dir)
    except (OSError, ValueError, tf.errors.OpError) as e:  # a damaged or partial SavedModel
        message = e.message if isinstance(e, tf.errors.OpError) else str(e)
        first = next((line.strip() for line in message.splitlines() if line.strip()),
                     type(e).__name__)
        raise PredictError(f"cannot load the SavedModel in {export_dir} ({first[:200]}); "
                           "export the run again") from e
    outputs = {k: [] for k in ("probs", "label", "slot", "slot_class")}
    try:  # at least one call, so that no images give empty outputs of the right shapes
        for start in range(0, max(len(images), 1), batch_size):
            result = module.classify(images[start:start + batch_size])
            for k, values in outputs.items():
                values.append(result[k].numpy())
    except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
        message = e.message if isinstance(e, tf.errors.OpError) else str(e)
        lines = [line.strip() for line in message.splitlines() if line.strip()] or [""]
        # The export's own check reads "assertion failed: [<message>]" after TF's preamble.
        prefix = "assertion failed: ["
        line = next((x[len(prefix):].removesuffix("]") for x in lines if x.startswith(prefix)),
                    lines[0])
        raise PredictError(f"the model rejected the images: {line}") from e
    arrays = {k: np.concatenate(v) for k, v in outputs.items()}
    names = metadata["class_names"]
    predictions = [{
        "id": ids[i], "label": int(arrays["label"][i]),
        "class_name": names[int(arrays["label"][i])],
        "probs": [round(float(p), 6) for p in arrays["probs"][i]],
        "slot": int(arrays["slot"][i]), "slot_class": int(arrays["slot_class"][i]),
    } for i in range(len(ids))]
    return {"export_dir": _full_path(export_dir), "images": _full_path(images_path),
            "dataset": metadata["dataset"], "slot_map_protocol": metadata["slot_map_protocol"],
            "class_names": names, "predictions": predictions}


def check_output(output):
    """Validates --output before anything runs -> its extension (.json, .jsonl or .csv)."""
    ext = os.path.splitext(output)[1].lower()
    if ext not in OUTPUT_EXTENSIONS:
        raise PredictError(f"--output {output}: the extension must be .json, .jsonl or .csv")
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        raise PredictError(f"--output {output}: directory {directory} does not exist")
    return ext


def to_json(result):
    """`result` as JSON text, one line per prediction."""
    fields = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in result.items()
              if k != "predictions"]
    rows = ",\n".join(f"  {json.dumps(p)}" for p in result["predictions"])
    fields.append(f' "predictions": [\n{rows}\n ]' if rows else ' "predictions": []')
    return "{\n" + ",\n".join(fields) + "\n}\n"


def write_output(result, output):
    """Writes `result` as JSON, JSON Lines or CSV (by extension) atomically; None -> JSON
    on stdout."""
    if not output:
        sys.stdout.write(to_json(result))
        return
    ext = check_output(output)
    tmp = f"{output}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            if ext == ".json":
                f.write(to_json(result))
            elif ext == ".jsonl":
                f.writelines(json.dumps(p) + "\n" for p in result["predictions"])
            else:
                writer = csv.writer(f)
                writer.writerow(["id", "label", "class_name", "slot", "slot_class"]
                                + [f"prob_{name}" for name in result["class_names"]])
                for p in result["predictions"]:
                    writer.writerow([p["id"], p["label"], p["class_name"], p["slot"],
                                     p["slot_class"]] + p["probs"])
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# ---------------------------------------------------------------------------- CLI


def define_flags():
    flags.DEFINE_string("export_dir", None, "Directory written by gmdgm_tf.export.")
    flags.DEFINE_string("images", None, ".npy file, .png/.jpg file or a directory of them.")
    flags.DEFINE_string("output", None, "Write predictions to this .json, .jsonl or .csv "
                        "file (default: JSON on stdout).")
    flags.DEFINE_integer("batch_size", DEFAULT_BATCH, "Images per model call.")
    flags.mark_flags_as_required(["export_dir", "images"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    FLAGS = flags.FLAGS  # pylint: disable=invalid-name
    try:
        if FLAGS.output:
            check_output(FLAGS.output)
        result = predict(FLAGS.export_dir, FLAGS.images, FLAGS.batch_size)
        write_output(result, FLAGS.output)
    except PredictError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if FLAGS.output:
        print(f"wrote {len(result['predictions'])} predictions to {FLAGS.output}",
              file=sys.stderr)


if __name__ == "__main__":
    define_flags()
    app.run(main)
