"""Test-set evaluation: the k-sample IWAE bound chunked over samples is the bound drawn at once, it is a
bound on log p(x) that tightens to it, and the metrics rows carry the evaluation's cost (``eval_seconds``)."""
from __future__ import annotations

import itertools

import pandas as pd
import pytest
import torch

from experiments.config.typed_config import parse
from experiments.vae import train as vae_train
from experiments.vae.latent import LatentSpec
from experiments.vae.model import IWAE_DRAW_BLOCK, VAE
from experiments.vae.run_config import PRESETS, resolve


def _tiny(family_cfg, seed=0):
    """A VAE with 16 inputs, one hidden layer of 12, float64; 5 data points."""
    torch.manual_seed(seed)
    model = VAE(16, parse(LatentSpec, family_cfg), [12], "tanh").double()
    x = torch.bernoulli(torch.full((5, 16), 0.4, dtype=torch.float64), generator=torch.Generator().manual_seed(1))
    return model, x


FAMILIES = [{"family": "gaussian", "dim": 3}, {"family": "bernoulli", "dim": 3},
            {"family": "categorical", "groups": 2, "classes": 3}]


@pytest.mark.parametrize("family", FAMILIES)
def test_the_bound_does_not_depend_on_the_sample_chunking(family):
    """One pass over k samples, or several (whole and partial blocks, a last chunk shorter), with the same
    generator: the same draws, so the same bound to float64 rounding; and the formula written out by hand
    on those draws (blocks of ``IWAE_DRAW_BLOCK`` drawn in order) gives it too."""
    from estimators.sampling import draw

    model, x = _tiny(family)
    k = 95  # not a multiple of the draw block: the last block is short
    bounds = {chunk: model.iwae_bound(x, k, torch.Generator().manual_seed(7), sample_chunk=chunk)
              for chunk in (k, 1000, 10, 30, 37)}
    for chunk, bound in bounds.items():
        assert bound.shape == (5,)
        assert torch.allclose(bound, bounds[k], rtol=1e-12, atol=1e-12), chunk
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        q = model.posterior(x)
        z = torch.cat([draw(q, min(IWAE_DRAW_BLOCK, k - i), gen) for i in range(0, k, IWAE_DRAW_BLOCK)])
        log_w = model.log_likelihood(x, z) + model.prior(q).log_prob(z) - q.log_prob(z)  # [k, B]
        by_hand = log_w.exp().mean(0).log()
    assert torch.allclose(bounds[k], by_hand, rtol=1e-10)
    # Another seed draws other samples: the equality above is not vacuous.
    assert not torch.allclose(model.iwae_bound(x, k, torch.Generator().manual_seed(8), sample_chunk=10), bounds[k])


@pytest.mark.parametrize("family", [{"family": "bernoulli", "dim": 3},
                                    {"family": "categorical", "groups": 2, "classes": 3}])
def test_the_chunked_bound_is_a_bound_on_the_enumerated_log_likelihood(family):
    r"""Closed form: with 8 or 9 latent configurations, :math:`\log p(x) = \log\sum_z p(x|z)p(z)` exactly,
    and so is the relative variance of the weights :math:`v = \sum_z p(x,z)^2/q(z) / p(x)^2 - 1`. The
    k-sample bound, chunked, is :math:`\log p(x)` less a gap of about :math:`v/(2k)`, with a standard
    deviation of about :math:`\sqrt{v/k}` (delta method): it agrees within 5 of those; the ELBO (the k=1
    bound's mean) lies clearly below."""
    model, x = _tiny(family)
    with torch.no_grad():
        q = model.posterior(x)
        latent = model.latent
        if latent.family == "bernoulli":
            support = torch.tensor(list(itertools.product([0.0, 1.0], repeat=latent.dim)), dtype=torch.float64)
        else:
            eye = torch.eye(latent.classes, dtype=torch.float64)
            support = torch.stack([torch.stack([eye[i] for i in combo])
                                   for combo in itertools.product(range(latent.classes), repeat=latent.groups)])
        z = support.unsqueeze(1).expand(support.shape[0], x.shape[0], *support.shape[1:])  # [S, B, *event]
        log_joint = model.log_likelihood(x, z) + model.prior(q).log_prob(z)  # [S, B]
        log_px = torch.logsumexp(log_joint, 0)
        rel_var = torch.logsumexp(2 * log_joint - q.log_prob(z), 0).sub(2 * log_px).exp() - 1
    k = 2000
    bound = model.iwae_bound(x, k, torch.Generator().manual_seed(3), sample_chunk=300)
    z_scores = (bound - (log_px - rel_var / (2 * k))) / (rel_var / k).sqrt()
    assert float(z_scores.abs().max()) < 5, z_scores
    elbo = model.elbo(x, torch.Generator().manual_seed(3), 4000)  # the k=1 bound's mean, to about 0.01
    assert bool((elbo < log_px - 0.05).all())


def test_the_default_sample_chunk_bounds_the_memory_of_a_pass():
    """At the paper's sizes and the evaluation's batch of 500, k=1000 at once would hold ~1.5 GB of logits;
    the default chunk is whole draw blocks and stays under the budget."""
    from experiments.vae.model import IWAE_MEMORY_BYTES

    for spec in PRESETS.values():
        model = VAE(784, parse(LatentSpec, spec["latent"]), spec["model"]["hidden"], spec["model"]["activation"])
        chunk = model.iwae_sample_chunk(500)
        assert chunk % IWAE_DRAW_BLOCK == 0 and 0 < chunk < 1000
        assert chunk * 500 * 784 * 4 < IWAE_MEMORY_BYTES  # the logits alone


def test_metrics_rows_carry_the_evaluation_seconds(tmp_path):
    config = resolve({"latent": {"family": "bernoulli", "dim": 4}, "model": {"hidden": [16]},
                      "estimator": {"name": "reinforce", "baseline": "leave_one_out"}, "n_samples": 2,
                      "train": {"steps": 4}, "eval": {"every": 2, "iwae_k": 25}, "variance": {"every": 0}})
    assert vae_train.train(config, tmp_path / "run") == "completed"
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    # Every split's row (train and test; any other split evaluate() adds) at every evaluation step.
    assert {"train", "test"} <= set(metrics.split) and set(metrics.step) == {0, 2, 4}
    assert metrics.eval_seconds.notna().all() and (metrics.eval_seconds > 0).all()
    test = metrics[metrics.split == "test"]
    assert (test.iwae_k == 25).all() and test.iwae.notna().all()
    # A table without rows keeps the column in its header.
    run = vae_train.Run(config, tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    run.write_tables()
    assert "eval_seconds" in pd.read_csv(tmp_path / "empty" / "metrics.csv").columns
