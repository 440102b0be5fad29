"""The jobs of a study and their folders: what the plan lists and the rules run.

Every job's folder below ``results/STUDY`` is written once, here, as a template with Snakemake's wildcards
(``VAE_RUN``...): the rules' input and output patterns are made from the templates (``workflow/rules/
common.smk``), and each job's ``path`` fills the same template in, so the two cannot drift apart.

Vocabulary (the README defines it once):

- a *cell* is one combination the sweep measures: (problem setting or latent, estimator, n_samples, device,
  seed); a *unit* is what the statistics replicate over (a seed); a *setting* is what a comparison holds
  fixed (a problem and its parameters, or a VAE latent, stage and n_samples).
- ``estimator_id`` is a config entry's name, ``estimator_name`` the registered estimator it builds,
  ``estimator_label`` the name with its options.
- the *reference gradient* is the (exact or high-sample) gradient bias is measured against; the
  *comparator* is the estimator a variance ratio divides by; ``shared_checkpoints`` is the protocol that
  measures every estimator at the checkpoints of one host run per latent.
"""
from __future__ import annotations

from dataclasses import dataclass

#: One synthetic job: every problem for one estimator entry, device and seed.
SYNTHETIC_JOB = "synthetic/{device}/seed{seed}/{estimator}"
#: The runs of one training cell, every seed: a stacked job's folder (``{estimator}`` is the estimator's folder,
#: ``VAERun.estimator_folder``).
VAE_CELL = "vae/runs/{dataset}/{latent}/{estimator}/s{samples}/{device}"
#: One VAE training run.
VAE_RUN = VAE_CELL + "/seed{seed}"
#: One shared-checkpoints job: every applicable estimator at the checkpoints of a latent's host run.
SHARED_CHECKPOINTS_JOB = "vae/shared_checkpoints/{dataset}/{latent}/{device}/seed{seed}"

#: A run of an lr_grid entry lives in ``ESTIMATOR_ID@lrLR/`` (``VAERun.estimator_folder``); the rules' pattern.
LR_SUFFIX = "@lr"
LR_SUFFIX_PATTERN = r"(@lr[0-9.e+-]+)?"


@dataclass(frozen=True)
class SyntheticJob:
    estimator_id: str
    device: str
    seed: int

    @property
    def path(self) -> str:
        return SYNTHETIC_JOB.format(device=self.device, seed=self.seed, estimator=self.estimator_id)


@dataclass(frozen=True)
class VAERun:
    dataset: str
    latent_id: str
    estimator_id: str
    n_samples: int
    device: str
    seed: int
    lr: float | None = None     # set for an entry with lr_grid: one run per learning rate

    @property
    def estimator_folder(self) -> str:
        return self.estimator_id if self.lr is None else f"{self.estimator_id}{LR_SUFFIX}{self.lr:g}"

    @property
    def wildcards(self) -> dict:
        """The values of ``VAE_RUN``'s wildcards (those of ``VAE_CELL`` and the seed)."""
        return {"dataset": self.dataset, "latent": self.latent_id, "estimator": self.estimator_folder,
                "samples": self.n_samples, "device": self.device, "seed": self.seed}

    @property
    def path(self) -> str:
        return VAE_RUN.format(**self.wildcards)


@dataclass(frozen=True)
class StackedJob:
    """The seeds of one training cell as one process (``experiments.vae.stacked``): trained as one batched model
    (``vae.stack_seeds``, where the estimator can be stacked), else one after another (``vae.sequential_seeds``:
    one start-up for the cell, not one per seed)."""

    runs: tuple[VAERun, ...]
    batched: bool = True

    @property
    def folder(self) -> str:
        """The runs' path without the seed: ``VAE_CELL``."""
        return VAE_CELL.format(**self.runs[0].wildcards)


@dataclass(frozen=True)
class SharedCheckpointsJob:
    """Every applicable estimator, each at its samples, measured at the checkpoints of one host run (one
    process: the run's data, model and reference gradients are loaded once for all of them)."""

    host: VAERun
    measured: tuple[tuple[str, tuple[int, ...]], ...]     # (estimator id, n_samples) in config order

    @property
    def path(self) -> str:
        h = self.host
        return SHARED_CHECKPOINTS_JOB.format(dataset=h.dataset, latent=h.latent_id, device=h.device, seed=h.seed)

    @property
    def estimator_ids(self) -> list[str]:
        return [est_id for est_id, _ in self.measured]


@dataclass(frozen=True)
class Exclusion:
    """A combination the study does not run, and why (one row of ``excluded_cells.csv``)."""

    experiment: str
    setting: str
    estimator_id: str
    n_samples: int | None
    reason: str


EXCLUSION_COLUMNS = ["experiment", "setting", "estimator_id", "n_samples", "reason"]


def checkpoint_steps(run: dict) -> list[int]:
    """The steps at which a run (its resolved config) measures variance and writes a snapshot."""
    every, steps = run["variance"]["every"], run["train"]["steps"]
    return sorted({s for s in range(0, steps + 1, every)} | {steps}) if every > 0 else []
