"""Models: `build_model(config.model, ...)` builds the registry's model by name
(gmdgm_tf.registry); `objective` gives the training-only numbers of the loss."""

from gmdgm_tf import registry
from gmdgm_tf.models.base import DeepGenerativeModel, Objective


def build_model(model_config, *, dim, prior, precision="float32", seed=0):
    """A validated config.model + the data's dim and p(y) [num_slots] -> a model with every
    variable created (no objective set: see `objective`). The model's class names the
    config.model fields it reads beyond the shared ones (`CONFIG_FIELDS`)."""
    cls = registry.get(model_config.name).model_class()
    kwargs = dict(dim=dim, prior=prior, hidden_sizes=tuple(model_config.hidden_sizes),
                  z_dim=model_config.z_dim, likelihood=model_config.likelihood,
                  binarize=model_config.binarize,
                  output_stddev=model_config.output_stddev, precision=precision, seed=seed)
    kwargs.update({field: model_config[field] for field in cls.CONFIG_FIELDS})
    model = cls(**kwargs)
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
                     num_train=int(num_train),
                     weight_prior_scale=float(model_config.weight_prior_scale))


__all__ = ["DeepGenerativeModel", "Objective", "build_model", "objective"]
