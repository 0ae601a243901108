"""AGM-DGM: GM-DGM with an auxiliary latent a (as the authors' code builds it).

    q(a|x), q(y|a,x), q(z|a,x,y);   p(y) = Cat(pi), p(z|y) = N(mu_y, diag sigma_y^2),
    p(x|z), p(a|y,z)

The auxiliary terms join the one bound in base.py (`elbo`); this file only says which
p(a|.) the model has.
"""

from gmdgm_tf.models import gmdgm


class AGMDGM(gmdgm.GMDGM):
    """GM-DGM's generative model plus p(a|y,z); the inference networks take [x, a]."""

    CONFIG_FIELDS = gmdgm.GMDGM.CONFIG_FIELDS + gmdgm.GMDGM.AUX_FIELDS

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.build_p_a(takes_x=False)
