"""Stacked runs against separate processes, end to end: wall seconds for N runs of one cell trained by N
``python -m experiments.vae.train`` processes against one ``python -m experiments.vae.stacked`` process.

This is what the pipeline chooses between with ``vae.stack_seeds``: one job per seed (rule ``vae_train``) or one
job per cell (rule ``vae_train_stacked``). Every process runs with one thread (``OMP_NUM_THREADS=1``, as those
rules do) and pays what a job pays: interpreter start, imports, data loading, checkpoints and tables.
``benchmarks/bench_stacked_runs.py`` times the training steps alone, in one process. By default the N separate
processes run one after another: one core's share of a pipeline that keeps every core busy with other jobs.
``--jobs J`` runs up to J of them at once instead, the case of a machine with J cores and nothing else to do.

Runs are real and complete (fresh folders every round): ``train.steps`` steps of minibatch 100, 4 samples, with
evaluation and variance measurement off (``eval.every: 0``, ``variance.every: 0``), so that training is what is
timed. Cells: ``digits`` (Gaussian(8) with pathwise, Bernoulli(8) with reinforce leave_one_out) and ``paper``
(binarized MNIST: ``kingma2013`` with pathwise, ``jang2017_bernoulli`` with reinforce leave_one_out; it needs
the data files, from ``--data-dir``, ``GRADVAR_DATA`` or ``../shared/data``, and is skipped with the reason
without them). The two sides alternate round by round (the order reversed every other round). Printed per
cell and N: median seconds of each side, runs x steps per second, and ``separate/stacked``, the median over
rounds of the per-round ratio of wall times (above 1: stacking is faster), with the per-round min / max.

    python benchmarks/bench_stacked_processes.py [--device cpu|cuda] [--sizes digits paper] [--runs 3 8]
        [--steps S] [--rounds R] [--jobs J] [--data-dir DIR] [--quick]

Not a test: it asserts nothing, it prints numbers.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "benchmarks") not in sys.path:
    sys.path.insert(0, str(ROOT / "benchmarks"))

from timing import interleaved, per_round  # noqa: E402  (benchmarks/timing.py)

CPU = torch.device("cpu")  # the jobs run in their own processes: nothing to synchronize here
N_SAMPLES, BATCH = 4, 100
PATHWISE = {"id": "pathwise", "name": "pathwise"}
LOO = {"id": "reinforce_loo", "name": "reinforce", "baseline": "leave_one_out"}
#: size -> (data set, {label: (config layer, estimator entry)}, default steps)
SIZES = {
    "digits": ("digits", {
        "gaussian(8) pathwise": ({"latent": {"family": "gaussian", "dim": 8}}, PATHWISE),
        "bernoulli(8) reinforce_loo": ({"latent": {"family": "bernoulli", "dim": 8}}, LOO),
    }, 500),
    "paper": ("binarized_mnist", {
        "kingma2013 pathwise": ({"preset": "kingma2013"}, PATHWISE),
        "jang2017_bernoulli reinforce_loo": ({"preset": "jang2017_bernoulli"}, LOO),
    }, 200),
}


def config_for(dataset: str, layer: dict, estimator: dict, steps: int, data_dir: Path | None, device: str) -> dict:
    config = {**layer, "dataset": dataset, "estimator": estimator, "n_samples": N_SAMPLES, "device": device,
              "train": {"steps": steps, "batch_size": BATCH}, "eval": {"every": 0}, "variance": {"every": 0}}
    if data_dir is not None:
        config["data_dir"] = str(data_dir)
    return config


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _check(out: Path, proc: subprocess.CompletedProcess | subprocess.Popen, log: Path) -> None:
    status = json.loads((out / "status.json").read_text())["status"] if (out / "status.json").exists() else None
    if proc.returncode != 0 or status != "completed":
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise SystemExit(f"a benchmark run in {out} ended with exit code {proc.returncode}, status {status}:\n{tail}")


def separate(config: Path, seeds: list[int], folder: Path, jobs: int) -> None:
    """One ``experiments.vae.train`` process per seed, at most ``jobs`` at once, to the end."""
    pending, running = list(seeds), []
    while pending or running:
        while pending and len(running) < jobs:
            seed = pending.pop(0)
            out, log = folder / f"seed{seed}", folder / f"seed{seed}.log"
            with log.open("w") as handle:
                proc = subprocess.Popen([sys.executable, "-m", "experiments.vae.train", "--config", str(config),
                                         "--set", f"seed={seed}", "--out", str(out)],
                                        cwd=ROOT, env=_env(), stdout=handle, stderr=subprocess.STDOUT)
            running.append((proc, out, log))
        proc, out, log = running.pop(0)
        proc.wait()
        _check(out, proc, log)


def stacked(config: Path, seeds: list[int], folder: Path) -> None:
    """One ``experiments.vae.stacked`` process training every seed, to the end."""
    log = folder / "stacked.log"
    with log.open("w") as handle:
        proc = subprocess.run([sys.executable, "-m", "experiments.vae.stacked", "--config", str(config),
                               "--seeds", *map(str, seeds), "--out", str(folder / "seed{seed}")],
                              cwd=ROOT, env=_env(), stdout=handle, stderr=subprocess.STDOUT)
    for seed in seeds:
        _check(folder / f"seed{seed}", proc, log)


def bench_cell(label: str, config: dict, n: int, steps: int, rounds: int, jobs: int, tmp: Path) -> None:
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    seeds, rounds_done = list(range(n)), itertools.count()

    def fresh(side: str) -> Path:  # runs resume from their folders: every call gets a new one
        folder = tmp / f"{side}{next(rounds_done)}"
        folder.mkdir()
        return folder

    sides = {"separate": lambda: separate(path, seeds, fresh("separate"), jobs),
             "stacked": lambda: stacked(path, seeds, fresh("stacked"))}
    # one call per side and round (window of 0 s), no warm-up: a call is a whole set of jobs
    times = interleaved(sides, 0.0, rounds, CPU, warmup=0)
    shutil.rmtree(tmp)
    ratios = per_round(times["separate"], times["stacked"])
    sep, stk = statistics.median(times["separate"]), statistics.median(times["stacked"])
    print(f"  {label:34s} {n:2d} {sep:9.2f} {stk:9.2f} {n * steps / sep:10.1f} {n * steps / stk:10.1f}  "
          f"{statistics.median(ratios):6.2f}x  {min(ratios):5.2f} / {max(ratios):5.2f}", flush=True)


def _data_dir(arg: str | None) -> Path | None:
    for candidate in (arg, os.environ.get("GRADVAR_DATA"), ROOT.parent / "shared" / "data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="the runs' device (default cpu)")
    ap.add_argument("--sizes", nargs="+", default=None, choices=list(SIZES), help="default: digits and paper")
    ap.add_argument("--runs", type=int, nargs="+", default=None, help="N, runs per cell (default: 3 8)")
    ap.add_argument("--steps", type=int, default=None, help="training steps per run (default: digits 500, paper 200)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--jobs", type=int, default=1, help="separate processes at once (default 1: one core's share)")
    ap.add_argument("--data-dir", default=None, help="folder with the binarized MNIST files (paper size)")
    ap.add_argument("--quick", action="store_true", help="smoke run: digits, N=2, 20 steps, one round")
    args = ap.parse_args(argv)
    if args.jobs < 1 or args.rounds < 1 or (args.steps is not None and args.steps < 1):
        ap.error("--jobs, --rounds and --steps must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is available")
    sizes = args.sizes or (["digits"] if args.quick else list(SIZES))
    run_counts = args.runs or ([2] if args.quick else [3, 8])
    rounds = 1 if args.quick else args.rounds
    data_dir = _data_dir(args.data_dir)
    print(f"device {args.device}; separate: one experiments.vae.train process per run, {args.jobs} at once; "
          f"stacked: one experiments.vae.stacked process; one thread each; {rounds} rounds; batch {BATCH}, "
          f"{N_SAMPLES} samples, no evaluation or variance measurement")
    print(f"  {'cell':34s} {'N':>2s} {'separ. s':>9s} {'stack. s':>9s} {'sep. r*s/s':>10s} {'stk. r*s/s':>10s}  "
          f"{'sep/stk':>7s}  per round min / max")
    with tempfile.TemporaryDirectory(prefix="bench_stacked_processes.") as tmp:
        for size in sizes:
            dataset, cells, default_steps = SIZES[size]
            steps = 20 if args.quick else (args.steps or default_steps)
            if dataset != "digits" and data_dir is None:
                print(f"  [{size}] skipped: no data folder (give --data-dir or set GRADVAR_DATA)")
                continue
            print(f"  [{size}] {dataset}, {steps} steps per run")
            for i, (label, (layer, estimator)) in enumerate(cells.items()):
                config = config_for(dataset, layer, estimator, steps, data_dir if dataset != "digits" else None,
                                    args.device)
                for n in run_counts:
                    cell_tmp = Path(tmp) / f"{size}-cell{i}-n{n}"
                    cell_tmp.mkdir()
                    bench_cell(label, config, n, steps, rounds, args.jobs, cell_tmp)


if __name__ == "__main__":
    main()
