"""Models: `build_model(config.model, ...)` picks GM-DGM or M2 by name; `objective` gives
the training-only numbers of the loss."""

from gmdgm_tf.models.base import DeepGenerativeModel, Objective
from gmdgm_tf.models.gmdgm import GMDGM
from gmdgm_tf.models.m2 import M2

MODELS = {"gmdgm": GMDGM, "m2": M2}  # the names are config.MODELS


def build_model(model_config, *, dim, prior, precision="float32", seed=0):
    """A validated config.model + the data's dim and p(y) [num_slots] -> a model with every
    variable created (no objective set: see `objective`)."""
    kwargs = dict(dim=dim, prior=prior, hidden_sizes=tuple(model_config.hidden_sizes),
                  z_dim=model_config.z_dim, likelihood=model_config.likelihood,
                  output_stddev=model_config.output_stddev, precision=precision, seed=seed)
    if model_config.name == "gmdgm":
        kwargs["prior_loc_stddev"] = model_config.prior_loc_stddev
    model = MODELS[model_config.name](**kwargs)
    model.create_variables()
    return model


def objective(model_config, *, num_train, num_labelled):
    """config.model + training-set counts -> Objective.

    alpha_scaling: "none" uses model.alpha as the weight of the batch-mean classification
    term (the paper's code, alpha=1.1); "kingma" multiplies it by N_train / N_labelled
    (Kingma et al. 2014 used alpha = 0.1 * N / N_labelled).
    """
    alpha = model_config.alpha
    if model_config.alpha_scaling == "kingma":
        alpha *= num_train / max(num_labelled, 1)
    return Objective(alpha=float(alpha), weight_prior=bool(model_config.weight_prior),
                     num_train=int(num_train))


__all__ = ["DeepGenerativeModel", "GMDGM", "M2", "MODELS", "Objective", "build_model",
           "objective"]
