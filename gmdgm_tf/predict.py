r"""Predictions from an exported model (gmdgm_tf.export), with TensorFlow alone.

  python -m gmdgm_tf.predict --export_dir=exports/digits --images=x.npy
  python -m gmdgm_tf.predict --export_dir=DIR --images=digit.png --output=pred.json
  python -m gmdgm_tf.predict --export_dir=DIR --images=pngs/ --output=pred.csv

--images is a .npy array or a PNG file or a directory of PNG files (*.png, sorted by
name). A .npy holds [N, H, W], [N, H, W, 1] or one [H, W] image, uint8 in the dataset's
raw scale (0..255; 0..16 for digits) or float in [0, 1]. PNGs may be gray, gray+alpha,
RGB or RGBA, 8 or 16 bit; they are converted to grayscale (alpha ignored) and read as
0 = 0.0 .. max = 1.0 whatever the dataset, so a digits PNG is drawn 0..255 like MNIST.
Images must look like the training data (MNIST: white digit on black).

Output (JSON to stdout without --output; .json or .csv by the --output extension): per
image its id (index or file name), label and class_name (argmax of the class
probabilities), probs over the classes, slot (argmax slot of q(y|x)) and slot_class (the
class that slot is named after, -1 if unnamed). Shape, dtype and range are checked before
the model runs; a bad input is a one-line error and exit status 2.

This file imports only TensorFlow, NumPy and absl (never gmdgm_tf's models or TensorFlow
Probability), so it can be copied next to an export and run on a serving machine.
TensorFlow is imported only once the input has passed the checks, so a bad input fails
in well under a second.
"""

import csv
import json
import os
import sys

import numpy as np
from absl import app, flags

METADATA_FILE = "gmdgm_export.json"  # written by gmdgm_tf.export
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEFAULT_BATCH = 1000


class PredictError(ValueError):
    """A bad export directory, input file or output path (one line, for the user)."""


def load_metadata(export_dir):
    path = os.path.join(export_dir, METADATA_FILE)
    if not os.path.isdir(export_dir):
        raise PredictError(f"export_dir {export_dir} does not exist")
    if not os.path.isfile(path):
        raise PredictError(f"{export_dir} is not a gmdgm_tf export (no {METADATA_FILE})")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ------------------------------------------------------------------------------ inputs


def read_png(path):
    """One PNG -> [H, W] float32 in [0, 1], grayscale."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.startswith(PNG_SIGNATURE) or len(raw) < 25:
        raise PredictError(f"{path} is not a PNG file")
    bit_depth = raw[24]  # IHDR: 8-byte signature, 8-byte chunk header, 8 bytes of size
    dtype, top = (tf.uint16, 65535.0) if bit_depth == 16 else (tf.uint8, 255.0)
    try:
        image = tf.io.decode_png(raw, channels=0, dtype=dtype)
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
    """--images -> (ids [N] str, images array as stored: [N, H, W(, 1)] or [H, W])."""
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.lower().endswith(".png"))
        if not names:
            raise PredictError(f"directory {path} holds no .png files")
        images = [read_png(os.path.join(path, n)) for n in names]
        shapes = sorted({im.shape for im in images})
        if len(shapes) > 1:
            odd = next(n for n, im in zip(names, images) if im.shape != images[0].shape)
            raise PredictError(f"PNGs in {path} differ in size: {names[0]} is "
                               f"{images[0].shape[1]}x{images[0].shape[0]}, {odd} is not")
        return names, np.stack(images)
    if not os.path.isfile(path):
        raise PredictError(f"--images {path} does not exist")
    if path.lower().endswith(".png"):
        return [os.path.basename(path)], read_png(path)[None]
    if path.lower().endswith(".npy"):
        try:
            images = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise PredictError(f"cannot read {path}: {e}") from e
        if images.ndim == 2:
            images = images[None]
        return [str(i) for i in range(len(images))], images
    raise PredictError(f"--images {path}: give a .npy file, a .png file or a directory of PNGs")


def check_images(images, metadata, source="images"):
    """Shape, dtype and range against the export -> array the model accepts (raises
    PredictError with one line otherwise)."""
    height, width = metadata["image_shape"]
    divisor = metadata["uint8_divisor"]
    expected = f"[N, {height}, {width}], [N, {height}, {width}, 1] or [{height}, {width}]"
    shape = tuple(images.shape)
    if not (len(shape) == 3 and shape[1:] == (height, width)
            or len(shape) == 4 and shape[1:] == (height, width, 1)):
        raise PredictError(f"{source} have shape {list(shape)}; this model ({metadata['dataset']}) "
                           f"takes {expected}")
    if images.dtype == np.uint8:
        if images.size and images.max() > divisor:
            raise PredictError(
                f"{source}: uint8 values must be in 0..{divisor:g} for {metadata['dataset']} "
                f"(max is {images.max()}); or give float in [0, 1]")
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise PredictError(f"{source} have dtype {images.dtype}; give uint8 (0..{divisor:g}) "
                           "or float in [0, 1]")
    images = images.astype(np.float32)
    if not np.all(np.isfinite(images)):
        raise PredictError(f"{source} contain {int(np.sum(~np.isfinite(images)))} NaN/Inf values")
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
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    module = tf.saved_model.load(export_dir)
    outputs = {k: [] for k in ("probs", "label", "slot", "slot_class")}
    try:
        for start in range(0, len(images), batch_size):
            result = module.classify(images[start:start + batch_size])
            for k, values in outputs.items():
                values.append(result[k].numpy())
    except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
        message = e.message if isinstance(e, tf.errors.OpError) else str(e)
        lines = [line for line in message.splitlines() if "assertion failed" in line]
        raise PredictError(f"the model rejected the images: "
                           f"{(lines or message.splitlines() or [''])[0].strip()}") from e
    if not images.shape[0]:
        outputs = {"probs": [np.zeros((0, len(metadata["class_names"])))],
                   **{k: [np.zeros(0, int)] for k in ("label", "slot", "slot_class")}}
    arrays = {k: np.concatenate(v) for k, v in outputs.items()}
    names = metadata["class_names"]
    predictions = [{
        "id": ids[i], "label": int(arrays["label"][i]),
        "class_name": names[int(arrays["label"][i])],
        "probs": [round(float(p), 6) for p in arrays["probs"][i]],
        "slot": int(arrays["slot"][i]), "slot_class": int(arrays["slot_class"][i]),
    } for i in range(len(ids))]
    return {"export_dir": os.path.abspath(export_dir), "images": os.path.abspath(images_path),
            "dataset": metadata["dataset"], "slot_map_protocol": metadata["slot_map_protocol"],
            "class_names": names, "predictions": predictions}


def check_output(output):
    """Validates --output before anything runs -> its extension (.json or .csv)."""
    ext = os.path.splitext(output)[1].lower()
    if ext not in (".json", ".csv"):
        raise PredictError(f"--output {output}: the extension must be .json or .csv")
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        raise PredictError(f"--output {output}: directory {directory} does not exist")
    return ext


def write_output(result, output):
    """Writes `result` as JSON or CSV (by extension) atomically; None -> JSON on stdout."""
    if not output:
        json.dump(result, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return
    ext = check_output(output)
    tmp = f"{output}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            if ext == ".json":
                json.dump(result, f, indent=1)
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
    flags.DEFINE_string("images", None, ".npy file, .png file or directory of .png files.")
    flags.DEFINE_string("output", None, "Write predictions to this .json or .csv file "
                        "(default: JSON on stdout).")
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
