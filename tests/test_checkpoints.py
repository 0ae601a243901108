"""Checkpoint keys are stable variable paths: new weights do not remap old ones."""

import keras
import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from gmdgm_tf import checkpoints, models, registry

PRIOR = np.full(6, 1 / 6)


def tiny(model_cls=None):
    cfg = ml_collections.ConfigDict(dict(
        name="gmdgm", hidden_sizes=(7, 5), z_dim=3, likelihood="bernoulli", alpha=1.1,
        alpha_scaling="none", output_stddev=0.3, weight_prior=True, prior_loc_stddev=0.5))
    if model_cls is None:
        model = models.build_model(cfg, dim=12, prior=PRIOR, seed=1)
    else:
        model = model_cls(dim=12, prior=PRIOR, hidden_sizes=(7, 5), z_dim=3,
                          prior_loc_stddev=0.5, seed=1)
        model.create_variables()
    model.objective = models.objective(cfg, num_train=100, num_labelled=10)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.optimizer.build(model.trainable_variables)
    return model


class WithExtraWeight(registry.get("gmdgm").model_class()):
    """A GM-DGM with one more weight, created before every network weight (those are
    created when create_variables first runs the networks)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.extra = self.add_weight(shape=(4,), name="extra", initializer="ones")


def test_keys_are_paths_and_do_not_depend_on_creation_order():
    base, extended = tiny(), tiny(WithExtraWeight)
    base_keys = checkpoints.model_variables(base)
    extended_keys = checkpoints.model_variables(extended)
    assert "q_y_given_x/hidden_0/kernel" in base_keys and "noise_rng/state" in base_keys
    assert "prior_loc" in base_keys
    assert set(extended_keys) - set(base_keys) == {"extra"}
    for key, variable in base_keys.items():
        assert tuple(extended_keys[key].shape) == tuple(variable.shape), key
    # a second model in the same process (Keras names it gmdgm_1) keys alike
    assert set(checkpoints.model_variables(tiny())) == set(base_keys)
    opt = checkpoints.optimizer_variables(base.optimizer, base_keys)
    assert "q_y_given_x/hidden_0/kernel/momentum" in opt and "optimizer/iteration" in opt
    assert len(opt) == len(base.optimizer.variables)


def test_save_restore_round_trip_and_refusals(tmp_path):
    source = tiny()
    for v in source.trainable_variables:
        v.assign(tf.random.normal(v.shape, seed=3))
    state = checkpoints.TrainState(source, str(tmp_path / "a"), keep=2)
    state.save(epoch=4, step=7)

    target = tiny()
    restored = checkpoints.TrainState(target, str(tmp_path / "a"), keep=2)
    assert restored.restore() == (4, 7)
    for key, v in checkpoints.model_variables(target).items():
        np.testing.assert_array_equal(v.numpy(),
                                      checkpoints.model_variables(source)[key].numpy(), key)

    # another architecture is refused in one line, not half-restored
    with pytest.raises(checkpoints.CheckpointError, match="does not match this model"):
        checkpoints.TrainState(tiny(WithExtraWeight), str(tmp_path / "a"), keep=2).restore()

    # a checkpoint of the old creation-order format is refused too
    old = tf.train.Checkpoint(model={f"v{i:04d}": v for i, v in enumerate(source.variables)})
    tf.train.CheckpointManager(old, str(tmp_path / "old"), max_to_keep=1).save()
    with pytest.raises(checkpoints.CheckpointError, match="--fresh"):
        checkpoints.TrainState(tiny(), str(tmp_path / "old"), keep=2).restore()


def test_saving_does_not_log_tf_saver_chatter(tmp_path, caplog):
    from absl import logging  # pylint: disable=import-outside-toplevel
    logging.set_verbosity(logging.INFO)
    caplog.set_level("INFO")
    state = checkpoints.TrainState(tiny(), str(tmp_path / "a"), keep=2)
    state.save(epoch=1, step=0)
    assert state.saved()
    assert "Sharding callback duration" not in caplog.text
