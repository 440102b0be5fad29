"""Throughput of stacked runs: runs x steps per second of N runs trained as one batched model
(``experiments.vae.stacked.StackedRuns.train_step``) against the same N runs trained one after another in one
process (``Run.train_step`` of each, as N separate jobs would run them back to back on one device).

For N in (1, 3, 8) and each latent, two sides are timed, interleaved round by round (the order reversed every
other round): ``separate`` (one side step = one ``Run.train_step`` of each of the N runs) and ``stacked`` (one
side step = one stacked step of all N). Each side's rate is ``N / seconds per side step``; the table shows the
best round's rate and the per-round min / median / max, and ``stacked/separate``, the ratio of the best
rates with the per-round ratios as min / median / max. Sizes: ``digits`` (64 inputs, hidden [128] relu:
Gaussian(8) with pathwise, Bernoulli(8) with reinforce leave_one_out) and ``paper`` (784 inputs:
``kingma2013`` Gaussian(20), hidden [500] tanh, pathwise; ``jang2017_bernoulli`` Bernoulli(200), hidden
[512, 256] relu, reinforce leave_one_out). Minibatches of 100, 4 samples. The data are random intensities of
the real data set's size (uniform from a fixed generator, binarized per minibatch as the real runs do, as
``benchmarks/bench_vae_step.py`` does), so no data file is read. Every step is a real training step: own
minibatch, estimator call, backward, Adam step and the divergence checks.

    python benchmarks/bench_stacked_runs.py [--device cpu|cuda] [--sizes digits paper] [--runs 1 3 8]
        [--seconds S] [--rounds R] [--threads T] [--quick]

``--device cuda`` is refused without a GPU; without ``--device`` it times the CPU, then CUDA when present.
Not a test: it asserts nothing, it prints numbers.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from experiments.vae import data as data_mod  # noqa: E402
from experiments.vae.run_config import resolve  # noqa: E402
from experiments.vae.stacked import StackedRuns  # noqa: E402
from experiments.vae.train import Run  # noqa: E402
from random_data import random_dataset, serving  # noqa: E402  (benchmarks/random_data.py)
from timing import interleaved, min_median_max, per_round  # noqa: E402  (benchmarks/timing.py)

BATCH, N_SAMPLES = 100, 4
PATHWISE = {"name": "pathwise"}
LOO = {"name": "reinforce", "baseline": "leave_one_out"}
#: size -> (data set name, inputs, training points, {label: (config layer, estimator entry)})
SIZES = {
    "digits": ("digits", 64, 1500, {
        "gaussian(8) pathwise": ({"latent": {"family": "gaussian", "dim": 8}}, PATHWISE),
        "bernoulli(8) reinforce_loo": ({"latent": {"family": "bernoulli", "dim": 8}}, LOO),
    }),
    "paper": ("mnist", 784, 60000, {
        "kingma2013 pathwise": ({"preset": "kingma2013"}, PATHWISE),
        "jang2017_bernoulli reinforce_loo": ({"preset": "jang2017_bernoulli"}, LOO),
    }),
}
TIMING = {"digits": (0.2, 5), "paper": (0.5, 3)}   # (seconds per window, rounds)
QUICK_TIMING = {"digits": (0.05, 3), "paper": (0.1, 3)}


def configs(layer: dict, dataset: data_mod.Dataset, est: dict, n_runs: int, device) -> list:
    return [resolve({**layer, "dataset": dataset.name, "estimator": est, "n_samples": N_SAMPLES, "seed": seed,
                     "device": str(device), "train": {"batch_size": BATCH}}) for seed in range(n_runs)]


def separate_side(runs: list[Run]):
    def step():
        for run in runs:
            run.train_step()
            run.step += 1  # as Run._run does: the next minibatch, epochs included
    return step


def stacked_side(stack: StackedRuns):
    stack.use(tuple(range(len(stack.runs))))

    def step():
        diverged = stack.train_step()
        if diverged:
            raise RuntimeError(f"a benchmark run diverged: {diverged}")
        for run in stack.runs:
            run.step += 1
    return step


HEADER = (f"  {'latent, estimator':34s} {'N':>2s} {'separate runs*steps/s':>30s} {'stacked runs*steps/s':>30s} "
          f"{'stacked/separate':>16s}  {'per round min / med / max':25s}")


def _rates(n: int, times: list[float]) -> str:
    rates = [n / t for t in times]
    return f"{max(rates):8.1f} ({min_median_max(rates, '.0f', sep='/')})"


def bench(device, sizes, run_counts, timing, tmp: Path) -> None:
    print(f"\ndevice {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {BATCH}, {N_SAMPLES} samples; "
          f"rates: best round (min/median/max over rounds)", flush=True)
    print(HEADER, flush=True)
    for size in sizes:
        name, x_dim, n_train, latents = SIZES[size]
        seconds, rounds = timing[size]
        dataset = random_dataset(name, n_train, x_dim, device)
        print(f" {size} ({x_dim} inputs, {seconds:g} s windows, {rounds} rounds)", flush=True)
        for label, (layer, est) in latents.items():
            for n in run_counts:
                cfgs = configs(layer, dataset, est, n, device)
                with serving(dataset):
                    runs = [Run(c, tmp / f"sep{i}") for i, c in enumerate(cfgs)]
                    stack = StackedRuns(cfgs, [tmp / f"stk{i}" for i in range(n)])
                times = interleaved({"separate": separate_side(runs), "stacked": stacked_side(stack)},
                                    seconds, rounds, device)
                ratios = per_round(times["separate"], times["stacked"])
                best = min(times["separate"]) / min(times["stacked"])
                print(f"  {label:34s} {n:2d} {_rates(n, times['separate']):>30s} {_rates(n, times['stacked']):>30s} "
                      f"{best:15.2f}x  {min_median_max(ratios, '5.2f')}", flush=True)
                del runs, stack


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], help="default: the CPU, then CUDA when present")
    ap.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    ap.add_argument("--runs", nargs="+", type=int, default=[1, 3, 8], help="N, the runs per stack")
    ap.add_argument("--seconds", type=float, help="seconds per timing window (default per size)")
    ap.add_argument("--rounds", type=int, help="rounds per comparison (default per size)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    ap.add_argument("--quick", action="store_true", help="short windows: a smoke run")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is available")
    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    base = QUICK_TIMING if args.quick else TIMING
    timing = {size: (args.seconds or s, args.rounds or r) for size, (s, r) in base.items()}
    with tempfile.TemporaryDirectory() as tmp:
        for name in devices:
            bench(torch.device(name), args.sizes, args.runs, timing, Path(tmp))


if __name__ == "__main__":
    main()
