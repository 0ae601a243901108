"""MLP building blocks shared by the generative and inference networks.

`MLP` accepts inputs with any number of leading dimensions ([batch, dim], [batch, S, dim],
...) and runs its matmuls on the flattened 2-D view, which is what the BLAS/oneDNN/XLA
kernels are fastest at; `SlotConditionedMLP` takes x as [batch, d_in] or [batch, S, d_in].

`SlotConditionedMLP` is the one optimisation that shapes the model code: its first layer
acting on [input, one_hot(y)] is split into W_in @ input + W_y[y], so W_in @ input is
computed once per example and only the cheap W_y row is added per enumerated slot.
"""

import keras
import tensorflow as tf
from keras import ops

HIDDEN_ACTIVATION = "relu"


def kernel_init(seed=None):
    """Glorot-normal kernels (paper)."""
    return keras.initializers.GlorotNormal(seed=seed)


def output_init(stddev: float, seed=None):
    """Small-normal initialisation for the layers that emit distribution parameters."""
    return keras.initializers.RandomNormal(stddev=stddev, seed=seed)


def _apply_2d(layer, x):
    """Applies a Dense layer to [..., d_in] via a 2-D matmul -> [..., d_out]."""
    lead = ops.shape(x)[:-1]
    y = layer(ops.reshape(x, (-1, ops.shape(x)[-1])))
    return ops.reshape(y, tuple(lead) + (layer.units,))


class MLP(keras.layers.Layer):
    """ReLU hidden layers then an optional linear head: [..., d_in] -> [..., d_out]."""

    def __init__(self, hidden_sizes, output_size=None, output_stddev=1e-3, seed=None, **kw):
        super().__init__(**kw)
        self.hidden = [
            keras.layers.Dense(h, activation=HIDDEN_ACTIVATION,
                               kernel_initializer=kernel_init(_offset(seed, i)),
                               dtype=self.dtype_policy, name=f"hidden_{i}")
            for i, h in enumerate(hidden_sizes)]
        self.head = None
        if output_size is not None:
            self.head = keras.layers.Dense(
                output_size, kernel_initializer=output_init(output_stddev, _offset(seed, 99)),
                dtype=self.dtype_policy, name="head")

    def call(self, x):
        for layer in self.hidden:
            x = _apply_2d(layer, x)
        return x if self.head is None else _apply_2d(self.head, x)


class SlotConditionedMLP(keras.layers.Layer):
    """MLP on the concatenation [x, one_hot(y)] with the first layer split by input.

    num_slots: all the model's slots (y_onehot's last dimension); S below: the slots
    enumerated in one call (all of them for the unlabelled bound, 1 for the labelled one).

    call(x, y_onehot, shared=None):
      x: [batch, d_in] (shared by all S slots) or [batch, S, d_in];
      y_onehot: [S, num_slots] (the same slots for every example, e.g. the identity for
        exact enumeration) or [batch, S, num_slots];
      shared: with shared_input, a further input [batch, d_shared] that no slot changes
        (its projection is computed once per example and added to every slot's).
    Returns the last hidden layer, [batch, S, hidden_sizes[-1]].
    """

    def __init__(self, hidden_sizes, num_slots, shared_input=False, seed=None, **kw):
        super().__init__(**kw)
        first, rest = hidden_sizes[0], hidden_sizes[1:]
        self.num_slots = num_slots
        self.first_x = keras.layers.Dense(first, kernel_initializer=kernel_init(seed),
                                          dtype=self.dtype_policy, name="first_x")
        self.first_units = first
        self.first_shared = None
        if shared_input:
            self.first_shared = keras.layers.Dense(
                first, use_bias=False, kernel_initializer=kernel_init(_offset(seed, 3)),
                dtype=self.dtype_policy, name="first_shared")
        self.rest = MLP(rest, seed=_offset(seed, 1), dtype=self.dtype_policy, name="rest")
        self._seed = seed

    def build(self, x_shape, y_onehot_shape=None, shared_shape=None):
        # The y-part of the first kernel: an untruncated normal at the Glorot scale of the
        # full [d_in + slots, h] kernel (first_x's own initialiser sees d_in alone).
        fan_in = x_shape[-1] + self.num_slots
        self.first_y = self.add_weight(
            shape=(self.num_slots, self.first_units), name="kernel_y",
            initializer=keras.initializers.RandomNormal(
                stddev=(2.0 / (fan_in + self.first_units)) ** 0.5, seed=_offset(self._seed, 2)))

    def call(self, x, y_onehot, shared=None):
        hx = _apply_2d(self.first_x, x)
        if len(x.shape) == 2:
            hx = hx[:, None, :]                                    # [B, 1, H]
        if shared is not None:
            hx = hx + self.first_shared(shared)[:, None, :]        # [B, 1, H], once per example
        y_onehot = ops.cast(y_onehot, self.compute_dtype)
        hy = ops.matmul(y_onehot, ops.cast(self.first_y, self.compute_dtype))  # [(B,) S, H]
        return self.rest(ops.relu(hx + hy))


def _offset(seed, k):
    return None if seed is None else seed + 1000 * (k + 1)


def half_sum_of_squared_kernels(model):
    """1/2 sum ||W||^2 over all network kernels (not biases, not the learnable p(z|y)):
    the negative log of the N(0, I) weight prior up to a constant. tf.nn.l2_loss is one
    fused reduction per kernel, and its gradient a single multiply."""
    kernels = [w for w in model.trainable_weights if w.name.startswith("kernel")]
    return tf.add_n([tf.nn.l2_loss(ops.cast(w, "float32")) for w in kernels])
