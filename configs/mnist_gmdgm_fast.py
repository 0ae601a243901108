r"""GM-DGM on the paper's semi-unsupervised MNIST split: the fast recipe (ours, not the paper's).

The split, model, networks, alpha, batch sizes and float32 are the paper's
(`configs/mnist_gmdgm.py`). Five departures, each chosen on the VALIDATION split, never
the test split (results/table1/recipe.md: the runs, and each rule written before its runs):
  * Adam learning rate 1e-3 instead of 3e-4: the paper's rate needs ~100 epochs to
    plateau (~88 % heldout, issue 12); 1e-3 gets further in a fraction of the epochs.
  * 25 extra slots instead of 5 (35 slots). More mixture components than classes let an
    unlabelled digit's styles take several slots instead of two digits sharing one;
    cluster-and-label names each slot afterwards. Against 25 slots, seeds 0-4, validation
    accuracy at epoch 20, mean - SD: 85.3 with 35 slots, 83.6 with 25.
  * A uniform p(y), 1/35 for every slot, instead of the paper's rule (1/10 for each
    labelled-class slot, 1/60 for each of the 30 others). In U(x) every slot's bound
    carries log p(y), so the paper's rule pays an unlabelled example log 6 = 1.8 nats to
    sit in a labelled class's slot rather than an extra one: with it, seed 1's unlabelled
    4s went to the labelled 9's slots. Seeds 0-4, validation accuracy at epoch 20,
    mean - SD: 88.1 with it, 85.3 with the paper's rule (seed 1: 92.4 against 82.6).
    The authors' code also built M2 with a uniform prior.
  * Best of 3 initialisations (train.restarts = 3, train.restart_epochs = 5): each seed
    trains three initialisations for 5 epochs (same split, same batches) and trains on
    the one with the best VALIDATION accuracy at epoch 5, as k-means' n_init does. Seeds
    whose unlabelled digits merge into another class's slots are already the lowest at
    epoch 5. Seeds 0-4, validation accuracy at epoch 20, mean - SD: 90.5 with it, 88.1
    without (seed 4: 91.6 against 86.7). It costs 10 more epochs of compute.
  * A decay tail: after epoch 40 the rate drops tenfold to 1e-4 for 10 epochs
    (optimizer.decay_epoch = 40, decay_factor = 0.1). Seeds 0-4, validation accuracy at
    epoch 50, mean - SD: 93.1 with it, 92.5 at a constant 1e-3 (92.7 after 40 epochs).
    It steadies the selected model more than it improves it: heldout test accuracy, read
    after the choice, 93.9 with it, 94.0 at the constant rate, 93.8 after 40 epochs.
Budget: 50 epochs (60 of compute with the candidates), chosen on VALIDATION accuracy: at
40 epochs at 1e-3 it was still rising (mean over seeds 0-4 at epoch 20 / 30 / 40: 91.4 /
92.4 / 93.3; results/table1/table1.md). A rerun with a larger train.epochs resumes from
the checkpoint and trains on (the decay counts epochs from the run's start).
`--config.data.prior_rule=paper` gives this recipe with the paper's prior;
`--config.train.restarts=1 --config.train.restart_epochs=0` one initialisation per seed;
`--config.optimizer.decay_epoch=0 --config.train.epochs=40` the constant rate of Table 1's
`gmdgm_fast_40ep`, `gmdgm_fast_no_restarts` and `gmdgm_fast_paper_prior`.

  python -m gmdgm_tf.train --config=configs/mnist_gmdgm_fast.py --workdir=runs/gmdgm_fast \
      --config.data.dir=../shared/data/mnist

`--config=configs/mnist_gmdgm_fast.py:smoke` shrinks it to a seconds-long run.
"""

from gmdgm_tf.config import apply_arg, base_config


def get_config(arg=None):
    config = base_config()
    config.model.name = "gmdgm"
    config.optimizer.learning_rate = 1e-3
    config.data.num_extra_slots = 25
    config.data.prior_rule = "uniform"
    config.optimizer.decay_epoch = 40
    config.optimizer.decay_factor = 0.1
    config.train.epochs = 50
    config.train.restarts = 3
    config.train.restart_epochs = 5
    return apply_arg(config, arg)
