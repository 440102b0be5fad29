"""Protocol ``shared_checkpoints``: estimators measured at the same checkpoints of one training run.

    python -m experiments.vae.shared_checkpoints --config JOB.yaml --out TABLE.csv

``JOB.yaml`` (written by the pipeline, or by hand) names the host run folder and the measured estimator
entries, each with its samples per estimate; see ``JobConfig``. Each estimator is measured on the host run's snapshot
models (``checkpoints/step_N.pt``, written at its variance steps) with the run's evaluation minibatch and
reference gradient, so differences between estimators are not differences between training trajectories.
Stateful estimators are put where training would have them: an estimator that adapts in train mode (a
moving-average baseline, REBAR's and RELAX's trained control variates: ``Estimator.adapts``) is warmed up by
``warmup_calls`` train-mode calls on *training* minibatches (never the evaluation minibatch it is then
measured on), drawn from a generator separate from the measurement's, and the rows record
``warmup_calls``; an annealed temperature is set to its value at the checkpoint's step. A learned (NVIL)
baseline exists only in a run trained with one, so ``nvil`` entries apply only to such hosts.

Whether an estimator applies is decided by ``Estimator.why_not``, as everywhere: combinations that do not
apply are returned with their reason (the pipeline plans only those that do).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from experiments.runtime import checkpoint
from experiments.runtime import jobtime
from experiments.runtime.cli import checked, failures_as_one_line, job_arguments, run_job
from experiments.config.estimator_spec import EstimatorSpec
from experiments.runtime import result_tables
from experiments.runtime.seeds import cell_seed
from experiments.config.typed_config import ConfigError, load_yaml, parse
from experiments.config.user_modules import import_modules
from experiments.vae.encoder_gradient import (
    ReferenceGradient, encoder_gradient_estimates, reference_gradient, variance_row,
)
from experiments.vae.run_config import resolve
from experiments.vae import objectives
from experiments.vae.train import Run

log = logging.getLogger("gradvar.vae.shared_checkpoints")


@dataclass(frozen=True)
class JobConfig:
    """One measurement job: every entry of ``estimators`` (an estimator entry with its ``id`` and its
    ``n_samples``, a list) at every checkpoint of ``run``."""

    run: str
    estimators: list[dict]
    warmup_calls: int = 20
    modules: list[str] = field(default_factory=list)   # the user's estimator modules, imported first

    def specs(self) -> list[tuple[EstimatorSpec, list[int]]]:
        import_modules(self.modules)
        out = []
        for i, raw in enumerate(self.estimators):
            entry = dict(raw)
            samples = entry.pop("n_samples", [1])
            if not isinstance(samples, list) or not samples or not all(isinstance(n, int) and n >= 1 for n in samples):
                raise ConfigError(f"estimators[{i}].n_samples: expected a non-empty list of integers >= 1, "
                                  f"got {samples!r}")
            est_id = entry.pop("id", entry.get("name"))
            out.append((EstimatorSpec.from_config(est_id, entry, f"estimators[{i}]", allow_latents=False), samples))
        return out


def why_not(spec: EstimatorSpec, run: Run, q, n_samples: int) -> str | None:
    """Why ``spec`` cannot be measured on this host run with ``n_samples``, or ``None``."""
    reason = spec.why_not_on_host(run.baseline_net is not None, "this host run")
    if reason is not None:
        return reason
    return objectives.why_not(spec.build(), q, n_samples, run.config.objective)


def _prepare(est, run: Run, step: int, n_samples: int, warmup_calls: int) -> int:
    """Put ``est`` in its state at ``step``; return the warm-up calls made (0 for an estimator that does not
    adapt)."""
    if hasattr(est, "step"):
        est.step.fill_(step)  # the temperature schedule's value at this checkpoint
    calls = warmup_calls if est.adapts else 0
    if calls:
        gen = torch.Generator(device=run.device).manual_seed(cell_seed(run.config.seed, "warmup", step))
        n_train, batch_size = run.train_data.shape[0], min(int(run.config.train.batch_size), run.train_data.shape[0])
        est.train()
        for _ in range(calls):
            idx = torch.randint(n_train, (batch_size,), generator=gen, device=run.device)
            x = run.data.binarize(run.train_data[idx], gen)
            q = run.model.posterior(x)
            f, dist, _ = objectives.problem(run.model, x, q, est, run.config.objective)
            est(f, dist, n_samples, gen)
    est.eval()
    return calls


def measure(run_dir: Path, specs: list[tuple[EstimatorSpec, list[int]]],
            warmup_calls: int = 20) -> tuple[pd.DataFrame, list[dict]]:
    """Rows for every (checkpoint, applicable spec, n_samples), and the combinations left out with why.
    ``specs``: each estimator with the samples per estimate it is measured at."""
    config = resolve(json.loads((run_dir / "config.json").read_text()))
    run = Run(config, run_dir)
    vcfg = config.variance
    x = run.test_data[: vcfg.batch_size]
    q0 = run.model.posterior(x)
    cells, excluded = [], []
    for spec, n_samples_list in specs:
        for n in n_samples_list:
            reason = why_not(spec, run, q0, n)
            if reason is None:
                cells.append((spec, n, spec.columns()))
            else:
                excluded.append({"estimator_id": spec.id, "n_samples": n, "reason": reason})
    rows = []
    for snapshot in sorted((run_dir / "checkpoints").glob("step_*.pt")):
        try:
            state = checkpoint.load(snapshot, map_location=run.device)
        except checkpoint.CorruptCheckpoint as err:
            raise checkpoint.CorruptCheckpoint(
                f"{err}; its training run must make it again: remove {run_dir} and rerun") from err
        run.model.load_state_dict(state["model"])
        if run.baseline_net is not None:
            run.baseline_net.load_state_dict(state["baseline_net"])
        step = int(state["step"])
        run.step = step
        # The host run computed the reference at this checkpoint with these very settings, batch and seed.
        reference = ReferenceGradient.from_state(state.get("reference"))
        if reference is None:  # a snapshot from before the reference was kept in it
            reference = reference_gradient(run.model, x, run._eval_gen("reference"), vcfg.reference_gradient,
                                           run.config.objective)
        for spec, n_samples, columns in cells:
            est = spec.build().to(run.device)
            calls = _prepare(est, run, step, n_samples, warmup_calls)
            # The seed's tag keeps the protocol's first name, so that its numbers stay what they were.
            gen = torch.Generator(device=run.device).manual_seed(
                cell_seed(config.seed, "reference_run", step, est.describe(), spec.nvil, n_samples))
            res = encoder_gradient_estimates(run.model, x, est, n_samples=n_samples,
                                             n_estimates=vcfg.min_estimates, generator=gen, reference=reference,
                                             baseline_net=run.baseline_net if spec.nvil else None,
                                             objective=run.config.objective, target_rse=vcfg.target_rse,
                                             max_estimates=vcfg.max_estimates)
            rows.append({**run.ids, **run.run_estimator_ids, **columns, "nvil": spec.nvil,
                         "step": step, "protocol": "shared_checkpoints", "measured_n_samples": n_samples,
                         "f_evaluations": objectives.f_evaluations(est, q0, n_samples, run.config.objective),
                         "warmup_calls": calls,
                         **variance_row(res, reference)})
        log.info("%s: step %d measured", run_dir, step)
    return pd.DataFrame(rows), excluded


def load_job(path: str) -> tuple[JobConfig, list[tuple[EstimatorSpec, list[int]]]]:
    with open(path) as fh:
        job = parse(JobConfig, load_yaml(fh))
    return job, job.specs()


def main(argv=None) -> None:
    jobtime.mark_started("vae_shared_checkpoints")
    ap, args = job_arguments("Measure an estimator at every checkpoint of one run",
                             "job config, YAML or JSON (see JobConfig)", "CSV to write", argv)
    job, specs = checked(ap, load_job, args.config)
    with failures_as_one_line(ap):
        frame, excluded = measure(Path(job.run), specs, job.warmup_calls)
        if excluded:
            ap.exit(2, "not applicable: " + "; ".join(f"{e['estimator_id']} with n_samples={e['n_samples']}: "
                                                       f"{e['reason']}" for e in excluded) + "\n")
        result_tables.write(frame, args.out)
    log.info("wrote %d rows to %s", len(frame), args.out)


if __name__ == "__main__":
    run_job(main)
