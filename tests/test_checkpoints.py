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
        name="gmdgm", hidden_sizes=(7, 5), z_dim=3, likelihood="bernoulli", binarize=True,
        alpha=1.1, alpha_scaling="none", output_stddev=0.3, weight_prior=True,
        prior_loc_stddev=0.5, weight_prior_scale=1.0))
    if model_cls is None:
        model = models.build_model(cfg, dim=12, prior=PRIOR, seed=1)
    else:
        model = model_cls(dim=12, prior=PRIOR, hidden_sizes=(7, 5), z_dim=3,
                          likelihood="bernoulli", binarize=True, output_stddev=0.3,
                          precision="float32", prior_loc_stddev=0.5, seed=1)
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


def test_each_adam_slot_is_keyed_by_its_variable_as_keras_names_slots():
    """optimizer_variables parses Keras' slot names ('<variable path with _>_<slot>'); a
    Keras that names them otherwise fails here, not as slots keyed by Keras' names."""
    model = tiny()
    model_keys = checkpoints.model_variables(model)
    opt = checkpoints.optimizer_variables(model.optimizer, model_keys)
    counters = ["optimizer/iteration", "optimizer/learning_rate"]
    unmatched = sorted(set(opt) - set(counters) - {
        f"{key}/{slot}" for key in model_keys for slot in ("momentum", "velocity")})
    assert not unmatched, (
        f"Keras {keras.__version__} no longer names an optimizer slot '<variable path with "
        f"_>_<slot>', which checkpoints.optimizer_variables parses: {unmatched[:3]}")
    trainable = [key for key, variable in model_keys.items() if variable.trainable]
    assert sorted(opt) == sorted(counters + [f"{key}/{slot}" for key in trainable
                                             for slot in ("momentum", "velocity")])
    assert len(opt) == len(model.optimizer.variables)


def test_save_restore_round_trip_and_refusals(tmp_path):
    source = tiny()
    state = checkpoints.TrainState(source, str(tmp_path / "a"), keep=2)

    def everything(model):
        """{key: variable} for all a checkpoint must carry: model, Adam, the trackers."""
        keys = checkpoints.model_variables(model)
        found = {**keys, **checkpoints.optimizer_variables(model.optimizer, keys)}
        found.update({f"{n}/{v.name}": v for n, t in model.trackers.items()
                      for v in t.variables})
        return found

    # every value differs from a fresh model's, Adam's counters and the trackers too
    for i, v in enumerate(everything(source).values()):
        v.assign(tf.cast(tf.random.uniform(v.shape, 1, 1000, seed=i), v.dtype))
    state.best_accuracy.assign(0.7)
    state.best_epoch.assign(3)
    state.save(epoch=4, step=7)

    target = tiny()
    restored = checkpoints.TrainState(target, str(tmp_path / "a"), keep=2)
    assert restored.restore() == (4, 7)
    assert (restored.best_accuracy.numpy(), restored.best_epoch.numpy()) == (0.7, 3)
    wanted = everything(source)
    assert len(wanted) > len(checkpoints.model_variables(source)) + 5
    for key, v in everything(target).items():
        np.testing.assert_array_equal(v.numpy(), wanted[key].numpy(), key)
    restored.restore_trackers()                  # fit resets them, then gets the sums back
    for name, tracker in target.trackers.items():
        assert float(tracker.result()) == float(source.trackers[name].result()), name

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
