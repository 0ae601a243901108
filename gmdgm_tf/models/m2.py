"""M2 (Kingma et al., 2014): the baseline with a standard-normal prior on z.

    p(y) = Cat(pi),  p(z) = N(0, I),  p(x|y,z)

The class enters the generative model only through the decoder input [y, z].
"""

import tensorflow_probability as tfp
from keras import ops

from gmdgm_tf.models import base, networks

tfd = tfp.distributions


class M2(base.DeepGenerativeModel):
    """Standard-normal p(z) and decoder p(x|y,z) with its first layer split by input."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.decoder = networks.SlotConditionedMLP(self.hidden_sizes, self.num_slots,
                                                   seed=self._seed + 4, dtype=self.net_dtype,
                                                   name="p_x_given_yz")
        self.decoder_head = networks.MLP((), self.dim, self.output_stddev,
                                         seed=self._seed + 5, dtype=self.net_dtype,
                                         name="p_x_given_yz_head")

    def p_z_given_y(self, y_onehot):
        """N(0, I) whatever y: batch [], event [z_dim] (broadcasts against q)."""
        del y_onehot
        zeros = ops.zeros((self.z_dim,))
        return tfd.Independent(tfd.Normal(zeros, ops.ones((self.z_dim,))), 1)

    def p_x_given_yz(self, y_onehot, z):
        """z [batch, S, z_dim], y_onehot [(batch,) S, num_slots] -> batch [batch, S]."""
        return self._likelihood(self.decoder_head(self.decoder(z, y_onehot)))
