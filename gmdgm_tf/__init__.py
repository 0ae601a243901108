"""gmdgm_tf: semi-unsupervised learning with deep generative models (GM-DGM, M2)."""

__version__ = "0.1.0"
