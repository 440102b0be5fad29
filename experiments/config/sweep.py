"""The sweep expanded into jobs: every synthetic job, VAE run, stacked job and shared-checkpoints job of a study,
each with the config its job reads, and every combination left out with the reason.

The VAE sweep is data sets x (latent, estimator) pairs that apply x n_samples x devices x seeds; which
estimator applies where is decided by the one function that decides it (``objectives.why_not``, over
``Estimator.why_not``), and what does not apply is listed (``Exclusion``), never dropped silently. A run's
settings are layered: its defaults, the latent's preset, the study's ``vae.settings``, the latent's own
settings, then the cell (``run_config.resolve``).
"""
from __future__ import annotations

from itertools import product
from typing import TYPE_CHECKING

from experiments.config import checks
from experiments.config.estimator_spec import EstimatorSpec
from experiments.config.jobs import Exclusion, SharedCheckpointsJob, StackedJob, SyntheticJob, VAERun
from experiments.config.typed_config import ConfigError, merge, to_dict
from experiments.synthetic.study import parse_settings as parse_synthetic_settings
from experiments.vae import objectives, run_config

if TYPE_CHECKING:
    from experiments.config.plan import Plan


def plan_synthetic(config: dict, devices: list[str], plan: Plan) -> None:
    """One job per estimator entry, device and seed, each running every problem."""
    settings = parse_synthetic_settings(config["synthetic"].get("settings"))
    entries, paths = checks.estimator_entries(config, "synthetic")
    specs = {i: EstimatorSpec.from_config(i, e, paths[i], allow_nvil=False, allow_latents=False)
             for i, e in entries.items()}
    # Which estimator applies to which problem is decided in the job, by the same function as everywhere
    # (Estimator.why_not), and listed in its skipped.csv: a problem's instance-level limits show only there.
    for spec, device, seed in product(specs.values(), devices, config["seeds"]):
        job = SyntheticJob(spec.id, device, int(seed))
        plan.synthetic_jobs.append(job)
        plan.job_configs[job.path] = {**to_dict(settings), "seed": int(seed), "device": device,
                                      "modules": list(config.get("modules") or []),
                                      "estimators": {spec.id: spec.to_config()}}


def plan_vae(config: dict, devices: list[str], plan: Plan) -> None:
    vae = config["vae"]
    # Checked here with its path; merged raw (only what the study sets) over each latent's preset, so that
    # a default never hides a preset's value.
    settings = vae.get("settings") or {}
    run_config.parse_settings(settings)
    latents = checks.latents(vae["latents"])
    entries, paths = checks.estimator_entries(config, "vae")
    specs = {i: EstimatorSpec.from_config(i, e, paths[i]) for i, e in entries.items()}
    plan.downloads.update(checks.data_downloads(vae))
    checks.check_vae_entries(specs, vae["datasets"], latents)
    runnable, applicable = _applicability(latents, specs, settings, vae["n_samples"], plan)
    shared = vae["shared_checkpoints"]
    host_samples = vae["n_samples"][0]
    checks.check_hosts(shared["trained_with"], latents, runnable, host_samples)
    host_lr = _plan_training_runs(config, devices, latents, specs, runnable, plan)
    _plan_shared_checkpoints(latents, specs, applicable, shared, host_samples, devices, config, plan, host_lr)
    if (vae.get("stack_seeds") or vae.get("sequential_seeds")) and len(config["seeds"]) > 1:
        _plan_stacks(specs, plan, bool(vae.get("stack_seeds")), bool(vae.get("sequential_seeds")))


def _objective(settings: dict, own: dict):
    """The objective of a latent's runs (``vae.settings`` under the latent's own settings)."""
    return run_config.parse_settings(merge(settings, own)).objective


def _applicability(latents: dict, specs: dict, settings: dict, n_samples: list[int], plan: Plan):
    """(latent, estimator id) -> the training n_samples where the estimator applies (``runnable``), and the
    (latent, estimator id) pairs whose latent family it applies to (``applicable``); the rest is excluded
    with the reason, or refused where an entry's ``latents:`` asks for it explicitly."""
    runnable: dict[tuple[str, str], list[int]] = {}
    applicable: set[tuple[str, str]] = set()
    for latent_id, (latent, _, own) in latents.items():
        objective = _objective(settings, own)
        for spec in specs.values():
            if spec.latents is not None and latent_id not in spec.latents:
                continue
            est = spec.build()
            reason = objectives.why_not(est, latent.family_class, None, objective)
            if reason is not None:
                if spec.latents is not None:
                    raise ConfigError(f"vae.estimators.{spec.id}.latents: asks for latent {latent_id!r} "
                                      f"({latent.label()}), but {spec.name} does not apply: {reason}")
                plan.excluded.append(Exclusion("vae", latent_id, spec.id, None, reason))
                continue
            applicable.add((latent_id, spec.id))
            for n in n_samples if spec.train else ():  # train: false is measured at shared checkpoints only
                reason = objectives.why_not(est, latent.family_class, n, objective)
                if reason is None:
                    runnable.setdefault((latent_id, spec.id), []).append(n)
                else:
                    plan.excluded.append(Exclusion("vae", latent_id, spec.id, n, reason))
    return runnable, applicable


def _plan_training_runs(config: dict, devices: list[str], latents: dict, specs: dict, runnable: dict,
                        plan: Plan) -> dict[tuple[str, str], float]:
    """Every training run: data sets x runnable (latent, estimator) x its n_samples x devices x seeds, one run
    per learning rate of an entry's ``lr_grid``. Returns (data set, latent) -> the host run's learning rate,
    for the latents whose host entry has a grid."""
    vae = config["vae"]
    settings = vae.get("settings") or {}
    host_samples = vae["n_samples"][0]
    trained_with = vae["shared_checkpoints"]["trained_with"]
    cells = ((dataset, latent_id, est_id, n, device, int(seed))
             for dataset, ((latent_id, est_id), samples) in product(vae["datasets"], runnable.items())
             for n, device, seed in product(samples, devices, config["seeds"]))
    host_lr: dict[tuple[str, str], float] = {}
    for dataset, latent_id, est_id, n, device, seed in cells:
        latent, preset, own = latents[latent_id]
        grid = specs[est_id].lr_grid
        cell = {"dataset": dataset, "data_dir": vae.get("data_dir"), "latent": to_dict(latent),
                "modules": list(config.get("modules") or []),
                "estimator": {"id": est_id, **specs[est_id].to_config()}, "n_samples": n,
                "device": device, "seed": seed}
        layers = ({"preset": preset} if preset else {}, settings, own, cell)
        if grid is None:
            run = VAERun(dataset, latent_id, est_id, n, device, seed)
            plan.vae_runs.append(run)
            plan.job_configs[run.path] = run_config.as_dict(run_config.resolve(*layers))
            continue
        if est_id == trained_with.get(latent_id) and n == host_samples:
            host_lr[(dataset, latent_id)] = checks.host_lr(run_config.resolve(*layers).train.lr, grid, latent_id,
                                                           est_id)
        for lr in grid:
            run = VAERun(dataset, latent_id, est_id, n, device, seed, lr)
            selecting = {"train": {"lr": lr}, "eval": {"validation": True}}
            plan.vae_runs.append(run)
            plan.job_configs[run.path] = run_config.as_dict(run_config.resolve(*layers, selecting))
    return host_lr


def _plan_stacks(specs: dict, plan: Plan, stack: bool, sequential: bool) -> None:
    """Group the seeds of a cell into one job: batched (``stack``) where its estimator can be stacked
    (``EstimatorSpec.why_not_stacked``, which the stacked job asks too), else one after another
    (``sequential``); the cells neither applies to stay one job per run."""
    cells: dict[tuple, list[VAERun]] = {}
    batched: dict[tuple, bool] = {}
    for run in plan.vae_runs:
        can_stack = stack and specs[run.estimator_id].why_not_stacked() is None
        if can_stack or sequential:
            cell = (run.dataset, run.latent_id, run.estimator_id, run.n_samples, run.device, run.lr)
            cells.setdefault(cell, []).append(run)
            batched[cell] = can_stack
    plan.stacked_jobs = [StackedJob(tuple(runs), batched[cell]) for cell, runs in cells.items()]


def _plan_shared_checkpoints(latents, specs, applicable, shared, host_samples, devices, config, plan, host_lr):
    """Every estimator that applies to a latent's family, at the protocol's own n_samples (not training's)."""
    for latent_id, (latent, _, own) in latents.items():
        objective = _objective(config["vae"].get("settings") or {}, own)
        host_spec = specs[shared["trained_with"][latent_id]]
        measured = []
        for est_id, spec in sorted(specs.items()):  # by id: a job's config does not depend on key order
            if (latent_id, est_id) not in applicable:
                continue  # listed already, with the reason
            reason = spec.why_not_on_host(host_spec.nvil, f"the host run ({host_spec.id})")
            if reason is not None:
                plan.excluded.append(Exclusion("vae_shared_checkpoints", latent_id, est_id, None, reason))
                continue
            est = spec.build()
            ok = []
            for n in shared["n_samples"]:
                reason = objectives.why_not(est, latent.family_class, n, objective)
                if reason is None:
                    ok.append(n)
                else:
                    plan.excluded.append(Exclusion("vae_shared_checkpoints", latent_id, est_id, n, reason))
            if ok:
                measured.append((est_id, tuple(ok)))
        datasets = config["vae"]["datasets"] if measured else []
        for dataset, device, seed in product(datasets, devices, config["seeds"]):
            host = VAERun(dataset, latent_id, host_spec.id, host_samples, device, int(seed),
                          host_lr.get((dataset, latent_id)))
            job = SharedCheckpointsJob(host, tuple(measured))
            plan.shared_jobs.append(job)
            plan.job_configs[job.path] = {
                "run": f"{plan.results}/{host.path}", "warmup_calls": int(shared["warmup_calls"]),
                "modules": list(config.get("modules") or []),
                "estimators": [{"id": est_id, **specs[est_id].to_config(), "n_samples": list(ns)}
                               for est_id, ns in measured]}
