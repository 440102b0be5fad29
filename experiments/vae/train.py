"""Train one VAE with one gradient estimator; evaluate and measure gradient variance along the way.

    python -m experiments.vae.train --config config/vae/example.yaml --out results/demo/run \
        [--set "estimator={name: reinforce, baseline: leave_one_out}" --set seed=1 ...]

The config (YAML or JSON) is a ``RunConfig`` (``run_config.py`` has every key and default); ``--set``
overrides one key. In the pipeline, each run's resolved config is written to its folder first and read
from there. The run folder (``run_folder.py``) gets ``config.json``, ``metrics.csv`` (train/test ELBO and the
test IWAE bound at every ``eval.every`` steps), ``variance.csv`` (the encoder-gradient variance of this run's
own estimator at ``variance.every`` steps, protocol ``own_run``, see ``encoder_gradient``), ``status.json``
and ``checkpoints/``.

``Run`` holds the training math (a minibatch, a step, an evaluation, a variance measurement) and the run's
lifecycle methods (resume, evaluate when due, checkpoint, end); ``lifecycle.train_runs`` is the one loop that
calls them, for a run alone and for every member of a stack (``stacked.py``).

Reliability (``tests/test_faults.py`` injects each fault):

- Re-running the same command resumes from the newest intact ``resume_STEP.pt`` and ends with the same
  results as an uninterrupted run (bit-identical on CPU): the training generator, optimizer, estimator
  state and rows so far are in the checkpoint, and evaluations draw from generators seeded by (seed, step).
  A truncated or damaged checkpoint is logged, renamed ``.corrupt`` and skipped for the one before it (or
  a fresh start).
- SIGTERM, SIGINT or SIGUSR1 (preemption; see ``experiments.runtime.preemption``): the run finishes its step,
  checkpoints, writes its tables and ``status.json`` (``preempted`` at the step reached), and exits with
  code 75; re-running resumes it.
- A loss or parameter that becomes NaN/inf stops the run with status ``diverged`` at the step where it
  happened, and exit code 0, so a sweep goes on. The step is recorded on the device and read at the loop's
  boundaries (``divergence.py``): no host sync per training step.
- Every file is written atomically; a write that fails (full disk) keeps the previous file, leaves no
  partial one, and ends the run with one line naming the path and the cause (exit code 1), as do a missing
  data file or device.
- A finished run is not run again. A checkpoint written under another config (a setting changed since) is
  moved aside to ``checkpoints.stale-HASH/``, with a log line, and the run starts afresh.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import pandas as pd
import torch

import estimators
from estimators.optimizers import OPTIMIZERS

from experiments.vae import data as data_mod
from experiments.runtime import jobtime
from experiments.runtime.cli import checked, failures_as_one_line, job_arguments, run_job
from experiments.runtime.devices import device_name, resolve_device
from experiments.runtime.preemption import NO_STOP, StopRequests, exit_stopped
from experiments.runtime.provenance import provenance
from experiments.runtime.seeds import cell_seed
from experiments.vae.divergence import DivergenceRecord, parameter_sums
from experiments.vae.lifecycle import Alone, train_runs
from experiments.vae.encoder_gradient import (
    VARIANCE_COLUMNS, encoder_gradient_estimates, reference_gradient, variance_row,
)
from experiments.vae import objectives
from experiments.vae.model import VAE, BaselineNet
from experiments.vae.run_config import RunConfig, as_dict, load_config
from experiments.vae.run_folder import RunFolder, finished

log = logging.getLogger("gradvar.vae")


class Run:
    """Everything a training run holds; ``state_dict`` is the resume checkpoint."""

    def __init__(self, config: RunConfig, out: Path, data: data_mod.Dataset | None = None):
        """``data``: the config's data set, already loaded (stacked runs share one copy); else loaded here."""
        self.config, self.out = config, out
        self.device = resolve_device(config.device)
        self.latent = config.latent
        self.data = data if data is not None else data_mod.load(config.dataset, config.data_dir, config.cache_dir)
        # nn.Linear initializes from torch's global generator: seed it inside a fork, so the run is determined
        # by its seed and the caller's global RNG state is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.model = VAE(self.data.dim, self.latent, config.model.hidden,
                             config.model.activation).to(self.device)
        self.spec = config.estimator_spec
        nvil = self.spec.nvil
        self.est = self.spec.build().to(self.device)
        q = self.model.posterior(torch.zeros(1, self.data.dim, device=self.device))
        reason = objectives.why_not(self.est, q, config.n_samples, config.objective)
        if reason is not None:
            raise ValueError(f"estimator {self.spec.label} does not apply to {self.latent.label()} latents: {reason}; "
                             f"estimators that do: {', '.join(estimators.supporting(q))}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed + 1)
            self.baseline_net = BaselineNet(self.data.dim).to(self.device) if nvil else None
        params = list(self.model.parameters()) + (list(self.baseline_net.parameters()) if nvil else [])
        self.opt = OPTIMIZERS[config.train.optimizer](params, lr=config.train.lr)
        self.gen = torch.Generator(device=self.device).manual_seed(cell_seed(config.seed, "train"))
        self.step = 0
        self._epoch_order: tuple[int, torch.Tensor | None] = (-1, None)
        self.evaluated_step = -1  # the last step whose evaluations are in the rows (a resume must not redo them)
        self.metrics: list[dict] = []
        self.variance: list[dict] = []
        self.train_seconds = 0.0
        self.divergence = DivergenceRecord(1, self.device)
        self.train_data = self.data.train.to(self.device)
        self.test_data = self.data.test.to(self.device)
        self.valid_data = None if self.data.valid is None else self.data.valid.to(self.device)
        self.ids = {
            "experiment": "vae", "dataset": config.dataset, "latent": self.latent.label(),
            "latent_family": self.latent.family, **self.spec.columns(), "nvil": nvil,
            "n_samples": int(config.n_samples), "seed": int(config.seed), "lr": float(config.train.lr),
            "device": str(self.device),
            "device_name": device_name(self.device), **provenance(as_dict(config)),
        }
        self.run_estimator_ids = self.spec.columns("run_estimator")  # carried by every variance row
        self.folder = RunFolder(out, self.ids["config_hash"])

    # --- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "config_hash": self.ids["config_hash"], "step": self.step, "evaluated_step": self.evaluated_step,
            "model": self.model.state_dict(), "opt": self.opt.state_dict(), "est": self.est.state_dict(),
            "baseline_net": None if self.baseline_net is None else self.baseline_net.state_dict(),
            "gen": self.gen.get_state(), "metrics": self.metrics, "variance": self.variance,
            "train_seconds": self.train_seconds,
        }

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]
        self.evaluated_step = state["evaluated_step"]
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.est.load_state_dict(state["est"])
        if self.baseline_net is not None:
            self.baseline_net.load_state_dict(state["baseline_net"])
        self.gen.set_state(state["gen"])
        self.metrics, self.variance = state["metrics"], state["variance"]
        self.train_seconds = state["train_seconds"]

    def checkpoint(self, status: str = "running", **extra) -> None:
        """Save the full state, write the tables, then ``status.json`` (last, so that it never claims more than
        the files hold)."""
        self.folder.save_resume(self.step, self.state_dict())
        self.write_tables()
        self.write_status(status, **extra)

    def resume(self) -> None:
        state = self.folder.newest_state(self.device)
        if state is not None:
            self.load_state_dict(state)

    def write_status(self, status: str, **extra) -> None:
        self.folder.write_status(status, self.step, **extra)

    def write_tables(self) -> None:
        metrics = [*self.ids, "step", "split", "elbo", "iwae", "iwae_k", "temperature", "seconds_per_step",
                   "eval_seconds"]
        variance = [*self.ids, "step", "protocol", *self.run_estimator_ids, "measured_n_samples", "f_evaluations",
                    *VARIANCE_COLUMNS]
        self.folder.write_tables(pd.DataFrame(self.metrics, columns=metrics if not self.metrics else None),
                                 pd.DataFrame(self.variance, columns=variance if not self.variance else None))

    # --- one step ------------------------------------------------------------------------------
    def batch(self, step: int) -> torch.Tensor:
        bs = int(self.config.train.batch_size)
        per_epoch = max(1, self.train_data.shape[0] // bs)
        epoch, i = divmod(step, per_epoch)
        if self._epoch_order[0] != epoch:  # one shuffle per epoch, not per step; a function of (seed, epoch)
            gen = torch.Generator().manual_seed(cell_seed(self.config.seed, "epoch", epoch))
            self._epoch_order = (epoch, torch.randperm(self.train_data.shape[0], generator=gen).to(self.device))
        idx = self._epoch_order[1][i * bs:(i + 1) * bs]
        return self.data.binarize(self.train_data[idx], self.gen)

    def train_step(self) -> None:
        x = self.batch(self.step)
        q = self.model.posterior(x)
        kwargs = {"learned_baseline": self.baseline_net(x)} if self.baseline_net is not None else {}
        f, dist, exact_term = objectives.problem(self.model, x, q, self.est, self.config.objective)
        out = self.est(f, dist, int(self.config.n_samples), self.gen, **kwargs)
        elbo = out.surrogate + exact_term
        loss = -elbo / x.shape[0]
        if out.baseline_loss is not None:
            loss = loss + out.baseline_loss / x.shape[0]
        if self.config.fault.nan_at_step == self.step:
            loss = loss * float("nan")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        # Recorded on the device, read at the loop's boundaries: no host sync per step (divergence.py).
        self.divergence.record(self.step, loss.reshape(1), parameter_sums(list(self.model.parameters())))

    # --- evaluation ----------------------------------------------------------------------------
    def _eval_gen(self, *tag) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(cell_seed(self.config.seed, *tag, self.step))

    @torch.no_grad()
    def evaluate(self) -> None:
        cfg = self.config.eval
        gen = self._eval_gen("eval")
        bs = int(cfg.batch_size)
        subset = self.train_data[: int(cfg.train_subset)]
        train_x = self.data.binarize(subset, gen)
        rows = {"train": (train_x, False), "test": (self.test_data, True)}
        if cfg.validation:  # for learning-rate selection (plan: lr_grid); the data set has one (RunConfig.validate)
            rows["valid"] = (self.valid_data, False)
        temperature = getattr(self.est, "current_temperature", math.nan)
        for split, (x_all, with_iwae) in rows.items():
            elbos, iwaes = [], []
            start = time.perf_counter()
            for chunk in x_all.split(bs):
                elbos.append(self.model.elbo(chunk, gen, int(cfg.elbo_samples)))
                if with_iwae:
                    # Chunked over the k samples as well (VAE.iwae_sample_chunk): memory stays bounded at any k.
                    iwaes.append(self.model.iwae_bound(chunk, int(cfg.iwae_k), gen))
            elbo, iwae = float(torch.cat(elbos).mean()), float(torch.cat(iwaes).mean()) if iwaes else math.nan
            eval_seconds = time.perf_counter() - start  # float() above has waited for the device
            self.metrics.append({
                **self.ids, "step": self.step, "split": split, "elbo": elbo, "iwae": iwae,
                "iwae_k": int(cfg.iwae_k) if iwaes else 0, "temperature": temperature,
                "seconds_per_step": self.train_seconds / self.step if self.step else math.nan,
                "eval_seconds": eval_seconds,
            })
        by_split = {row["split"]: row for row in self.metrics[-len(rows):]}
        log.info("step %d: train ELBO %.2f, test ELBO %.2f, test IWAE %.2f", self.step,
                 by_split["train"]["elbo"], by_split["test"]["elbo"], by_split["test"]["iwae"])

    def measure_variance(self) -> None:
        cfg = self.config.variance
        x = self.test_data[: int(cfg.batch_size)]
        reference = reference_gradient(self.model, x, self._eval_gen("reference"), cfg.reference_gradient,
                                       self.config.objective)
        res = encoder_gradient_estimates(self.model, x, self.est, n_samples=int(self.config.n_samples),
                                         n_estimates=cfg.min_estimates, generator=self._eval_gen("variance"),
                                         reference=reference, baseline_net=self.baseline_net,
                                         objective=self.config.objective, target_rse=cfg.target_rse,
                                         max_estimates=cfg.max_estimates)
        self.variance.append({**self.ids, "step": self.step, "protocol": "own_run",
                              **self.run_estimator_ids, "measured_n_samples": int(self.config.n_samples),
                              "f_evaluations": objectives.f_evaluations(
                                  self.est, self.model.posterior(x[:1]), int(self.config.n_samples),
                                  self.config.objective),
                              **variance_row(res, reference)})
        self.folder.save_snapshot(self.step, {
            "config_hash": self.ids["config_hash"], "step": self.step, "model": self.model.state_dict(),
            "baseline_net": None if self.baseline_net is None else self.baseline_net.state_dict(),
            "reference": reference.to_state()})

    # --- the loop ------------------------------------------------------------------------------
    def due(self, every: int) -> bool:
        return every > 0 and (self.step % every == 0 or self.step == int(self.config.train.steps))

    def due_evaluation(self) -> bool:
        """Whether an evaluation or a variance measurement is due at this step and not yet done."""
        return self.evaluated_step < self.step and (self.due(int(self.config.eval.every))
                                                    or self.due(int(self.config.variance.every)))

    def at_boundary(self, stop) -> bool:
        """Whether the loop evaluates, measures, checkpoints, stops or ends before the next step: the points where
        it waits for the device (time, divergence) and writes anything."""
        return (self.due_evaluation() or self.step == int(self.config.train.steps) or bool(stop.requested)
                or self.step % int(self.config.checkpoint_every) == 0)

    def evaluate_due(self) -> None:
        """Evaluate and measure what is due at this step, once (a resumed run does not redo them)."""
        if self.due(int(self.config.eval.every)):
            self.evaluate()
        if self.due(int(self.config.variance.every)):
            self.measure_variance()
        self.evaluated_step = self.step

    def end_diverged(self, message: str) -> str:
        log.error("%s diverged: %s", self.out, message)
        self.write_tables()
        self.write_status("diverged", message=message)
        return "diverged"

    def run(self, stop=NO_STOP) -> str:
        """Train to the end through the one loop (``lifecycle.train_runs``); ``stop`` as there."""
        return train_runs([self], Alone(self), stop)[0]


def train(config: RunConfig, out: Path, stop=NO_STOP) -> str:
    status = finished(config, out)
    if status is not None:
        log.info("%s already finished (%s); nothing to do", out, status)
        return status
    return Run(config, out).run(stop)


def main(argv=None) -> None:
    jobtime.mark_started("vae_train")
    ap, args = job_arguments(
        "Train a VAE with one gradient estimator",
        "run config, YAML or JSON (see experiments/vae/run_config.py for every key; default: all defaults)",
        "run folder", argv,
        lambda ap: ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                                   help="override a config entry, e.g. --set train.steps=500 (repeatable)"),
        config_required=False)
    config = checked(ap, load_config, args.config, args.set)
    with failures_as_one_line(ap), StopRequests() as stop:
        status = train(config, Path(args.out), stop)
    log.info("run %s: %s", args.out, status)
    if status == "preempted":
        exit_stopped(stop.requested)


if __name__ == "__main__":
    run_job(main)
