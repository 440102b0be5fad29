"""Cluster resources of each job (wall-clock minutes, memory, GPUs), from the config the job reads.

The rules declare them (``resources:`` in ``workflow/rules/*.smk``, through ``workflow/rules/common.smk``), so
every rule has them wherever it runs, and the SLURM profile only says where jobs go. A job's time is the work its
config asks for at a measured cost per unit and device, times ``MARGIN``, plus ``START_MINUTES``::

    training run    steps x STEP + evaluations x iwae_k x EVALUATION_PER_K
                    + variance checkpoints x reference-gradient samples x REFERENCE_SAMPLE
    stacked job     the sum over its seeds
    shared ckpts    host checkpoints x max_estimates x sum of the measured n_samples x ESTIMATE_SAMPLE
    synthetic       seeds x problem settings x n_samples x CELL

A stacked job of N seeds asks N runs' time: stacking only saves time (3 seeds stacked ran at 2.2-2.4x the
throughput of 3 separate runs on an H200, ``results/gpu_check/summary.md``), so the sum is an upper bound. The
unit costs are the slowest measured at the paper's model sizes (784 pixels, the presets' networks; sources
below). On a CPU (compute-bound) a VAE unit cost is scaled by the model's size and minibatch against the
measured one's (``model_scale``); a GPU at these sizes is launch-bound, so its costs are not scaled down for
smaller models. A job that ran out of time asks ``attempt`` times as much when the profile retries it; a VAE run
stopped at its limit loses nothing (SLURM's warning makes it checkpoint and exit 75, the retry resumes it).
"""
from __future__ import annotations

import math
from itertools import pairwise

from experiments.config.jobs import checkpoint_steps
from experiments.synthetic.study import iter_problems
from experiments.synthetic.study import parse_settings as parse_synthetic_settings
from experiments.vae.latent import LatentSpec

#: Start-up (interpreter, imports, data loading or its first download) and the last writes of any job.
START_MINUTES = 10
#: Over every measured cost below: a cluster node slower than the machines measured, a loaded file system.
MARGIN = 1.5

#: Seconds of one training step of one run, ``benchmarks/bench_vae_step.py`` at the paper sizes (batch 100).
#: cuda: 3.6-15.6 ms for every estimator on an H200 (``results/gpu_check/step.log``; IndeCateR the slowest).
#: cpu (one thread, 2 cores shared and loaded): 20-45 ms for REINFORCE and the relaxations, 85-139 ms for RELAX;
#: IndeCateR's 2-4 s a step at these sizes is trained by no shipped study on a CPU (``train: false``).
STEP_SECONDS = {"cuda": 0.016, "cpu": 0.14}
#: Seconds of one test-set evaluation (10,000 images) per IWAE sample (``eval.iwae_k``). cuda: 0.85-0.88 s at
#: k = 1000 on an H200 (``results/gpu_check/slice.csv``). cpu: 47-60 s at k = 1000 for 500 images
#: (``benchmarks/bench_evaluation.py``, loaded), so up to 1200 s for 10,000.
EVALUATION_SECONDS_PER_K = {"cuda": 0.001, "cpu": 1.2}
#: Seconds of a run's variance checkpoint per reference-gradient sample (``variance.reference_gradient``:
#: n_samples x n_estimates; the run's own estimates there cost far less). cpu: 34-35 s for 50 x 100 samples
#: (``benchmarks/bench_checkpoint_measurement.py``, loaded). cuda: not measured; a tenth of the CPU's (an H200
#: evaluates the bound over 1000x faster than one CPU thread).
REFERENCE_SAMPLE_SECONDS = {"cuda": 0.0007, "cpu": 0.007}
#: Seconds of one sample of one gradient estimate in a shared-checkpoints job (the reference is read from the
#: host's checkpoint). cpu: 100 estimates x 4 samples of two estimators took 5.9-26.5 s
#: (``bench_checkpoint_measurement``, loaded): up to 33 ms a sample. cuda: not measured; a tenth of the CPU's.
ESTIMATE_SAMPLE_SECONDS = {"cuda": 0.0033, "cpu": 0.033}
#: Seconds of one synthetic cell (a problem setting at one n_samples, every parameter) of one seed. cpu: one
#: seed of the paper config (110 cells, 2,000-32,000 estimates each) took 49-273 s for exact, pathwise, relax,
#: gumbel_rao and reinforce_delta_1 (``python -m experiments.synthetic``, loaded): up to 2.5 s a cell. cuda: the
#: tiny study's synthetic cells ran at 0.15-0.70x the CPU's speed on an H200 (launch-bound;
#: ``results/gpu_check/summary.md``): 6.7x the CPU's.
CELL_SECONDS = {"cuda": 17.0, "cpu": 2.5}

#: Memory (MB): what the process holds before any work (interpreter, torch; on cuda also the CUDA libraries and
#: context in host memory, not measured here), then per job. Measured peak resident sets on one CPU thread
#: (``/usr/bin/time``): a paper-sized training run (jang2017's network on binarized MNIST, the paper's variance
#: settings) 2.7 GB, the chunked k = 1000 evaluation 245 MB more (``bench_evaluation``), a digits run 0.5 GB; a
#: shared-checkpoints job of 13 estimators on that network at mnist.yaml's settings 2.0 GB; one seed of the paper
#: config's synthetic study 0.6-2.4 GB (exact, pathwise, relax, gumbel_rao, reinforce_delta_1).
PROCESS_MEM_MB = {"cpu": 1000, "cuda": 4000}
TRAINING_MEM_MB_PER_RUN = 3000
#: A shared-checkpoints job's measurement passes are budgeted (``encoder_gradient.MEASUREMENT_MEMORY_BYTES``:
#: 64 MB on CPU, or one estimate, 170-200 MB with the reference's samples at the paper's sizes).
SHARED_CHECKPOINTS_MEM_MB = 4000
SYNTHETIC_MEM_MB = 3000
#: The rules that read the study's tables (aggregate; figures and tables_html, the report's): pandas and
#: matplotlib over CSV tables of at most tens of MB; far more time than they take (the whole default study, these
#: three included, runs in about ten minutes on 2 cores).
AGGREGATE_MINUTES = 30
AGGREGATE_MEM_MB = 4000
REPORT_MINUTES = 30
REPORT_MEM_MB = 4000
#: The figures rule draws its figures in up to this many processes (Snakemake lowers it to ``--cores``). More
#: would not help: the claim figure alone is about a third of the drawing (15 of 42 s on the default study).
FIGURE_PROCESSES = 4

#: The model and minibatch the CPU's VAE unit costs were measured on: ``jang2017_bernoulli``, 200 latents,
#: hidden layers [512, 256], 784 pixels (``decoder_weights``), batch 100.
REFERENCE_WEIGHTS = 200 * 256 + 256 * 512 + 512 * 784
REFERENCE_BATCH = 100
#: Pixels of the largest data set (MNIST's 28 x 28): the plan reads no data, so smaller images are over-asked.
PIXELS = 784


def device_kind(device: str) -> str:
    """``cuda`` for ``cuda`` and ``cuda:N``, else ``cpu``: the keys of the unit costs."""
    return "cuda" if device.startswith("cuda") else "cpu"


def gpus(device: str) -> int:
    """GPUs a job on ``device`` asks for (one for ``cuda`` or ``cuda:N``: the job sees the one it was given)."""
    return 1 if device_kind(device) == "cuda" else 0


def minutes(seconds: float, attempt: int = 1) -> int:
    """The time limit of a job estimated at ``seconds``, on its ``attempt``-th try."""
    return attempt * math.ceil(START_MINUTES + MARGIN * seconds / 60)


def decoder_weights(run: dict) -> int:
    """Weights of a run's decoder (its encoder mirrors it): latent, hidden layers reversed, ``PIXELS``."""
    widths = [LatentSpec(**run["latent"]).flat_dim, *reversed(run["model"]["hidden"]), PIXELS]
    return sum(a * b for a, b in pairwise(widths))


def model_scale(run: dict, batch: int | None) -> float:
    """A VAE unit cost of this run's model and minibatch (``batch`` images; None: a whole data set) relative to
    the measured one's, on the run's device: on a CPU the decoder's weights times the batch, on a GPU 1."""
    if device_kind(run["device"]) == "cuda":
        return 1.0
    return decoder_weights(run) / REFERENCE_WEIGHTS * (1.0 if batch is None else batch / REFERENCE_BATCH)


def run_seconds(run: dict) -> float:
    """The estimated seconds of one training run, from its resolved config (``Plan.job_config``)."""
    kind = device_kind(run["device"])
    steps, every = int(run["train"]["steps"]), int(run["eval"]["every"])
    evaluations = steps // every + 1 if every > 0 else 1
    reference = run["variance"]["reference_gradient"]
    reference_samples = int(reference["n_samples"]) * int(reference["n_estimates"])
    return (steps * STEP_SECONDS[kind] * model_scale(run, int(run["train"]["batch_size"]))
            + evaluations * int(run["eval"]["iwae_k"]) * EVALUATION_SECONDS_PER_K[kind] * model_scale(run, None)
            + len(checkpoint_steps(run)) * reference_samples * REFERENCE_SAMPLE_SECONDS[kind]
            * model_scale(run, int(run["variance"]["batch_size"])))


def training_minutes(runs: list[dict], attempt: int = 1) -> int:
    """The time limit of a training job: one run, or the seeds of a stacked job (their sum)."""
    return minutes(sum(run_seconds(run) for run in runs), attempt)


def training_mem_mb(device: str, runs: int) -> int:
    """Memory of a training job on ``device`` of ``runs`` runs (one, or a stacked job's seeds)."""
    return PROCESS_MEM_MB[device_kind(device)] + TRAINING_MEM_MB_PER_RUN * runs


def shared_checkpoints_mem_mb(device: str) -> int:
    return PROCESS_MEM_MB[device_kind(device)] + SHARED_CHECKPOINTS_MEM_MB


def synthetic_mem_mb(device: str) -> int:
    return PROCESS_MEM_MB[device_kind(device)] + SYNTHETIC_MEM_MB


def shared_checkpoints_seconds(job: dict, host: dict) -> float:
    """The estimated seconds of a shared-checkpoints job (its config) at the checkpoints of its host run (the
    host's resolved config: its checkpoints, ``variance.max_estimates`` and ``variance.batch_size``)."""
    samples = sum(int(n) for entry in job["estimators"] for n in entry["n_samples"])
    variance = host["variance"]
    per_sample = ESTIMATE_SAMPLE_SECONDS[device_kind(host["device"])] * model_scale(host, int(variance["batch_size"]))
    return len(checkpoint_steps(host)) * int(variance["max_estimates"]) * samples * per_sample


def synthetic_cells(settings: dict | None) -> int:
    """The (problem setting, n_samples) cells one seed of a synthetic job measures, from ``synthetic.settings``
    (every estimator's job has the same; an estimator that does not apply to one skips it quickly)."""
    parsed = parse_synthetic_settings(settings)
    return sum(1 for _ in iter_problems(parsed.problems)) * len(parsed.n_samples)


def synthetic_seconds(device: str, seeds: int, cells: int) -> float:
    """The estimated seconds of a synthetic job: ``seeds`` seeds, each measuring ``cells`` cells."""
    return seeds * cells * CELL_SECONDS[device_kind(device)]
