"""A deliberately naive unlabelled bound: a Python loop over slots, nothing shared.

Each slot re-runs the whole q(z|x,y) network on x (including W_x x) and the decoder, one
slot at a time. It exists to prove that `DeepGenerativeModel.elbo_unlabelled` computes the
same number (tests) and to measure what the vectorised form buys (benchmarks).
"""

import tensorflow as tf


def elbo_unlabelled_naive(model, x, eps=None):
    """x: [batch, dim]; eps: optional [batch, num_slots, z_dim] -> U(x) [batch]."""
    q_y = model.q_y_given_x(x)
    per_slot = []
    for k in range(model.num_slots):
        y_k = tf.one_hot([k], model.num_slots)                  # [1, num_slots]
        eps_k = None if eps is None else eps[:, k:k + 1]
        per_slot.append(model.elbo(x, y_k, eps_k)[:, 0])        # [batch]
    elbo = tf.stack(per_slot, axis=-1)                          # [batch, num_slots]
    return tf.reduce_sum(q_y.probs_parameter() * elbo, -1) + q_y.entropy()


def loss_naive(model, x_l, y_l, x_u):
    """The training loss with the naive unlabelled bound: every term of compute_losses
    (both bounds, the alpha-weighted classification term, the weight prior), computed
    separately for each batch and each slot."""
    objective = model.objective
    x_u, x_l = model.binarize(x_u), model.binarize(x_l)
    loss = -tf.reduce_mean(elbo_unlabelled_naive(model, x_u))
    loss -= tf.reduce_mean(model.elbo_labelled(x_l, y_l))
    loss -= objective.alpha * tf.reduce_mean(model.q_y_given_x(x_l).log_prob(y_l))
    if objective.weight_prior:
        kernels = [w for w in model.trainable_weights if w.name.startswith("kernel")]
        loss += tf.add_n([0.5 * tf.reduce_sum(tf.square(w)) for w in kernels]) / objective.num_train
    return loss
