"""Seconds per checkpoint of the shared-checkpoints protocol at the paper's model sizes, with the reference
gradient recomputed by the measuring job (before) and read from the checkpoint (after: the training run
keeps the reference it computed in its snapshot, ``encoder_gradient.ReferenceGradient.to_state``).

For each paper model (``run_config.PRESETS``) on a random binary minibatch of MNIST's size: the time of the
reference gradient with the default settings, and of measuring a few estimators with a fixed number of
estimates (both in ``encoder_gradient_estimates``'s default mode, vectorized where it applies); the
checkpoint's time before = reference + estimators, after = estimators. Timed in the same
run, ``--rounds`` rounds interleaved (the order swapped every other round, ``benchmarks/timing.py``), the
speed-up before / after taken within each round and printed as min / median / max.

A second table times each measured estimator's ``--estimates`` estimates in the loop mode (one estimator
call and one backward pass per estimate) and in the vectorized mode (``encoder_gradient_estimates``'s
default: ``vectorized_chunk`` estimates per pass, through ``VAE.replicated_posterior``), alternating the
order each round; the ratio is loop / vectorized within a round (above 1: vectorized is faster).

    python benchmarks/bench_checkpoint_measurement.py [--rounds 2] [--estimates 100] [--threads 1]

Not a test: it asserts nothing, it prints numbers.
"""
from __future__ import annotations

import argparse
import functools

import torch

import estimators
from experiments.config.typed_config import parse
from experiments.vae.encoder_gradient import (encoder_gradient_estimates, reference_gradient, vectorized_chunk,
                                              why_not_vectorized)
from experiments.vae.latent import LatentSpec
from experiments.vae.model import VAE
from experiments.vae.run_config import PRESETS, ReferenceGradientSettings, VarianceSettings
from timing import interleaved, min_median_max, per_round  # benchmarks/timing.py

CPU = torch.device("cpu")

MEASURED = {"gaussian": [("pathwise", {}), ("reinforce", {"baseline": "leave_one_out"})],
            "bernoulli": [("reinforce", {"baseline": "leave_one_out"}), ("gumbel_softmax", {"temperature": 0.5})],
            "categorical": [("reinforce", {"baseline": "leave_one_out"}), ("gumbel_softmax", {"temperature": 0.5})]}


def _estimates(model: VAE, x: torch.Tensor, measured: list, gen: torch.Generator, args, vectorize=None):
    """A call that measures every estimator of ``measured`` as a checkpoint does (``vectorize=None``: its
    default mode)."""
    mode = {} if vectorize is None else {"vectorize": vectorize}

    def call() -> None:
        for est in measured:
            encoder_gradient_estimates(model, x, est, n_samples=args.samples, n_estimates=args.estimates,
                                       generator=gen, **mode)
    return call


def loop_vs_vectorized(models: dict, x: torch.Tensor, args) -> None:
    """Seconds of each measured estimator's estimates in both modes, same models and minibatch."""
    print(f"\nloop vs vectorized: {args.estimates} estimates x {args.samples} samples per estimator, "
          f"{args.rounds} round(s), seconds min / median / max")
    print(f"{'model':22s} {'estimator':36s} {'per pass':>8s} {'loop s':>20s} {'vectorized s':>20s} "
          f"{'loop / vectorized':>20s}")
    for preset, model in models.items():
        for name, opts in MEASURED[model.latent.family]:
            est = estimators.get(name, **opts)
            if why_not_vectorized(est, {}) is not None:
                continue
            evaluations = est.f_evaluations(model.posterior(x[:1]), args.samples)
            chunk = vectorized_chunk(model, x.shape[0], max(evaluations, args.samples))
            gen = torch.Generator().manual_seed(1)
            sides = {mode: _estimates(model, x, [est], gen, args, vectorize=vectorize)
                     for mode, vectorize in (("loop", False), ("vectorized", True))}
            seconds = interleaved(sides, 0.0, args.rounds, CPU, warmup=0)  # one call per side and round
            ratios = per_round(seconds["loop"], seconds["vectorized"])
            print(f"{preset:22s} {est.describe():36s} {chunk:8d} {min_median_max(seconds['loop']):>20s} "
                  f"{min_median_max(seconds['vectorized']):>20s} {min_median_max(ratios):>20s}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--estimates", type=int, default=100, help="estimates per estimator (fixed, no adaptive stop)")
    ap.add_argument("--samples", type=int, default=4, help="samples per estimate of the measured estimators")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--presets", nargs="*", default=None, help="only these models (default: every preset)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ref_cfg = ReferenceGradientSettings()
    batch = VarianceSettings().batch_size
    print(f"CPU, {args.threads} thread(s); minibatch {batch} x 784; reference: {ref_cfg.n_estimates} estimates x "
          f"{ref_cfg.n_samples} samples; each estimator: {args.estimates} estimates x {args.samples} samples")
    print(f"{'model':22s} {'reference s':>12s} {'estimators s':>13s} {'before s':>10s} {'after s':>9s} "
          f"{'speed-up (min/med/max)':>24s}")
    models = {}
    for preset, spec in PRESETS.items():
        if args.presets and preset not in args.presets:
            continue
        latent = parse(LatentSpec, spec["latent"])
        gen = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        model = models[preset] = VAE(784, latent, spec["model"]["hidden"], spec["model"]["activation"])
        x = torch.bernoulli(torch.full((batch, 784), 0.13), generator=gen)
        measured = [estimators.get(name, **opts) for name, opts in MEASURED[latent.family]]
        sides = {"reference": functools.partial(reference_gradient, model, x, gen, ref_cfg),
                 "estimators": _estimates(model, x, measured, gen, args)}
        seconds = interleaved(sides, 0.0, args.rounds, CPU, warmup=0)  # one call per side and round
        refs, ests = seconds["reference"], seconds["estimators"]
        before = [r + e for r, e in zip(refs, ests, strict=True)]  # before: reference + estimators, same round
        print(f"{preset:22s} {min(refs):12.2f} {min(ests):13.2f} {min(refs) + min(ests):10.2f} {min(ests):9.2f} "
              f"{min_median_max(per_round(before, ests)):>24s}")
    x = torch.bernoulli(torch.full((batch, 784), 0.13), generator=torch.Generator().manual_seed(0))
    loop_vs_vectorized(models, x, args)


if __name__ == "__main__":
    main()
