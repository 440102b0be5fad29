"""The plan of a study: every job, its resolved config and output folder, and what is left out and why.

``make_plan(config, devices)`` is a pure function of the study config (already checked against
``workflow/schemas/config.schema.yaml``): it parses every estimator entry once (``EstimatorSpec``), resolves
every job's typed config (so a typo at any depth fails here, before any job starts), and decides which
estimator applies where with the one function that decides it, ``Estimator.why_not``. The Snakefile
only turns the plan into rules; the aggregation reads the same plan.

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

import json
from dataclasses import dataclass, field

from experiments.vae import data
from experiments.verdict.claim import Comparison, role_items, training_stage
from experiments.config.estimator_spec import EstimatorSpec
from experiments.synthetic.study import iter_problems, measured_form
from experiments.synthetic.study import parse_settings as parse_synthetic_settings
from experiments.config.typed_config import ConfigError, merge, parse, suggestion, to_dict
from experiments.config.user_modules import import_modules
from experiments.vae import run_config
from experiments.vae import objectives
from experiments.vae.latent import LatentSpec


@dataclass(frozen=True)
class SyntheticJob:
    estimator_id: str
    device: str
    seed: int

    @property
    def path(self) -> str:
        return f"synthetic/{self.device}/seed{self.seed}/{self.estimator_id}"


#: A run of an lr_grid entry lives in ``ESTIMATOR_ID@lrLR/`` (``VAERun.path``); the rules' wildcard pattern.
LR_SUFFIX = "@lr"
LR_SUFFIX_PATTERN = r"(@lr[0-9.e+-]+)?"


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
    def path(self) -> str:
        return (f"vae/runs/{self.dataset}/{self.latent_id}/{self.estimator_folder}/s{self.n_samples}/"
                f"{self.device}/seed{self.seed}")


@dataclass(frozen=True)
class StackedJob:
    """The seeds of one training cell as one process (``vae.stack_seeds``; ``experiments.vae.stacked``)."""

    runs: tuple[VAERun, ...]

    @property
    def folder(self) -> str:
        """The runs' path without the seed: ``vae/runs/DATASET/LATENT/ESTIMATOR/sN/DEVICE``."""
        return self.runs[0].path.rsplit("/", 1)[0]


@dataclass(frozen=True)
class SharedCheckpointsJob:
    """Every applicable estimator, each at its samples, measured at the checkpoints of one host run (one
    process: the run's data, model and reference gradients are loaded once for all of them)."""

    host: VAERun
    measured: tuple[tuple[str, tuple[int, ...]], ...]     # (estimator id, n_samples) in config order

    @property
    def path(self) -> str:
        h = self.host
        return f"vae/shared_checkpoints/{h.dataset}/{h.latent_id}/{h.device}/seed{h.seed}"

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


@dataclass
class Plan:
    study: str
    results: str                                    # results/<study>: every output of the study is below it
    synthetic_jobs: list[SyntheticJob] = field(default_factory=list)
    vae_runs: list[VAERun] = field(default_factory=list)
    stacked_jobs: list[StackedJob] = field(default_factory=list)   # vae.stack_seeds: runs trained together
    shared_jobs: list[SharedCheckpointsJob] = field(default_factory=list)
    excluded: list[Exclusion] = field(default_factory=list)
    job_configs: dict[str, dict] = field(default_factory=dict)   # job path -> the config its job reads
    #: The claim's rows, declared before anything is measured: (source, setting..., comparison,
    #: estimator_id, comparator_id) for every setting where both estimators of a declared pair apply.
    claim_rows: list[dict] = field(default_factory=list)
    #: Data set -> a one-line notice: files the study's jobs will download (neither local nor cached).
    downloads: dict[str, str] = field(default_factory=dict)

    def job_config(self, path: str) -> dict:
        if path not in self.job_configs:
            raise KeyError(f"no job of study {self.study!r} has the folder {path!r}")
        return self.job_configs[path]

    def outputs(self, jobs, *names: str) -> list[str]:
        return [f"{self.results}/{job.path}/{name}" for job in jobs for name in names]

    def stacked_job(self, folder: str) -> StackedJob:
        """The stacked job of the runs in ``folder`` (``StackedJob.folder``)."""
        for job in self.stacked_jobs:
            if job.folder == folder:
                return job
        raise KeyError(f"no stacked job trains the runs of {folder!r}")

    def host_of(self, dataset: str, latent_id: str, device: str, seed: int) -> VAERun:
        for job in self.shared_jobs:
            h = job.host
            if (h.dataset, h.latent_id, h.device, h.seed) == (dataset, latent_id, device, int(seed)):
                return h
        raise KeyError(f"no shared-checkpoints host run for {dataset}/{latent_id}/{device}/seed{seed}")


def _latents(entries: dict) -> dict[str, tuple[LatentSpec, str | None, dict]]:
    """latent id -> (latent, preset, the latent's own settings: a layer over ``vae.settings``, checked)."""
    out = {}
    for latent_id, entry in entries.items():
        entry = dict(entry)
        preset = entry.pop("preset", None)
        own = entry.pop("settings", None) or {}
        run_config.parse_settings(own, f"vae.latents.{latent_id}.settings")
        out[latent_id] = (parse(LatentSpec, entry, f"vae.latents.{latent_id}"), preset, own)
        if preset is not None:
            if preset not in run_config.PRESETS:
                raise ConfigError(f"vae.latents.{latent_id}.preset: unknown preset {preset!r}"
                                  f"{suggestion(preset, run_config.PRESETS)}; valid: {', '.join(run_config.PRESETS)}")
            expected = run_config.PRESETS[preset]["latent"]
            if to_dict(out[latent_id][0]) != to_dict(parse(LatentSpec, expected)):
                raise ConfigError(f"vae.latents.{latent_id}: preset {preset!r} is for the latent {expected}, "
                                  f"not {entry}")
    return out


def _entries(config: dict, study: str) -> tuple[dict, dict[str, str]]:
    """The study's estimator entries: the shared top-level ``estimators`` and the study's own, with the
    config path of each (an id defined in both places is refused)."""
    shared, own = config.get("estimators") or {}, config[study]["estimators"]
    both = sorted(set(shared) & set(own))
    if both:
        raise ConfigError(f"{study}.estimators.{both[0]}: also defined under the shared estimators; use another id")
    paths = {**{i: f"estimators.{i}" for i in shared}, **{i: f"{study}.estimators.{i}" for i in own}}
    return {**shared, **own}, paths


def plan_synthetic(config: dict, devices: list[str], plan: Plan) -> None:
    syn = config["synthetic"]
    settings = parse_synthetic_settings(syn.get("settings"))
    entries, paths = _entries(config, "synthetic")
    specs = {i: EstimatorSpec.from_config(i, e, paths[i], allow_nvil=False, allow_latents=False)
             for i, e in entries.items()}
    # Which estimator applies to which problem is decided in the job, by the same function as everywhere
    # (Estimator.why_not), and listed in its skipped.csv: a problem's instance-level limits show only there.
    for spec in specs.values():
        for device in devices:
            for seed in config["seeds"]:
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
    latents = _latents(vae["latents"])
    entries, paths = _entries(config, "vae")
    specs = {i: EstimatorSpec.from_config(i, e, paths[i]) for i, e in entries.items()}
    for dataset in vae["datasets"]:
        try:
            data.check_present(dataset, vae.get("data_dir"))
        except data.DataError as err:
            raise ConfigError(f"vae.data_dir: {err}") from None
        missing = data.to_download(dataset, vae.get("data_dir"))
        if missing:
            plan.downloads[dataset] = (
                f"data: {dataset}: {len(missing)} file(s) ({', '.join(r.name for r in missing)}) are neither in a "
                f"data folder (vae.data_dir, GRADVAR_DATA) nor in the cache {data.cache_folder(dataset)}; the "
                f"first job that reads them downloads them from {missing[0].urls[0].rsplit('/', 1)[0]}/")
    for spec in specs.values():
        no_validation = [d for d in vae["datasets"] if d not in data.WITH_VALIDATION]
        if spec.lr_grid is not None and no_validation:
            raise ConfigError(f"vae.estimators.{spec.id}.lr_grid: selecting a learning rate needs a validation split, "
                              f"which {no_validation[0]!r} has not; data sets with one: {', '.join(data.WITH_VALIDATION)}")
        unknown = sorted(set(spec.latents or ()) - set(latents))
        if unknown:
            raise ConfigError(f"vae.estimators.{spec.id}.latents: unknown latent(s) {unknown}; defined: "
                              f"{', '.join(latents)}")
    runnable: dict[tuple[str, str], list[int]] = {}     # (latent, estimator) -> training n_samples
    applicable: set[tuple[str, str]] = set()            # (latent, estimator) whose family it applies to
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
            for n in vae["n_samples"] if spec.train else ():  # train: false is measured at shared checkpoints only
                reason = objectives.why_not(est, latent.family_class, n, objective)
                if reason is None:
                    runnable.setdefault((latent_id, spec.id), []).append(n)
                else:
                    plan.excluded.append(Exclusion("vae", latent_id, spec.id, n, reason))
    shared = vae["shared_checkpoints"]
    host_samples = vae["n_samples"][0]
    unknown = sorted(set(shared["trained_with"]) - set(latents))
    if unknown:
        raise ConfigError(f"vae.shared_checkpoints.trained_with.{unknown[0]}: unknown latent"
                          f"{suggestion(unknown[0], latents)}; defined: {', '.join(latents)}")
    for latent_id in latents:
        host_id = shared["trained_with"].get(latent_id)
        if host_id is None or host_samples not in runnable.get((latent_id, host_id), []):
            candidates = [e for (lat, e), ns in runnable.items() if lat == latent_id and host_samples in ns]
            raise ConfigError(f"vae.shared_checkpoints.trained_with.{latent_id}: must name an estimator id that "
                              f"runs on that latent with n_samples={host_samples} (the first of vae.n_samples); "
                              f"got {host_id!r}; candidates: {', '.join(candidates)}")
    host_lr: dict[tuple[str, str], float] = {}          # (dataset, latent) -> the host's lr, where it has a grid
    for dataset in vae["datasets"]:
        for (latent_id, est_id), sample_list in runnable.items():
            latent, preset, own = latents[latent_id]
            grid = specs[est_id].lr_grid
            for n in sample_list:
                for device in devices:
                    for seed in config["seeds"]:
                        cell = {"dataset": dataset, "data_dir": vae.get("data_dir"), "latent": to_dict(latent),
                                "modules": list(config.get("modules") or []),
                                "estimator": {"id": est_id, **specs[est_id].to_config()}, "n_samples": n,
                                "device": device, "seed": int(seed)}
                        layers = ({"preset": preset} if preset else {}, settings, own, cell)
                        if grid is None:
                            run = VAERun(dataset, latent_id, est_id, n, device, int(seed))
                            plan.vae_runs.append(run)
                            plan.job_configs[run.path] = run_config.as_dict(run_config.resolve(*layers))
                            continue
                        if est_id == shared["trained_with"].get(latent_id) and n == host_samples:
                            host_lr[(dataset, latent_id)] = _host_lr(run_config.resolve(*layers).train.lr, grid,
                                                                     latent_id, est_id)
                        for lr in grid:
                            run = VAERun(dataset, latent_id, est_id, n, device, int(seed), lr)
                            selecting = {"train": {"lr": lr}, "eval": {"validation": True}}
                            plan.vae_runs.append(run)
                            plan.job_configs[run.path] = run_config.as_dict(run_config.resolve(*layers, selecting))
    _plan_shared_checkpoints(latents, specs, applicable, shared, host_samples, devices, config, plan, host_lr)
    if vae.get("stack_seeds") and len(config["seeds"]) > 1:
        _plan_stacks(specs, plan)


def _plan_stacks(specs: dict, plan: Plan) -> None:
    """Group the seeds of each cell whose estimator can be stacked (``Estimator.stackable``, no NVIL) into one
    job; the others stay one job per run."""
    cells: dict[tuple, list[VAERun]] = {}
    for run in plan.vae_runs:
        spec = specs[run.estimator_id]
        if spec.build().stackable and not spec.nvil:
            cells.setdefault((run.dataset, run.latent_id, run.estimator_id, run.n_samples, run.device, run.lr),
                             []).append(run)
    plan.stacked_jobs = [StackedJob(tuple(runs)) for runs in cells.values()]

def _objective(settings: dict, own: dict):
    """The objective of a latent's runs (``vae.settings`` under the latent's own settings)."""
    return run_config.parse_settings(merge(settings, own)).objective


def _host_lr(lr: float, grid: tuple[float, ...], latent_id: str, est_id: str) -> float:
    """The host of a latent whose entry has a learning-rate grid is its run at the study's learning rate: the
    shared checkpoints cannot wait for a selection that needs every run of the grid finished."""
    if lr not in grid:
        raise ConfigError(f"vae.estimators.{est_id}.lr_grid: must include the learning rate of the runs it is "
                          f"compared with ({lr:g}, vae.settings.train.lr or its default): its run at that rate "
                          f"hosts the shared checkpoints of latent {latent_id!r}; got {list(grid)}")
    return lr


def _plan_shared_checkpoints(latents, specs, applicable, shared, host_samples, devices, config, plan, host_lr):
    """Every estimator that applies to a latent's family, at the protocol's own n_samples (not training's)."""
    for latent_id, (latent, _, own) in latents.items():
        objective = _objective(config["vae"].get("settings") or {}, own)
        host_spec = specs[shared["trained_with"][latent_id]]
        measured = []
        for est_id, spec in sorted(specs.items()):  # by id: a job's config does not depend on key order
            if (latent_id, est_id) not in applicable:
                continue  # listed already, with the reason
            if spec.nvil and not host_spec.nvil:
                plan.excluded.append(Exclusion(
                    "vae_shared_checkpoints", latent_id, est_id, None,
                    f"a learned (NVIL) baseline exists only in a run trained with one; the host run "
                    f"({host_spec.id}) has none"))
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
        for dataset in config["vae"]["datasets"] if measured else []:
            for device in devices:
                for seed in config["seeds"]:
                    host = VAERun(dataset, latent_id, host_spec.id, host_samples, device, int(seed),
                                  host_lr.get((dataset, latent_id)))
                    job = SharedCheckpointsJob(host, tuple(measured))
                    plan.shared_jobs.append(job)
                    plan.job_configs[job.path] = {
                        "run": f"{plan.results}/{host.path}", "warmup_calls": int(shared["warmup_calls"]),
                        "modules": list(config.get("modules") or []),
                        "estimators": [{"id": est_id, **specs[est_id].to_config(), "n_samples": list(ns)}
                                       for est_id, ns in measured]}


def checkpoint_steps(run: dict) -> list[int]:
    """The steps at which a run (its resolved config) measures variance and writes a snapshot."""
    every, steps = run["variance"]["every"], run["train"]["steps"]
    return sorted({s for s in range(0, steps + 1, every)} | {steps}) if every > 0 else []


def declare_claim(config: dict, plan: Plan) -> None:
    """The claim's rows, from the declared comparisons and what applies where (``Estimator.why_not``)."""
    comparisons = [Comparison.from_config(c) for c in config["claim"]["comparisons"]]
    syn_entries, _ = _entries(config, "synthetic")
    vae_entries, _ = _entries(config, "vae")
    ids = set(syn_entries) | set(vae_entries)
    for k, comparison in enumerate(comparisons):
        for item in comparison.unknown_items(ids):
            choices = sorted(ids | role_items())
            raise ConfigError(f"claim.comparisons[{k}] ({comparison.id}): {item!r} is no estimator id, registered "
                              f"estimator or role{suggestion(item, choices)}; ids and roles: {', '.join(choices)}")
    syn_names = {i: e["name"] for i, e in syn_entries.items()}
    syn_estimators = {i: EstimatorSpec.from_config(i, e, allow_nvil=False, allow_latents=False).build()
                      for i, e in syn_entries.items()}
    settings = parse_synthetic_settings(config["synthetic"].get("settings"))
    devices = sorted({job.device for job in plan.synthetic_jobs})
    for cell in iter_problems(settings.problems):
        for comparison in comparisons:
            for num, den in comparison.pairs(syn_names):
                for n in settings.n_samples:
                    if measured_form(cell.problem, syn_estimators[num], n)[2] or \
                            measured_form(cell.problem, syn_estimators[den], n)[2]:
                        continue
                    for parameter in cell.problem.params:
                        for device in devices:
                            plan.claim_rows.append({
                                "source": "synthetic", "problem": cell.problem_key,
                                "setting": json.dumps(cell.setting, sort_keys=True), "parameter": parameter,
                                "n_samples": n, "device": device, "comparison": comparison.id,
                                "estimator_id": num, "comparator_id": den})
    vae_names = {i: e["name"] for i, e in vae_entries.items()}
    measured: dict[tuple, set] = {}
    hosts: dict[tuple, VAERun] = {}
    for job in plan.shared_jobs:
        h = job.host
        key = (h.dataset, h.latent_id, h.device)
        hosts[key] = h
        for est_id, samples in job.measured:
            for n in samples:
                measured.setdefault(key + (n,), set()).add(est_id)
    for (dataset, latent_id, device), host in hosts.items():
        steps = checkpoint_steps(plan.job_config(host.path))
        final = steps[-1] if steps else 0
        stages = list(dict.fromkeys(training_stage(s, final) for s in steps))
        for n in config["vae"]["shared_checkpoints"]["n_samples"]:
            present = measured.get((dataset, latent_id, device, n), set())
            for comparison in comparisons:
                for num, den in comparison.pairs(vae_names):
                    if num not in present or den not in present:
                        continue
                    for stage in stages:
                        plan.claim_rows.append({
                            "source": "vae", "dataset": dataset, "latent_id": latent_id, "stage": stage,
                            "samples": n, "device": device, "comparison": comparison.id,
                            "estimator_id": num, "comparator_id": den})


def make_plan(config: dict, devices: list[str]) -> Plan:
    """Every job of the study on ``devices`` (those this machine or cluster has, chosen by the caller)."""
    import_modules(config.get("modules"))
    plan = Plan(study=config["study"], results=f"results/{config['study']}")
    plan_synthetic(config, devices, plan)
    plan_vae(config, devices, plan)
    declare_claim(config, plan)
    return plan
