"""GM-DGM: a Gaussian-mixture prior over z, one learnt component per class slot.

    p(y) = Cat(pi),  p(z|y) = N(mu_y, diag exp(log_var_y)),  p(x|z)

The decoder never sees y: the class lives only in where z falls, which is what lets
unlabelled classes form their own mixture components (Willetts et al., Sec. 3).
"""

import keras
import tensorflow_probability as tfp
from keras import ops

from gmdgm_tf.models import base, networks

tfd = tfp.distributions


class GMDGM(base.DeepGenerativeModel):
    """Per-slot Gaussian p(z|y) (learnt means and log-variances) and decoder p(x|z)."""

    CONFIG_FIELDS = ("prior_loc_stddev",)

    def __init__(self, *, prior_loc_stddev, **kwargs):
        super().__init__(**kwargs)
        self.prior_loc = self.add_weight(
            shape=(self.num_slots, self.z_dim), name="prior_loc",
            initializer=keras.initializers.RandomNormal(stddev=prior_loc_stddev,
                                                        seed=self._seed + 3))
        self.prior_log_var = self.add_weight(
            shape=(self.num_slots, self.z_dim), name="prior_log_var", initializer="zeros")
        self.decoder = networks.MLP(self.hidden_sizes, self.dim, self.output_stddev,
                                    seed=self._seed + 4, dtype=self.net_dtype,
                                    name="p_x_given_z")

    def p_z_given_y(self, y_onehot):
        """y_onehot [..., num_slots] -> Independent Normal, batch [...], event [z_dim]."""
        y_onehot = ops.cast(y_onehot, "float32")
        loc = ops.matmul(y_onehot, self.prior_loc)
        scale = ops.exp(0.5 * ops.matmul(y_onehot, self.prior_log_var))
        return tfd.Independent(tfd.Normal(loc, scale), 1)

    def p_x_given_yz(self, y_onehot, z):
        """z [batch, S, z_dim] -> p(x|z), batch [batch, S], event [dim] (y unused)."""
        del y_onehot
        return self._likelihood(self.decoder(z))
