"""Models: `build_model(config.model, ...)` picks GM-DGM or M2 by name."""

from gmdgm_tf.models.base import DeepGenerativeModel
from gmdgm_tf.models.gmdgm import GMDGM
from gmdgm_tf.models.m2 import M2

MODELS = {"gmdgm": GMDGM, "m2": M2}
PRECISIONS = ("float32", "mixed_bfloat16")


def build_model(model_config, *, dim, prior, num_train, num_labelled, precision="float32",
                seed=0):
    """config.model (+ facts about the data) -> an unbuilt DeepGenerativeModel.

    alpha_scaling: "none" uses model.alpha as the weight of the batch-mean classification
    term (the paper's code, alpha=1.1); "kingma" multiplies it by N_train / N_labelled
    (Kingma et al. 2014 used alpha = 0.1 * N / N_labelled).
    """
    if model_config.name not in MODELS:
        raise ValueError(f"unknown model {model_config.name!r}; choose one of {sorted(MODELS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    alpha = model_config.alpha
    if model_config.alpha_scaling == "kingma":
        alpha *= num_train / max(num_labelled, 1)
    elif model_config.alpha_scaling != "none":
        raise ValueError(f"unknown alpha_scaling {model_config.alpha_scaling!r}; "
                         "choose 'none' or 'kingma'")
    kwargs = dict(dim=dim, prior=prior, hidden_sizes=tuple(model_config.hidden_sizes),
                  z_dim=model_config.z_dim, likelihood=model_config.likelihood, alpha=alpha,
                  num_train=num_train, output_stddev=model_config.output_stddev,
                  weight_prior=model_config.weight_prior, precision=precision, seed=seed)
    if model_config.name == "gmdgm":
        kwargs["prior_loc_stddev"] = model_config.get("prior_loc_stddev", 0.1)
    return MODELS[model_config.name](**kwargs)


__all__ = ["DeepGenerativeModel", "GMDGM", "M2", "MODELS", "build_model"]
