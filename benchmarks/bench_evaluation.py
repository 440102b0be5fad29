"""Seconds (and peak memory) of a VAE's test-set evaluation at the paper's model sizes: the ELBO and the
k-sample IWAE bound over random binary 784-d images, in chunks of ``eval.batch_size`` images as
``train.Run.evaluate`` does, with the IWAE bound computed the previous way (all k samples of a chunk at
once: k x batch x 784 decoder logits, 1.5 GB at k=1000 and batch 500) and the current one
(``VAE.iwae_bound``: ``VAE.iwae_sample_chunk`` samples per pass, ``log_w`` kept, one logsumexp).

For each model of ``run_config.PRESETS`` (the anchor papers' three by default) and device (CPU, and CUDA
when available): ``--rounds`` rounds, the ELBO and the two IWAE ways interleaved, the order reversed every
other round (``benchmarks/timing.py``), in the same run;
seconds min / median / max, the ratio previous / chunked within a round (above 1: chunked is faster), and
each way's peak memory over its rounds, above what was held before it: the process's resident set on CPU
(``VmHWM`` less ``VmRSS``, the peak reset through ``/proc/self/clear_refs`` before each measurement; Linux
only, else nan), the allocator's on CUDA.

    python benchmarks/bench_evaluation.py [--rounds 2] [--images 10000] [--k 1000] [--batch 500] \
        [--threads 1] [--presets kingma2013 ...] [--devices cpu cuda]

At 10k images and k=1000 one IWAE pass costs about 1e13 decoder flops: minutes per model and way on one
CPU core. ``--images`` scales every column but the memory linearly. Not a test: it asserts nothing.
"""
from __future__ import annotations

import argparse
import math

import torch

from estimators.sampling import draw
from experiments.config.typed_config import parse
from experiments.vae.latent import LatentSpec
from experiments.vae.model import VAE
from experiments.vae.run_config import PRESETS
from timing import interleaved, min_median_max, per_round  # benchmarks/timing.py

DEFAULT_PRESETS = ["kingma2013", "jang2017_bernoulli", "jang2017_categorical"]


@torch.no_grad()
def iwae_all_at_once(model: VAE, x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """The previous ``VAE.iwae_bound``: all k samples in one pass, ``[B]``."""
    q = model.posterior(x)
    z = draw(q, k, generator)
    log_w = model.log_likelihood(x, z) + model.prior(q).log_prob(z) - q.log_prob(z)
    return torch.logsumexp(log_w, 0) - math.log(k)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current resident set
    except OSError:
        pass


def _memory_mb(device: torch.device, field: str) -> float:
    """CUDA: the allocator's peak (``VmHWM``) or current (``VmRSS``) allocation; CPU: the process's."""
    if device.type == "cuda":
        fn = torch.cuda.max_memory_allocated if field == "VmHWM" else torch.cuda.memory_allocated
        return fn(device) / 2**20
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def _peak_recorded(fn, device: torch.device, peaks: list[float]):
    """``fn`` that appends its peak MB above the memory held before it to ``peaks`` (its seconds are timed
    around it by ``timing.interleaved``)."""
    def call() -> None:
        _reset_peak(device)
        before = _memory_mb(device, "VmRSS")
        fn()
        peaks.append(_memory_mb(device, "VmHWM") - before)
    return call


def _sides(model: VAE, chunks, k: int, gen: torch.Generator, device: torch.device, peaks: dict) -> dict:
    """The timed sides over the test set's chunks: the ELBO, and the IWAE bound both ways (their peaks recorded)."""
    return {
        "elbo": lambda: [model.elbo(c, gen, 1) for c in chunks],
        "at_once": _peak_recorded(lambda: [iwae_all_at_once(model, c, k, gen) for c in chunks], device,
                                  peaks["at_once"]),
        "chunked": _peak_recorded(lambda: [model.iwae_bound(c, k, gen) for c in chunks], device, peaks["chunked"]),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--k", type=int, default=1000, help="IWAE samples per image")
    ap.add_argument("--batch", type=int, default=500, help="images per chunk (eval.batch_size)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--presets", nargs="*", default=DEFAULT_PRESETS)
    ap.add_argument("--devices", nargs="*", default=["cpu", "cuda"], help="cuda is skipped where unavailable")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    devices = [torch.device(d) for d in args.devices if d != "cuda" or torch.cuda.is_available()]
    print(f"{args.images} random binary images x 784, chunks of {args.batch}; ELBO with 1 sample; IWAE k={args.k}; "
          f"{args.rounds} round(s); {args.threads} CPU thread(s); seconds min / median / max; peak MB above the "
          f"start: resident set on CPU, allocator on CUDA")
    print(f"{'model':22s} {'device':6s} {'chunk':>5s} {'ELBO s':>18s} {'IWAE at once s':>22s} {'IWAE chunked s':>22s} "
          f"{'at once / chunked':>20s} {'peak MB at once':>15s} {'peak MB chunked':>15s}")
    for preset in args.presets:
        spec = PRESETS[preset]
        for device in devices:
            torch.manual_seed(0)
            model = VAE(784, parse(LatentSpec, spec["latent"]), spec["model"]["hidden"],
                        spec["model"]["activation"]).to(device)
            gen = torch.Generator(device=device).manual_seed(0)
            x = torch.bernoulli(torch.full((args.images, 784), 0.13, device=device), generator=gen)
            peaks = {"at_once": [], "chunked": []}
            sides = _sides(model, x.split(args.batch), args.k, gen, device, peaks)
            seconds = interleaved(sides, 0.0, args.rounds, device, warmup=0)  # one call per side and round
            ratios = per_round(seconds["at_once"], seconds["chunked"])
            print(f"{preset:22s} {device.type:6s} {model.iwae_sample_chunk(args.batch):5d} "
                  f"{min_median_max(seconds['elbo']):>18s} {min_median_max(seconds['at_once']):>22s} "
                  f"{min_median_max(seconds['chunked']):>22s} {min_median_max(ratios):>20s} "
                  f"{max(peaks['at_once']):15.0f} {max(peaks['chunked']):15.0f}", flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
