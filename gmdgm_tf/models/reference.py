"""A deliberately naive unlabelled bound: a Python loop over slots, nothing shared.

Each slot re-runs the whole q(z|x,y) network on x (including W_x x) and the decoder, one
slot at a time. It exists to prove that `DeepGenerativeModel.elbo_unlabelled` computes the
same number (tests) and to measure what the vectorised form buys (benchmarks).
"""

import tensorflow as tf


def elbo_unlabelled_naive(model, x, eps=None, aux=None):
    """x: [batch, dim]; eps: optional [batch, num_slots, z_dim]; aux: an auxiliary
    model's draw (a, log q(a|x)), drawn here if None -> U(x) [batch]."""
    aux = model.draw_aux(x) if aux is None else aux
    q_y = tf.nn.softmax(model.q_y_logits(x, None if aux is None else aux[0]))  # [batch, S]
    per_slot = []
    for k in range(model.num_slots):
        y_k = tf.one_hot([k], model.num_slots)                  # [1, num_slots]
        eps_k = None if eps is None else eps[:, k:k + 1]
        per_slot.append(model.elbo(x, y_k, eps_k, aux)[:, 0])   # [batch]
    elbo = tf.stack(per_slot, axis=-1)                          # [batch, num_slots]
    entropy = -tf.reduce_sum(tf.math.multiply_no_nan(tf.math.log(q_y), q_y), -1)  # 0 log 0 = 0
    return tf.reduce_sum(q_y * elbo, -1) + entropy


def loss_naive(model, x_l, y_l, x_u):
    """The training loss with the naive unlabelled bound: every term of compute_losses
    (both bounds, the alpha-weighted classification term, the weight prior), computed
    separately for each batch and each slot."""
    objective = model.objective
    x_u, x_l = model.binarize(x_u), model.binarize(x_l)
    aux_l = model.draw_aux(x_l)
    loss = -tf.reduce_mean(elbo_unlabelled_naive(model, x_u))
    loss -= tf.reduce_mean(model.elbo_labelled(x_l, y_l, aux=aux_l))
    log_q_y = tf.nn.log_softmax(model.q_y_logits(x_l, None if aux_l is None else aux_l[0]))
    loss -= objective.alpha * tf.reduce_mean(tf.gather(log_q_y, y_l, batch_dims=1))
    if objective.weight_prior:
        kernels = [w for w in model.trainable_weights if w.name.startswith("kernel")]
        loss += objective.weight_prior_scale * tf.add_n(
            [0.5 * tf.reduce_sum(tf.square(w)) for w in kernels]) / objective.num_train
    return loss
