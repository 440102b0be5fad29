"""Helpers for the tests of estimators that train their own parameters (REBAR, RELAX, RODEO, Double CV):
train-mode calls on replicated problems, and their state and a generator's through a checkpoint's bytes
(``torch.save``/``weights_only`` load), to check that a trained estimator resumes bit for bit."""
from __future__ import annotations

import io

import torch

import estimators


def replicated(problem, replicas: int):
    """``problem`` with every leaf repeated ``replicas`` times along a new first axis: independent estimates in
    one call; returns ``((f, dist), leaves)``."""
    leaves = [p.detach().unsqueeze(0).expand(replicas, *p.shape).clone().requires_grad_(True)
              for p in problem.leaves()]
    return problem.build(*leaves), leaves


def train(est, problem, gen, steps: int, n_samples: int, replicas: int) -> list[torch.Tensor]:
    """``steps`` train-mode calls; each call's gradient estimate (for bit-for-bit checks)."""
    est.train()
    grads = []
    for _ in range(steps):
        (f, dist), leaves = replicated(problem, replicas)
        grads.append(torch.autograd.grad(est(f, dist, n_samples, gen).surrogate, leaves)[0])
    return grads


def checkpoint(est, gen) -> bytes:
    buffer = io.BytesIO()
    torch.save({"est": est.state_dict(), "gen": gen.get_state()}, buffer)
    return buffer.getvalue()


def resume(name, blob, **opts):
    state = torch.load(io.BytesIO(blob), weights_only=True)
    est = estimators.get(name, **opts)
    est.load_state_dict(state["est"])
    gen = torch.Generator()
    gen.set_state(state["gen"])
    return est, gen


def networks_under_global_seeds(name: str, problem, n_samples: int, seeds=(0, 1)):
    """Estimator ``name``'s networks after one eval-mode call with the same generator, under each global seed
    in ``seeds``: a network drawn from torch's global generator would differ between them. Returns the
    estimators (their ``net`` to compare)."""
    built = []
    for global_seed in seeds:
        torch.manual_seed(global_seed)
        est = estimators.get(name)
        est.eval()
        f, dist = problem.build(*problem.leaves())
        est(f, dist, n_samples, torch.Generator().manual_seed(5))
        built.append(est)
    return built
