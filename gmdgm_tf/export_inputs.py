"""The image inputs an export (gmdgm_tf.export) accepts, and their in-graph check.

A loaded SavedModel keeps only traced graphs, so every check a Python caller of
`m.classify(images)` etc. gets must be in the graph. Each image function is traced for the
two rank-3 forms of the named serving signatures (float32 and uint8 [N, H, W]) and once
per accepted dtype with an input of unknown shape, whose rank and size `check_images`
checks along with the values:

- shape [N, H, W], [N, H, W, 1] or flat rows [N, H*W] (one image x goes in as x[None]);
  N may be 0, giving empty outputs;
- float16, float32, float64: values in [0, 1], checked after the cast to float32 (NaN and
  Inf are checked before it, so a float64 too large for float32 is out of range, not Inf);
- uint8, int32, int64: the dataset's raw scale 0..uint8_divisor (255 for MNIST-like
  sources, 16 for scikit-learn's digits), divided by it. Integers are checked exactly.
  int8, int16 and uint16 are not accepted (a 16-bit image's scale, 0..65535, would be
  read as the raw scale), nor are bool, complex or strings: such inputs match no trace
  and raise TF's ValueError "Could not find matching concrete function".

A bad input raises tf.errors.InvalidArgumentError. Its text starts with TF's "Graph
execution error:" preamble (node name, "<stack traces unavailable>"); the first line that
starts with "assertion failed: [" carries the one message, e.g.
  assertion failed: [images must be 8 x 8 pixels like the training images (got shape [2, 7, 7])]
Shape problems are reported first, then NaN/Inf, then range.
"""

import tensorflow as tf

INPUT_DTYPES = (tf.float32, tf.float64, tf.float16, tf.uint8, tf.int32, tf.int64)


def image_specs(image_shape):
    """Traced input forms: rank-3 float32 and uint8 (the serving signatures' inputs), then
    one of unknown shape per accepted dtype."""
    height, width = image_shape
    return ([tf.TensorSpec([None, height, width], dtype, name="images")
             for dtype in (tf.float32, tf.uint8)]
            + [tf.TensorSpec(None, dtype, name="images") for dtype in INPUT_DTYPES])


def _text(t):
    """A number or a shape as message text: 1.5, 17, [2, 7, 7]."""
    text = tf.strings.as_string(t, shortest=t.dtype.is_floating)
    if t.shape.rank == 0:
        return text
    return tf.strings.join(["[", tf.strings.reduce_join(text, separator=", "), "]"])


def check_images(images, height, width, divisor):
    """-> one tf.debugging.Assert op over `images` (any INPUT_DTYPES dtype, any shape)
    whose message names the first problem; divisor: float32 scalar, the raw scale's top.
    Every condition is computed whatever the shape, so none can fail before the Assert."""
    shape = tf.shape(images)
    rank, dims = tf.size(shape), tf.concat([shape, tf.ones([4], tf.int32)], 0)  # dims[3] exists
    got = tf.strings.join([" (got shape ", _text(shape), ")"])
    flat = rank == 2
    x = tf.cast(images, tf.float32)
    if images.dtype.is_floating:
        finite, top, scale = tf.math.is_finite(images), tf.constant(1.0), "[0, 1]"
    else:
        finite, top = tf.ones_like(images, tf.bool), divisor
        scale = tf.strings.join(["0..", _text(divisor), " for this model"])
    problems = [  # (condition, message parts...) in the order they are reported
        ((rank >= 2) & (rank <= 4),
         f"images must be a batch [N, {height}, {width}], [N, {height}, {width}, 1] or "
         f"[N, {height * width}]", got),
        (tf.where(flat, dims[1] == height * width, (dims[1] == height) & (dims[2] == width)),
         tf.where(flat, f"flat images [N, {height * width}] must have {height} x {width} = "
                  f"{height * width} pixels like the training images",
                  f"images must be {height} x {width} pixels like the training images"), got),
        (dims[3] == 1, "images must have 1 channel (grayscale)", got),
        (tf.reduce_all(finite), "images contain ",
         _text(tf.size(finite) - tf.math.count_nonzero(finite, dtype=tf.int32)),
         " NaN or Inf values"),
        (tf.reduce_all((x >= 0) & (x <= top)), f"{images.dtype.name} images must be in ",
         scale, " (got min ", _text(tf.reduce_min(images)), ", max ",
         _text(tf.reduce_max(images)), ")")]
    message = tf.strings.join(problems[-1][1:])
    for ok, *parts in reversed(problems[:-1]):
        message = tf.where(ok, message, tf.strings.join(parts))
    return tf.debugging.Assert(tf.reduce_all(tf.stack([p[0] for p in problems])), [message])
