"""The shared deep generative model for semi-unsupervised learning.

Inference model (every model):
    q(y|x)   = Cat(y; softmax(MLP_y(x)))                   over num_slots class slots
    q(z|x,y) = N(z; mu(x,y), diag sigma^2(x,y))

Generative model (supplied by subclasses via `p_z_given_y` and `p_x_given_yz`):
    GM-DGM:  p(y) = Cat(pi), p(z|y) = N(mu_y, diag sigma_y^2), p(x|z)
    M2:      p(y) = Cat(pi), p(z)   = N(0, I),                 p(x|y,z)

Auxiliary models (aux_dim > 0; AGM-DGM, AM2 after Maaloe et al., 2016) add a latent a:
    q(a|x) = N(a; mu(x), diag sigma^2(x)), and q(y|a,x), q(z|a,x,y) take [x, a] as input;
    the subclass supplies p(a|.) (`p_a_given_xyz`): p(a|y,z) for AGM-DGM, p(a|x,y,z) for AM2.

Bounds (one z sample, analytic KL; one draw a ~ q(a|x) per example, shared by all slots):
    L(x,y) = E_q(z|x,y)[log p(x|y,z)] - KL(q(z|x,y) || p(z|y)) + log p(y)
             [+ log p(a|.) - log q(a|x)]                    (auxiliary models)
    U(x)   = sum_y q(y|x) L(x,y) + H[q(y|x)]                  (exact sum over all slots)
Loss per step, on a labelled batch (x_l, y_l) and an unlabelled batch x_u:
    -(mean L(x_l, y_l) + mean U(x_u) + alpha * mean log q(y_l|x_l))
    + c/2 * sum ||W||^2 / N_train            (Gaussian weight prior; c: weight_prior_scale)
(in the auxiliary models every q(y|.) is q(y|a,x) at the example's draw of a). Their
prediction averages the softmax of q(y|a,x) over `aux_predict_samples` fixed draws of the
noise, a = mu(x) + sigma(x) * eps_i, kept with the weights, so an image's prediction
depends on the image and the weights alone.
alpha and N_train belong to training, not to the model: they live in `Objective`, which
training sets as `model.objective`; a model loaded for inference needs neither.

`elbo` is the only place the bound is written; the labelled and unlabelled forms call it
with one slot per example or with all slots at once ([batch, num_slots], no Python loop).
"""

import dataclasses
import math

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from keras import ops

from gmdgm_tf.models import networks

tfd = tfp.distributions

_MIN_SCALE = 1e-4


def diagonal_normal(out):
    """A network's output [..., 2 * d] -> Independent Normal over [d]: the first half is
    the mean, softplus of the second half (+ a floor) the standard deviation."""
    loc, raw_scale = ops.split(ops.cast(out, "float32"), 2, axis=-1)  # one concat backward
    return tfd.Independent(tfd.Normal(loc, ops.softplus(raw_scale) + _MIN_SCALE), 1)


@dataclasses.dataclass(frozen=True)
class Objective:
    """The training-only numbers of the loss: alpha, and the weight prior's 1/N_train and
    its weight (weight_prior_scale * 1/2 sum ||W||^2 / N_train)."""
    alpha: float
    weight_prior: bool
    num_train: int
    weight_prior_scale: float = 1.0


class DeepGenerativeModel(keras.Model):
    """Base class: inference networks, both ELBO forms, train_step, and the public methods
    that evaluation, plots and export call (`slot_logits`, `call`, `predict_slots`,
    `embed`, `reconstruct`, `sample`).

    Subclasses build their generative networks in `__init__` and implement
    `p_z_given_y(y_onehot)` and `p_x_given_yz(y_onehot, z)` (auxiliary models, built with
    aux_dim > 0, also `p_a_given_xyz(x, y_onehot, z)`); CONFIG_FIELDS names the
    config.model fields their `__init__` takes beyond the shared ones. Build models with
    `models.build_model(config.model, ...)`: the constructor has no defaults of its own, so
    config.base_config stays the one place that gives them.
    """

    CONFIG_FIELDS = ()
    AUX_FIELDS = ("aux_dim", "aux_predict_samples")  # what auxiliary models add to theirs

    def __init__(self, *, dim, prior, hidden_sizes, z_dim, likelihood, binarize,
                 output_stddev, precision, seed, aux_dim=0, aux_predict_samples=0, **kwargs):
        super().__init__(**kwargs)
        prior = np.asarray(prior, np.float64)
        self.dim, self.z_dim, self.num_slots = int(dim), int(z_dim), len(prior)
        self.likelihood = likelihood  # config.LIKELIHOODS, checked by config.validate
        self.dynamic_binarization = likelihood == "bernoulli" and bool(binarize)
        self.objective = None         # an Objective, set before training
        self.hidden_sizes = tuple(hidden_sizes)
        self.output_stddev = output_stddev
        self.net_dtype = "mixed_bfloat16" if precision == "mixed_bfloat16" else "float32"
        self._seed = seed
        self.log_prior = tf.constant(np.log(prior), tf.float32)           # [num_slots]
        self.seed_generator = keras.random.SeedGenerator(seed, name="noise_seed")

        self.classifier = networks.MLP(hidden_sizes, self.num_slots, output_stddev,
                                       seed=seed, dtype=self.net_dtype, name="q_y_given_x")
        self.z_encoder = networks.SlotConditionedMLP(hidden_sizes, self.num_slots,
                                                     seed=seed + 1, dtype=self.net_dtype,
                                                     name="q_z_given_xy")
        self.z_head = networks.MLP((), 2 * self.z_dim, output_stddev, seed=seed + 2,
                                   dtype=self.net_dtype, name="q_z_given_xy_head")
        self.aux_dim = int(aux_dim)
        if self.aux_dim:
            self.a_encoder = networks.MLP(hidden_sizes, 2 * self.aux_dim, output_stddev,
                                          seed=seed + 6, dtype=self.net_dtype,
                                          name="q_a_given_x")
            # The noise of prediction's draws of a [aux_predict_samples, aux_dim]: drawn
            # once from the seed and kept as a (non-trainable) weight, so the weights files,
            # checkpoints and exports carry it and an image's prediction never depends on
            # its batch, its call, or the seed a loaded model was built with.
            eps = np.random.default_rng(seed).standard_normal(
                (int(aux_predict_samples), self.aux_dim)).astype(np.float32)
            self.aux_predict_eps = self.add_weight(
                shape=eps.shape, initializer=keras.initializers.Constant(eps),
                dtype="float32", trainable=False, name="aux_predict_eps")
        if likelihood == "gaussian":
            # Each pixel's scale is softplus(this weight) + 1e-3 (see _likelihood), not its
            # exp, whatever its name says; the name stays so that saved weights,
            # checkpoints and exports made so far still load.
            self.pixel_log_scale = self.add_weight(shape=(self.dim,), initializer="zeros",
                                                   name="pixel_log_scale")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in (
            "loss", "elbo_labelled", "elbo_unlabelled", "log_q_y_labelled",
            "labelled_accuracy", "weight_prior")}

    # --------------------------------------------------------------- distributions

    def _with_aux(self, x, a):
        """The inference networks' input: x [..., dim], or [x, a] with a [..., aux_dim]."""
        return x if a is None else ops.concatenate([x, ops.cast(a, x.dtype)], axis=-1)

    def q_y_logits(self, x, a=None):
        """x: [..., dim], a: [..., aux_dim] (auxiliary models) -> logits of q(y|x) or
        q(y|a,x), [..., num_slots] float32."""
        return ops.cast(self.classifier(self._with_aux(x, a)), "float32")

    def slot_logits(self, x):
        """x: [batch, dim] -> the prediction's log q(y|x) (up to a constant), [batch,
        num_slots] float32; auxiliary models: the log of q(y|a,x)'s softmax averaged over
        the fixed draws of a (aux_predict_eps), normalised."""
        if not self.aux_dim:
            return self.q_y_logits(x)
        q_a = self.q_a_given_x(x)
        eps = ops.convert_to_tensor(self.aux_predict_eps)[:, None, :]      # [P, 1, A]
        a = q_a.mean()[None] + q_a.stddev()[None] * eps                    # [P, B, A]
        x = tf.broadcast_to(x[None], tf.concat([[eps.shape[0]], tf.shape(x)], 0))  # [P,B,dim]
        log_probs = tf.nn.log_softmax(self.q_y_logits(x, a))               # [P, B, S]
        return tf.reduce_logsumexp(log_probs, axis=0) - math.log(eps.shape[0])  # log mean

    def q_y_given_x(self, x):
        """x: [batch, dim] -> the prediction's Categorical (`slot_logits`), batch [batch]."""
        return tfd.Categorical(logits=self.slot_logits(x))

    def q_a_given_x(self, x):
        """Auxiliary models: x [batch, dim] -> Independent Normal, batch [batch], event
        [aux_dim]."""
        return diagonal_normal(self.a_encoder(x))

    def draw_aux(self, x, eps=None):
        """One draw a ~ q(a|x) per example (reparameterised) -> (a [batch, aux_dim],
        log q(a|x) [batch]); None for a model without a (no noise is drawn then).
        eps: optional standard-normal noise [batch, aux_dim]."""
        if not self.aux_dim:
            return None
        q_a = self.q_a_given_x(x)
        loc, scale = q_a.distribution.loc, q_a.distribution.scale
        if eps is None:
            eps = tf.random.stateless_normal(ops.shape(loc), seed=self._next_seed())
        a = loc + scale * eps
        return a, q_a.log_prob(a)

    def q_z_given_xy(self, x, y_onehot, a=None):
        """x: [batch, dim]; y_onehot: [S, num_slots] or [batch, S, num_slots]; a: [batch,
        aux_dim] for auxiliary models (q(z|a,x,y)).

        -> Independent Normal, batch [batch, S], event [z_dim].
        """
        return diagonal_normal(self.z_head(self.z_encoder(self._with_aux(x, a), y_onehot)))

    def build_p_a(self, takes_x):
        """Auxiliary models' generative p(a|.): an MLP on [z, y] (and x where takes_x: x's
        projection is computed once per example, not per slot), a diagonal Gaussian head.
        Subclasses call it in `__init__`."""
        self.p_a_takes_x = takes_x
        self.a_decoder = networks.SlotConditionedMLP(
            self.hidden_sizes, self.num_slots, shared_input=takes_x, seed=self._seed + 7,
            dtype=self.net_dtype, name="p_a_given_xyz" if takes_x else "p_a_given_yz")
        self.a_head = networks.MLP((), 2 * self.aux_dim, self.output_stddev,
                                   seed=self._seed + 8, dtype=self.net_dtype, name="p_a_head")

    def p_a_given_xyz(self, x, y_onehot, z):
        """Auxiliary models: x [batch, dim], z [batch, S, z_dim] -> p(a|y,z) or p(a|x,y,z)
        (`build_p_a`), Independent Normal over [aux_dim], batch [batch, S]."""
        shared = x if self.p_a_takes_x else None
        return diagonal_normal(self.a_head(self.a_decoder(z, y_onehot, shared=shared)))

    def p_z_given_y(self, y_onehot):
        """-> Independent Normal over [z_dim], batch broadcastable to y_onehot.shape[:-1]."""
        raise NotImplementedError

    def p_x_given_yz(self, y_onehot, z):
        """z: [batch, S, z_dim] -> distribution over x, batch [batch, S], event [dim]."""
        raise NotImplementedError

    def _likelihood(self, decoder_out):
        """Decoder output [batch, S, dim] -> p(x|.) with batch [batch, S], event [dim]."""
        out = ops.cast(decoder_out, "float32")
        if self.likelihood == "bernoulli":
            return tfd.Independent(tfd.Bernoulli(logits=out, dtype=tf.float32), 1)
        scale = ops.softplus(self.pixel_log_scale) + 1e-3
        return tfd.Independent(tfd.Normal(out, scale), 1)

    def log_likelihood(self, p_x, x):
        """log p(x|.) summed over pixels: p_x batch [batch, S], x [batch, 1, dim] -> [batch, S].

        The same number as `p_x.log_prob(x)` (tests check it). For the Bernoulli it is
        written as x * logits - softplus(logits): one softplus where TFP's general form
        spends two softplus and two multiplies per pixel, forward and backward, and this
        is the largest elementwise cost of the step (15 slots x 444 pixels per example).
        """
        if self.likelihood == "bernoulli":
            logits = p_x.distribution.logits
            return ops.sum(x * logits - ops.softplus(logits), axis=-1)
        return p_x.log_prob(x)

    def _decoder_mean(self, dist):
        return dist.distribution.probs_parameter() if self.likelihood == "bernoulli" \
            else dist.distribution.loc

    # ---------------------------------------------------------------------- bounds

    def elbo(self, x, y_onehot, eps=None, aux=None):
        """L(x, y) for each example and each given slot.

        x: [batch, dim]; y_onehot: [S, num_slots] or [batch, S, num_slots];
        eps: optional standard-normal noise [batch, S, z_dim] for the z sample;
        aux: auxiliary models' draw (a [batch, aux_dim], log q(a|x) [batch]) from
        `draw_aux`, one per example for every slot; drawn here when not given (None for
        the other models).
        Returns [batch, S].
        """
        aux = self.draw_aux(x) if aux is None else aux
        a = None if aux is None else aux[0]
        q_z = self.q_z_given_xy(x, y_onehot, a)
        loc, scale = q_z.distribution.loc, q_z.distribution.scale
        if eps is None:
            eps = tf.random.stateless_normal(ops.shape(loc), seed=self._next_seed())
        z = loc + scale * eps                                              # [B, S, Z]
        log_px = self.log_likelihood(self.p_x_given_yz(y_onehot, z), x[:, None, :])  # [B, S]
        kl_z = tfd.kl_divergence(q_z, self.p_z_given_y(y_onehot))          # [B, S]
        log_py = ops.matmul(ops.cast(y_onehot, "float32"), self.log_prior[:, None])[..., 0]
        bound = log_px - kl_z + log_py
        if aux is not None:
            log_pa = self.p_a_given_xyz(x, y_onehot, z).log_prob(a[:, None, :])   # [B, S]
            bound += log_pa - aux[1][:, None]
        return bound

    def elbo_labelled(self, x, y, eps=None, aux=None):
        """x: [batch, dim], y: [batch] int -> L(x, y) [batch] (aux: as `elbo`'s; drawn
        here when an auxiliary model gets none)."""
        aux = self.draw_aux(x) if aux is None else aux
        y_onehot = ops.one_hot(y, self.num_slots)[:, None, :]
        return self.elbo(x, y_onehot, eps, aux)[:, 0]

    def elbo_unlabelled(self, x, q_y=None, eps=None, aux=None):
        """x: [batch, dim] -> U(x) [batch], summing L(x, y) over all slots exactly.

        q_y: the Categorical q(y|x) (auxiliary models: q(y|a,x) at aux's draw), computed
        here when not given; aux: as `elbo`'s, drawn here when an auxiliary model gets none
        (then q_y, computed at another draw, cannot be given)."""
        if q_y is not None and aux is None and self.aux_dim:
            raise ValueError("an auxiliary model's q_y needs the draw of a it was computed at")
        aux = self.draw_aux(x) if aux is None else aux
        if q_y is None:
            q_y = tfd.Categorical(logits=self.q_y_logits(x, None if aux is None else aux[0]))
        all_slots = ops.eye(self.num_slots)                                # [S, S]
        elbo_per_slot = self.elbo(x, all_slots, eps, aux)                  # [B, S]
        return ops.sum(q_y.probs_parameter() * elbo_per_slot, axis=-1) + q_y.entropy()

    # ------------------------------------------------------------------- training

    def binarize(self, x):
        """x [batch, dim] in [0, 1] -> binary pixels drawn with probability x (dynamic
        binarisation); the identity for the Gaussian likelihood or with binarize=False."""
        if not self.dynamic_binarization:
            return x
        u = tf.random.stateless_uniform(ops.shape(x), seed=self._next_seed())
        return ops.cast(u < x, x.dtype)

    def _next_seed(self):
        """The model RNG's next seed, distinct per replica under a tf.distribute strategy
        (every replica holds the same RNG state, so it must be folded with the replica id)."""
        seed = self.seed_generator.next()
        seed = tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)  # XLA wants int32
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return seed
        return tf.random.experimental.stateless_fold_in(seed, context.replica_id_in_sync_group)

    def compute_losses(self, x_l, y_l, x_u, objective=None):
        """One step's objective and its terms (all float32 scalars).

        x_l: [B_l, dim] labelled images, y_l: [B_l] int slots, x_u: [B_u, dim] unlabelled
        images (B_l may be 0); objective: an Objective (default: `self.objective`, which
        training sets).
        The labelled and unlabelled batches share one binarisation draw, one draw of a
        (auxiliary models) and one q(y|.) pass on their concatenation: half the kernel
        casts, gradient sums and ops of two separate passes, and a larger matmul.
        """
        objective = objective or self.objective
        if objective is None:
            raise ValueError("set model.objective (an Objective) before computing the loss")
        # Static test: fully unsupervised runs have an empty labelled batch; an unknown
        # size (None, e.g. a per-replica batch under tf.distribute) has labels.
        has_labels = x_l.shape[0] != 0
        x = self.binarize(ops.concatenate([x_l, x_u], axis=0) if has_labels else x_u)
        aux = self.draw_aux(x)                             # one draw of a per example
        logits = self.q_y_logits(x, None if aux is None else aux[0])       # [B_l + B_u, S]
        aux_l = aux_u = aux
        if has_labels:
            sizes = tf.stack([tf.shape(x_l)[0], -1])
            x_l, x_u = tf.split(x, sizes)
            logits_l, logits_u = tf.split(logits, sizes)
            if aux is not None:
                (a_l, a_u), (log_q_l, log_q_u) = (tf.split(t, sizes) for t in aux)
                aux_l, aux_u = (a_l, log_q_l), (a_u, log_q_u)
        else:
            x_u, logits_u = x, logits
        terms = {"elbo_unlabelled": ops.mean(self.elbo_unlabelled(
            x_u, q_y=tfd.Categorical(logits=logits_u), aux=aux_u))}
        loss = -terms["elbo_unlabelled"]
        if has_labels:
            q_y_l = tfd.Categorical(logits=logits_l)
            terms["elbo_labelled"] = ops.mean(self.elbo_labelled(x_l, y_l, aux=aux_l))
            terms["log_q_y_labelled"] = ops.mean(q_y_l.log_prob(y_l))
            # a training metric: auxiliary models' at the step's one draw of a, not averaged
            terms["labelled_accuracy"] = ops.mean(ops.cast(
                ops.cast(ops.argmax(logits_l, -1), "int32") == ops.cast(y_l, "int32"),
                "float32"))
            loss -= terms["elbo_labelled"] + objective.alpha * terms["log_q_y_labelled"]
        if objective.weight_prior:
            terms["weight_prior"] = (objective.weight_prior_scale
                                     * networks.half_sum_of_squared_kernels(self)
                                     / objective.num_train)
            loss += terms["weight_prior"]
        terms["loss"] = loss
        return loss, terms

    def train_step(self, data):
        """data: ((x_l [B_l, dim], y_l [B_l] int), x_u [B_u, dim]), one replica's share of
        data.epoch_dataset's batch -> {term name: running mean over the epoch}."""
        (x_l, y_l), x_u = data
        with tf.GradientTape() as tape:
            loss, terms = self.compute_losses(x_l, y_l, x_u)
            # Gradients are summed across replicas, so each replica's mean is scaled down.
            scaled = loss / tf.distribute.get_strategy().num_replicas_in_sync
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        for name, value in terms.items():
            self.trackers[name].update_state(value)
        return {name: self.trackers[name].result() for name in terms}

    def build(self, input_shape):
        """Nothing to do here: each sub-layer builds itself on first use, and
        `create_variables` runs every path once. (Defined so Keras does not warn that the
        model "has unbuilt state".)"""
        del input_shape

    def create_variables(self):
        """Runs every path once on a dummy batch so that every weight exists (Keras builds
        lazily; checkpoints and load_weights need them all). Draws from the noise RNG
        as one training step does."""
        x = np.zeros((1, self.dim), np.float32)
        self(x)
        self.compute_losses(x, np.zeros((1,), np.int32), x,
                            objective=Objective(alpha=0.0, weight_prior=False, num_train=1))

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, x):
        """x: [batch, dim] in [0, 1] -> q(y|x) slot probabilities [batch, num_slots]."""
        return ops.softmax(self.slot_logits(x))

    def predict_slots(self, x, batch_size=1000):
        """x: [n, dim] (NumPy) -> argmax slot of q(y|x), [n] int."""
        return np.argmax(self.predict(x, batch_size=batch_size, verbose=0), axis=-1)

    # --------------------------------------------------------------- generation

    def embed(self, x):
        """x: [batch, dim] -> {"slot": argmax of q(y|x) [batch] int32, "z_mean",
        "z_scale": q(z|x,y=slot)'s mean and standard deviation [batch, z_dim]}
        (auxiliary models: q(z|a,x,y=slot) at a = the mean of q(a|x))."""
        slot = ops.cast(ops.argmax(self.slot_logits(x), -1), "int32")
        a = self.q_a_given_x(x).mean() if self.aux_dim else None
        q_z = self.q_z_given_xy(x, ops.one_hot(slot, self.num_slots)[:, None, :], a)
        return {"slot": slot, "z_mean": q_z.mean()[:, 0], "z_scale": q_z.stddev()[:, 0]}

    def reconstruct(self, x):
        """x: [batch, dim] -> mean of p(x|y,z) at the predicted slot and z = mean of q(z|x,y),
        [batch, dim]."""
        embedding = self.embed(x)
        y_onehot = ops.one_hot(embedding["slot"], self.num_slots)[:, None, :]
        return self._decoder_mean(self.p_x_given_yz(y_onehot, embedding["z_mean"][:, None]))[:, 0]

    def sample(self, slot, num, seed):
        """Images drawn as the mean of p(x|y,z), z ~ p(z|y=slot) -> [num, dim].

        slot: an int scalar in [0, num_slots); num: a Python int; seed: an int [2] (a
        stateless seed: the same seed gives the same images)."""
        y_onehot = ops.one_hot(ops.full((1, num), slot, dtype="int32"),
                               self.num_slots)                                # [1, num, S]
        p_z = self.p_z_given_y(y_onehot)
        eps = tf.random.stateless_normal((1, num, self.z_dim), seed=seed)
        z = p_z.mean() + p_z.stddev() * eps
        return self._decoder_mean(self.p_x_given_yz(y_onehot, z))[0]
