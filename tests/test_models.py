"""Distribution shapes, and both ELBO forms against an independent NumPy computation."""

import dataclasses

import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from gmdgm_tf import models, registry

B, D, Z, H, A, P = 4, 12, 3, (7, 5), 2, 3   # A: aux_dim, P: aux_predict_samples
PRIOR = np.array([0.3, 0.3, 0.1, 0.1, 0.1, 0.1])
K = len(PRIOR)
AUXILIARY = ("agmdgm", "am2")
GM_PRIOR = ("gmdgm", "agmdgm")  # learnt p(z|y); the others N(0, I) and a decoder on [y, z]


def tiny_model(name, likelihood="bernoulli", precision="float32", binarize=True):
    cfg = ml_collections.ConfigDict(dict(
        name=name, hidden_sizes=H, z_dim=Z, likelihood=likelihood, binarize=binarize, alpha=1.1,
        alpha_scaling="none", output_stddev=0.3, weight_prior=True, prior_loc_stddev=0.5,
        aux_dim=A, aux_predict_samples=P, weight_prior_scale=1.0))
    model = models.build_model(cfg, dim=D, prior=PRIOR, precision=precision, seed=1)
    model.objective = models.objective(cfg, num_train=1000, num_labelled=10)
    x = np.random.RandomState(0).rand(B, D).astype(np.float32)
    return model, x


def assert_shapes(dist, batch, event):
    assert tuple(dist.batch_shape) == batch, f"batch {dist.batch_shape} != {batch}"
    assert tuple(dist.event_shape) == event, f"event {dist.event_shape} != {event}"


@pytest.mark.parametrize("name", registry.NAMES)
def test_distribution_shapes(name):
    model, x = tiny_model(name)
    assert registry.name_of(model) == name
    assert_shapes(model.q_y_given_x(x), (B,), ())
    assert model.q_y_given_x(x).logits.shape == (B, K)
    all_slots = tf.eye(K)
    aux = model.draw_aux(x)
    a = None
    if name in AUXILIARY:
        assert_shapes(model.q_a_given_x(x), (B,), (A,))
        a = aux[0]
        assert a.shape == (B, A) and aux[1].shape == (B,)
        assert model.q_y_logits(x, a).shape == (B, K)
    else:
        assert aux is None
    q_z = model.q_z_given_xy(x, all_slots, a)
    assert_shapes(q_z, (B, K), (Z,))
    assert_shapes(model.q_z_given_xy(x, tf.one_hot([[0]] * B, K), a), (B, 1), (Z,))
    z = q_z.sample(seed=(1, 2))
    assert_shapes(model.p_x_given_yz(all_slots, z), (B, K), (D,))
    if name in AUXILIARY:
        assert_shapes(model.p_a_given_xyz(x, all_slots, z), (B, K), (A,))
    p_z = model.p_z_given_y(all_slots)
    if name in GM_PRIOR:
        assert_shapes(p_z, (K,), (Z,))
    else:
        assert_shapes(p_z, (), (Z,))
    embedding = model.embed(x)
    assert embedding["slot"].shape == (B,) and embedding["z_mean"].shape == (B, Z)
    assert model.elbo(x, all_slots).shape == (B, K)
    assert model.elbo_unlabelled(x).shape == (B,)
    assert model.elbo_labelled(x, np.arange(B) % K).shape == (B,)
    assert model(x).shape == (B, K)
    assert model.sample(2, 5, seed=(0, 1)).shape == (5, D)
    assert model.reconstruct(x).shape == (B, D)


# ----------------------------------------------------- independent NumPy reference


def dense(layer, h, relu):
    out = h @ layer.kernel.numpy() + layer.bias.numpy()
    return np.maximum(out, 0) if relu else out


def mlp(net, h):
    for layer in net.hidden:
        h = dense(layer, h, relu=True)
    return h if net.head is None else dense(net.head, h, relu=False)


def slot_mlp(net, h, y_onehot, shared=None):
    """The unsplit first layer: [h, y(, shared)] @ [[W_x], [W_y](, [W_shared])] + b."""
    parts, inputs = [net.first_x.kernel.numpy(), net.first_y.numpy()], [h, y_onehot]
    if shared is not None:
        parts.append(net.first_shared.kernel.numpy())
        inputs.append(shared)
    kernel = np.concatenate(parts, 0)
    first = np.maximum(np.concatenate(inputs) @ kernel + net.first_x.bias.numpy(), 0)
    return mlp(net.rest, first)


def gaussian_head(out):
    """[2d] -> (loc, scale) as base.diagonal_normal: softplus scale + 1e-4."""
    d = len(out) // 2
    return out[:d], np.log1p(np.exp(out[d:])) + 1e-4


def log_normal(v, loc, scale):
    return np.sum(-0.5 * ((v - loc) / scale) ** 2 - np.log(scale) - 0.5 * np.log(2 * np.pi))


def reference_aux(model, x, eps_a):
    """(a, log q(a|x)) for ONE example, a = mu(x) + sigma(x) * eps_a, by hand."""
    loc, scale = gaussian_head(mlp(model.a_encoder, x))
    a = loc + scale * eps_a
    return a, log_normal(a, loc, scale)


def inference_input(x, a):
    return x if a is None else np.concatenate([x, a])


def log_softmax(a):
    a = a - a.max()
    return a - np.log(np.exp(a).sum())


def reference_q_z(model, x, a, y):
    """q(z|(a,)x,y)'s (loc, scale) for ONE example and the one-hot y, by hand."""
    out = mlp(model.z_head, slot_mlp(model.z_encoder, inference_input(x, a), y))
    return gaussian_head(out)


def reference_p_z(model, name, k):
    """p(z|y=k)'s (loc, scale): the learnt slot (GM priors), else N(0, I)."""
    if name in GM_PRIOR:
        return model.prior_loc.numpy()[k], np.exp(0.5 * model.prior_log_var.numpy()[k])
    return np.zeros(Z), np.ones(Z)


def reference_decoder(model, name, z, y):
    """p(x|z) (GM priors) or p(x|y,z)'s logits for ONE z and the one-hot y, by hand."""
    if name in GM_PRIOR:
        return mlp(model.decoder, z)
    return mlp(model.decoder_head, slot_mlp(model.decoder, z, y))


def reference_elbo(model, name, x, k, eps, likelihood, aux=None):
    """L(x, y=k) for ONE example and ONE slot, written out by hand in float64.
    aux: (a, log q(a|x)) of `reference_aux` for the auxiliary models."""
    y = np.eye(K)[k]
    a = None if aux is None else aux[0]
    loc, scale = reference_q_z(model, x, a, y)
    z = loc + scale * eps
    aux_terms = 0.0
    if name in AUXILIARY:  # + log p(a|y,z) (AGM-DGM) or p(a|x,y,z) (AM2) - log q(a|x)
        shared = x if name == "am2" else None
        p_a = gaussian_head(mlp(model.a_head, slot_mlp(model.a_decoder, z, y, shared)))
        aux_terms = log_normal(a, *p_a) - aux[1]
    logits = reference_decoder(model, name, z, y)
    p_loc, p_scale = reference_p_z(model, name, k)
    if likelihood == "bernoulli":
        log_px = np.sum(x * -np.log1p(np.exp(-logits)) + (1 - x) * -np.log1p(np.exp(logits)))
    else:
        s = np.log1p(np.exp(model.pixel_log_scale.numpy())) + 1e-3
        log_px = np.sum(-0.5 * ((x - logits) / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi))
    kl = np.sum(np.log(p_scale / scale) + (scale ** 2 + (loc - p_loc) ** 2)
                / (2 * p_scale ** 2) - 0.5)
    return log_px - kl + np.log(PRIOR[k]) + aux_terms


def randomise(model, seed):
    """Every trainable weight (kernels, biases, the prior's means and log-variances, the
    pixel scale) to random values: fresh zeros would hide a mistake that multiplies them."""
    rng = np.random.RandomState(seed)
    for w in model.trainable_weights:
        w.assign(0.4 * rng.randn(*w.shape).astype(np.float32))


def aux_draws(model, x, seed):
    """(the model's draw of a for x, [the same by hand per example]) from one fixed noise;
    (None, [None] * B) for a model without a."""
    if model.aux_dim == 0:
        return None, [None] * B
    eps_a = np.random.RandomState(seed).randn(B, A).astype(np.float32)
    return (model.draw_aux(x, eps=eps_a),
            [reference_aux(model, x[b].astype(np.float64), eps_a[b].astype(np.float64))
             for b in range(B)])


@pytest.mark.parametrize("name,likelihood", [(n, "bernoulli") for n in registry.NAMES]
                         + [("gmdgm", "gaussian"), ("m2", "gaussian"), ("am2", "gaussian")])
def test_unlabelled_bound_matches_slow_per_slot_reference(name, likelihood):
    model, x = tiny_model(name, likelihood)
    randomise(model, seed=11)
    x = np.round(x).astype(np.float32) if likelihood == "bernoulli" else x
    eps = np.random.RandomState(2).randn(B, K, Z).astype(np.float32)
    aux, by_hand = aux_draws(model, x, seed=6)
    fast = model.elbo_unlabelled(x, eps=eps, aux=aux).numpy()
    x64, eps64 = x.astype(np.float64), eps.astype(np.float64)
    for b in range(B):
        a = None if by_hand[b] is None else by_hand[b][0]
        log_q = log_softmax(mlp(model.classifier, inference_input(x64[b], a)))  # q(y|(a,)x)
        q = np.exp(log_q)
        per_slot = [reference_elbo(model, name, x64[b], k, eps64[b, k], likelihood, by_hand[b])
                    for k in range(K)]
        expected = np.sum(q * per_slot) - np.sum(q * log_q)
        np.testing.assert_allclose(fast[b], expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("name", registry.NAMES)
def test_labelled_bound_matches_reference(name):
    model, x = tiny_model(name)
    randomise(model, seed=12)
    x = np.round(x).astype(np.float32)
    y = np.array([0, 5, 2, 3], np.int32)
    eps = np.random.RandomState(3).randn(B, 1, Z).astype(np.float32)
    aux, by_hand = aux_draws(model, x, seed=7)
    fast = model.elbo_labelled(x, y, eps=eps, aux=aux).numpy()
    for b in range(B):
        expected = reference_elbo(model, name, x[b].astype(np.float64), y[b],
                                  eps[b, 0].astype(np.float64), "bernoulli", by_hand[b])
        np.testing.assert_allclose(fast[b], expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("name", registry.NAMES)
def test_embed_reconstruct_and_sample_match_the_networks_by_hand(name):
    """What export serves: q(z|x,y) at the predicted slot (a at q(a|x)'s mean), the
    decoder's mean there, and samples decoded from p(z|y) with the seed's noise."""
    model, x = tiny_model(name)
    randomise(model, seed=13)
    embedding, recon = model.embed(x), model.reconstruct(x).numpy()
    slot = embedding["slot"].numpy()
    np.testing.assert_array_equal(slot, np.argmax(model(x), -1))
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # pylint: disable=unnecessary-lambda-assignment
    for b in range(B):
        x64, y = x[b].astype(np.float64), np.eye(K)[slot[b]]
        a = gaussian_head(mlp(model.a_encoder, x64))[0] if name in AUXILIARY else None
        loc, scale = reference_q_z(model, x64, a, y)
        np.testing.assert_allclose(embedding["z_mean"][b], loc, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(embedding["z_scale"][b], scale, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(recon[b], sigmoid(reference_decoder(model, name, loc, y)),
                                   rtol=1e-4, atol=1e-5)
    k, seed = 2, (3, 4)
    eps = tf.random.stateless_normal((1, 5, Z), seed=seed).numpy()[0].astype(np.float64)
    p_loc, p_scale = reference_p_z(model, name, k)
    expected = [sigmoid(reference_decoder(model, name, p_loc + p_scale * e, np.eye(K)[k]))
                for e in eps]
    np.testing.assert_allclose(model.sample(k, 5, seed=seed), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,plain", [("agmdgm", "gmdgm"), ("am2", "m2")])
def test_without_a_the_auxiliary_bound_is_the_plain_models(name, plain):
    """With every weight that reads a set to zero, the auxiliary model's bound less its
    a-terms (log p(a|.) - log q(a|x)) is the plain model's with the same other weights."""
    aux_model, x = tiny_model(name)
    plain_model, _ = tiny_model(plain)
    def path(model, w):  # the model's own weights' paths start with its name
        return w.path.removeprefix(model.name + "/")

    plain_weights = {path(plain_model, w): w for w in plain_model.weights}
    assert len(plain_weights) == len(plain_model.weights)
    for w in aux_model.weights:
        if path(aux_model, w) in plain_weights:
            value = plain_weights[path(aux_model, w)].numpy()
            if w.shape != value.shape:  # first layers on [x, a]: a's rows are zero
                value = np.concatenate([value, np.zeros((A,) + value.shape[1:])], 0)
            w.assign(value)
    eps = np.random.RandomState(3).randn(B, K, Z).astype(np.float32)
    a, log_q_a = aux_model.draw_aux(x)
    log_p_a = aux_model.p_a_given_xyz(x, tf.eye(K), aux_model.q_z_given_xy(
        x, tf.eye(K), a).mean() + aux_model.q_z_given_xy(x, tf.eye(K), a).stddev() * eps)
    a_terms = log_p_a.log_prob(a[:, None, :]) - log_q_a[:, None]
    np.testing.assert_allclose(aux_model.elbo(x, tf.eye(K), eps, (a, log_q_a)) - a_terms,
                               plain_model.elbo(x, tf.eye(K), eps), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(aux_model.q_y_logits(x, a), plain_model.q_y_logits(x),
                               rtol=1e-5, atol=1e-5)
    assert not np.allclose(a_terms, 0.0)


@pytest.mark.parametrize("name", AUXILIARY)
def test_auxiliary_prediction_averages_fixed_draws_and_ignores_the_batch(name):
    model, x = tiny_model(name)
    x64 = x.astype(np.float64)
    for b in range(B):
        loc, scale = gaussian_head(mlp(model.a_encoder, x64[b]))
        probs = np.mean([np.exp(log_softmax(mlp(model.classifier, inference_input(
            x64[b], loc + scale * e)))) for e in np.asarray(model.aux_predict_eps)], axis=0)
        np.testing.assert_allclose(model(x)[b], probs, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.exp(model.slot_logits(x)).sum(-1), 1.0, rtol=1e-5)
    # the same image, alone or in another batch, gets the same prediction
    np.testing.assert_allclose(model.slot_logits(x[2:3]), model.slot_logits(x)[2:3], atol=1e-5)
    np.testing.assert_allclose(model.slot_logits(x[::-1])[::-1], model.slot_logits(x),
                               atol=1e-5)


@pytest.mark.parametrize("name", AUXILIARY)
def test_auxiliary_prediction_noise_travels_with_the_weights(name, tmp_path):
    """A model built with another seed (a restart candidate's, a loader's) and given these
    weights predicts exactly as this one: the draws' noise is part of the weights."""
    model, x = tiny_model(name)
    model.create_variables()
    path = str(tmp_path / "w.weights.h5")
    model.save_weights(path)
    cfg = ml_collections.ConfigDict(dict(
        name=name, hidden_sizes=H, z_dim=Z, likelihood="bernoulli", binarize=True,
        output_stddev=0.3, prior_loc_stddev=0.5, aux_dim=A, aux_predict_samples=P))
    other = models.build_model(cfg, dim=D, prior=PRIOR, precision="float32", seed=100004)
    other.create_variables()
    assert not np.allclose(other.aux_predict_eps, model.aux_predict_eps)
    other.load_weights(path)
    np.testing.assert_array_equal(other.slot_logits(x), model.slot_logits(x))
    assert "aux_predict_eps" not in {w.name for w in other.trainable_weights}


def fixed_noise(model):
    """No binarisation noise, z = the mean of q(z|x,y) and a = the mean of q(a|x): the loss
    becomes a function of x."""
    model.binarize = lambda v: v
    base_elbo, base_draw = type(model).elbo, type(model).draw_aux
    model.elbo = lambda xx, yy, e=None, aux=None: base_elbo(model, xx, yy, np.zeros(
        (xx.shape[0], yy.shape[-2], Z), np.float32), aux)
    model.draw_aux = lambda xx, eps=None: base_draw(model, xx, np.zeros((xx.shape[0], A),
                                                                        np.float32))


@pytest.mark.parametrize("name", registry.NAMES)
def test_loss_equals_the_naive_sum_of_bounds_alpha_term_and_weight_prior(name):
    """How the step puts the loss together (the reference reuses the model's one-slot
    bound; the bound itself is checked against NumPy above)."""
    from gmdgm_tf.models import reference  # pylint: disable=import-outside-toplevel
    model, x = tiny_model(name)
    fixed_noise(model)
    y = np.array([0, 1], np.int32)
    loss, terms = model.compute_losses(x[:2], y, x)
    # a Python loop over slots, each batch on its own, the weight prior from the kernels
    np.testing.assert_allclose(loss.numpy(), reference.loss_naive(model, x[:2], y, x).numpy(),
                               rtol=1e-5)
    kernels = [w.numpy() for w in model.trainable_weights if w.name.startswith("kernel")]
    # classifier 3, encoder 3 (W_x, W_y, hidden), head 1, decoder 3 (M2: 4, W_x and W_y)
    # and the auxiliary models' q(a|x) 3, p(a|.) 3 (AM2: 4, W_x on x too) + its head's 1
    assert len(kernels) == {"gmdgm": 10, "m2": 11, "agmdgm": 17, "am2": 19}[name]
    np.testing.assert_allclose(terms["weight_prior"].numpy(),
                               0.5 * sum((k ** 2).sum() for k in kernels) / 1000, rtol=1e-5)


@pytest.mark.parametrize("name", AUXILIARY)
def test_the_step_draws_a_once_and_every_term_uses_that_draw(name):
    """The classifier term, L(x_l, y_l) and U(x_u) all read the step's one draw of a: each
    term recomputed at the recorded draw matches, which a second draw would break."""
    model, x = tiny_model(name)
    fixed_noise(model)                      # z at its mean, no binarisation noise
    base_draw, draws = type(model).draw_aux, []
    rng = np.random.RandomState(8)

    def recorded_draw(xx, eps=None):        # a new, non-zero noise at every call
        draws.append(base_draw(model, xx, rng.randn(xx.shape[0], A).astype(np.float32)))
        return draws[-1]
    model.draw_aux = recorded_draw
    y = np.array([0, 1], np.int32)
    _, terms = model.compute_losses(x[:2], y, x)
    assert len(draws) == 1
    a, log_q_a = draws[0]
    aux_l, aux_u = (a[:2], log_q_a[:2]), (a[2:], log_q_a[2:])
    log_q_y = tf.nn.log_softmax(model.q_y_logits(x[:2], aux_l[0])).numpy()
    np.testing.assert_allclose(terms["log_q_y_labelled"], log_q_y[[0, 1], y].mean(), rtol=1e-5)
    np.testing.assert_allclose(terms["elbo_labelled"],
                               np.mean(model.elbo_labelled(x[:2], y, aux=aux_l)), rtol=1e-5)
    np.testing.assert_allclose(terms["elbo_unlabelled"],
                               np.mean(model.elbo_unlabelled(x, aux=aux_u)), rtol=1e-5)
    with pytest.raises(ValueError, match="draw of a"):  # a q_y from another draw is refused
        model.elbo_unlabelled(x, q_y=model.q_y_given_x(x))


@pytest.mark.parametrize("name", registry.NAMES)
def test_unsupervised_step_has_no_labelled_terms(name):
    model, x = tiny_model(name)
    _, terms = model.compute_losses(np.zeros((0, D), np.float32), np.zeros((0,), np.int32), x)
    assert "elbo_labelled" not in terms and np.isfinite(terms["loss"].numpy())


@pytest.mark.parametrize("name", registry.NAMES)
def test_mixed_bfloat16_keeps_bounds_float32_and_close(name):
    fp32, x = tiny_model(name)
    bf16, _ = tiny_model(name, precision="mixed_bfloat16")
    bf16.set_weights(fp32.get_weights())
    eps, eps_a = np.zeros((B, K, Z), np.float32), np.ones((B, A), np.float32)
    a, b = (m.elbo_unlabelled(x, eps=eps, aux=m.draw_aux(x, eps=eps_a)) for m in (fp32, bf16))
    assert b.dtype == tf.float32 and bf16.classifier.hidden[0].kernel.dtype == "float32"
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=2e-2)


def test_the_weight_prior_term_scales_with_its_weight_alone():
    model, x = tiny_model("m2")
    fixed_noise(model)
    y = np.array([0, 1], np.int32)
    loss, terms = model.compute_losses(x[:2], y, x)
    model.objective = dataclasses.replace(model.objective, weight_prior_scale=0.5)
    half_loss, half_terms = model.compute_losses(x[:2], y, x)
    np.testing.assert_allclose(half_terms["weight_prior"], 0.5 * terms["weight_prior"],
                               rtol=1e-6)
    np.testing.assert_allclose(loss - half_loss, 0.5 * terms["weight_prior"], rtol=1e-4)
    assert terms["weight_prior"] > 0


def test_objective_scales_alpha_only_when_asked():
    cfg = ml_collections.ConfigDict(dict(alpha=0.1, alpha_scaling="kingma", weight_prior=True,
                                         weight_prior_scale=1.0))
    assert models.objective(cfg, num_train=1000, num_labelled=10).alpha == pytest.approx(10.0)
    cfg.weight_prior_scale = 0.5  # the swapped pair of the authors' M2 script
    assert models.objective(cfg, num_train=1000, num_labelled=10).weight_prior_scale == 0.5
    cfg.weight_prior_scale = 1.0
    cfg.alpha_scaling = "none"
    assert models.objective(cfg, num_train=1000, num_labelled=10) == models.Objective(
        alpha=0.1, weight_prior=True, num_train=1000)


def test_loss_needs_an_objective_but_inference_does_not():
    model, x = tiny_model("gmdgm")
    model.objective = None
    assert model(x).shape == (B, K)  # a model loaded for inference never needs one
    with pytest.raises(ValueError, match="set model.objective"):
        model.compute_losses(x[:2], np.array([0, 1], np.int32), x)


@pytest.mark.parametrize("name", ["gmdgm", "m2"])
def test_vectorised_bound_equals_naive_slot_loop(name):
    """The all-slots broadcast equals a Python loop over slots of the one-slot bound (the
    bound itself is checked against NumPy above)."""
    from gmdgm_tf.models import reference  # pylint: disable=import-outside-toplevel
    model, x = tiny_model(name)
    eps = np.random.RandomState(4).randn(B, K, Z).astype(np.float32)
    np.testing.assert_allclose(model.elbo_unlabelled(x, eps=eps).numpy(),
                               reference.elbo_unlabelled_naive(model, x, eps).numpy(),
                               rtol=1e-5, atol=1e-4)
    head = model.classifier.head.kernel                  # q(y|x) one-hot: 0 log 0 terms
    head.assign(head * 1e5)
    fast, naive = model.elbo_unlabelled(x, eps=eps), reference.elbo_unlabelled_naive(model, x, eps)
    assert np.isfinite(naive.numpy()).all()
    np.testing.assert_allclose(fast.numpy(), naive.numpy(), rtol=1e-5, atol=1e-4)


def test_fast_log_likelihood_equals_tfp_log_prob():
    """The step's Bernoulli log p(x|.) shortcut is the distribution's own log_prob, extreme
    logits too (the Gaussian has no shortcut: the NumPy bound tests check its log_prob)."""
    model, _ = tiny_model("gmdgm", "bernoulli")
    rng = np.random.RandomState(5)
    out = (rng.randn(B, K, D) * 10).astype(np.float32)
    out[0, 0, :3] = [-60.0, 60.0, 0.0]
    grey = rng.rand(B, 1, D).astype(np.float32)   # the targets of binarize=False
    p_x = model._likelihood(out)  # pylint: disable=protected-access
    for x in (np.round(grey), grey):
        np.testing.assert_allclose(model.log_likelihood(p_x, x).numpy(),
                                   p_x.log_prob(x).numpy(), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("binarize", [True, False])
def test_binarize_draws_binary_pixels_or_keeps_the_grey_levels(binarize):
    """model.binarize: pixels drawn as Bernoulli(x) at each step, or x itself as the target."""
    model, _ = tiny_model("gmdgm", binarize=binarize)
    x = np.tile(np.linspace(0.0, 1.0, D, dtype=np.float32), (4000, 1))
    out = model.binarize(tf.constant(x)).numpy()
    if binarize:
        assert set(np.unique(out)) <= {0.0, 1.0}
        np.testing.assert_allclose(out.mean(axis=0), x[0], atol=0.03)
        assert not np.array_equal(out, model.binarize(tf.constant(x)).numpy())  # afresh
    else:
        np.testing.assert_array_equal(out, x)


def test_one_classifier_pass_serves_both_batches():
    """compute_losses runs q(y|x) once on [x_l; x_u]: the terms equal separate passes."""
    model, x = tiny_model("gmdgm")
    fixed_noise(model)
    y = np.array([0, 1], np.int32)
    eps = np.zeros((B, K, Z), np.float32)
    calls, network = [], model.classifier.call
    model.classifier.call = lambda *a, **kw: (calls.append(1), network(*a, **kw))[1]
    _, terms = model.compute_losses(x[:2], y, x)
    del model.classifier.call                       # back to the class's own
    assert len(calls) == 1, f"q(y|x) ran {len(calls)} times in one step"
    q_y_l = model.q_y_given_x(x[:2])
    np.testing.assert_allclose(terms["log_q_y_labelled"].numpy(),
                               np.mean(q_y_l.log_prob(y).numpy()), rtol=1e-6)
    np.testing.assert_allclose(terms["elbo_unlabelled"].numpy(),
                               np.mean(model.elbo_unlabelled(x, eps=eps).numpy()), rtol=1e-6)
    np.testing.assert_allclose(terms["elbo_labelled"].numpy(), np.mean(model.elbo_labelled(
        x[:2], y, eps=eps[:2, :1]).numpy()), rtol=1e-6)


def test_every_registered_model_builds_from_its_entry_and_is_named_from_it():
    from gmdgm_tf import model_card, plots, registry  # pylint: disable=import-outside-toplevel
    from gmdgm_tf.sweeps import tables  # pylint: disable=import-outside-toplevel
    for name, spec in registry.MODELS.items():
        model, x = tiny_model(name)
        assert isinstance(model, spec.model_class()) and model(x).shape == (B, K)
        assert plots.model_title(f"{name}_fast") == f"{spec.title} fast"
        assert tables.PAPER.get(name) == spec.paper_table1
        card = model_card.model_card({
            "model": name, "dataset": "mnist", "class_names": ["a", "b"],
            "labelled_classes": [0], "image_shape": [2, 2], "num_slots": 3,
            "slot_map_protocol": "heldout", "package_version": "0", "tensorflow_version": "0"})
        assert card.startswith(f"# Model card: {spec.title} ({spec.reference}) on mnist")


def test_the_model_card_says_how_the_epoch_was_selected():
    from gmdgm_tf import model_card  # pylint: disable=import-outside-toplevel
    metadata = {"model": "gmdgm", "dataset": "mnist", "class_names": ["a", "b"],
                "labelled_classes": [0], "image_shape": [2, 2], "num_slots": 3,
                "slot_map_protocol": "heldout", "package_version": "0",
                "tensorflow_version": "0"}
    for selection, selected, says in (("best_validation", 3, "epoch 3 selected on validation"),
                                      ("last", 5, "epoch 5 (the last);")):
        card = model_card.model_card(dict(metadata, training={
            "epochs_run": 5, "selected_epoch": selected, "selection": selection}))
        assert f"**Training.** 5 epochs, {says}" in card
