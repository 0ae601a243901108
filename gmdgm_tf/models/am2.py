"""AM2: M2 with an auxiliary latent a, the auxiliary deep generative model (ADGM) of
Maaloe et al. (2016) as the authors' code builds it.

    q(a|x), q(y|a,x), q(z|a,x,y);   p(y) = Cat(pi), p(z) = N(0, I), p(x|y,z), p(a|x,y,z)

The auxiliary terms join the one bound in base.py (`elbo`); this file only says which
p(a|.) the model has.
"""

from gmdgm_tf.models import m2


class AM2(m2.M2):
    """M2's generative model plus p(a|x,y,z); the inference networks take [x, a]."""

    CONFIG_FIELDS = m2.M2.CONFIG_FIELDS + m2.M2.AUX_FIELDS

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.build_p_a(takes_x=True)
