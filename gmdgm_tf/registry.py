"""The one registry of models: each model's name, titles, code and published numbers.

config.py (the allowed `model.name`s), models/ (which class builds), plots.py and the
report (titles, the paper's Table 1), and the export's model card read it, so a new model
is one entry here and one small file in models/. Free of TensorFlow: the report and the
config checks import it without loading the models.
"""

import dataclasses
import importlib
from typing import Optional

# Willetts, Roberts & Holmes, Table 1: MNIST test accuracy (%), mean (SD) over 10 runs.
_GROUPS = ("labelled", "unlabelled", "overall")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """name: config.model.name; title: short, for tables and figures; reference: who
    published it; description: one line; class_path: 'module:Class' under gmdgm_tf.models;
    paper_table1: {group: (mean, SD)} in % for _GROUPS, None where the paper has no row."""
    name: str
    title: str
    reference: str
    description: str
    class_path: str
    paper_table1: Optional[dict] = None

    @property
    def full_title(self):
        return f"{self.title} ({self.reference})"

    def model_class(self):
        """The DeepGenerativeModel subclass (imports TensorFlow)."""
        module, _, cls = self.class_path.partition(":")
        return getattr(importlib.import_module(f"gmdgm_tf.models.{module}"), cls)


def _table1(labelled, unlabelled, overall):
    return dict(zip(_GROUPS, (labelled, unlabelled, overall)))


SPECS = (
    ModelSpec("gmdgm", "GM-DGM", "Willetts, Roberts & Holmes",
              "Gaussian-mixture prior p(z|y) learnt per slot, decoder p(x|z)",
              "gmdgm:GMDGM", _table1((93.7, 1.9), (87.4, 4.5), (90.7, 2.0))),
    ModelSpec("m2", "M2", "Kingma et al., 2014",
              "standard-normal prior p(z), decoder p(x|y,z)",
              "m2:M2", _table1((86.3, 2.2), (63.4, 8.3), (74.3, 4.4))),
    ModelSpec("agmdgm", "AGM-DGM", "Willetts, Roberts & Holmes",
              "GM-DGM with an auxiliary latent a: q(a|x), q(y|a,x), q(z|a,x,y), p(a|y,z)",
              "agmdgm:AGMDGM"),
    ModelSpec("am2", "AM2", "Maaloe et al., 2016 (ADGM)",
              "M2 with an auxiliary latent a: q(a|x), q(y|a,x), q(z|a,x,y), p(a|x,y,z)",
              "am2:AM2"),
)
MODELS = {spec.name: spec for spec in SPECS}
NAMES = tuple(MODELS)


def name_of(model) -> str:
    """A built model -> its registered name (by its class, as class_path names it)."""
    cls = type(model).__name__
    return next(spec.name for spec in SPECS if spec.class_path.endswith(":" + cls))


def get(name) -> ModelSpec:
    """The spec of a registered model name (config.validate has refused the others)."""
    return MODELS[name]


def title(name, full=False):
    """'gmdgm' -> 'GM-DGM' (full: with its reference); an unknown name is returned as is."""
    spec = MODELS.get(name)
    if spec is None:
        return str(name)
    return spec.full_title if full else spec.title
