"""The claim's rows, declared before anything is measured: one row per declared comparison
(``claim.comparisons``), estimator pair and setting where both estimators apply, so that a row the jobs did not
measure shows as ``missing`` in the verdict instead of disappearing."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from experiments.config.checks import estimator_entries
from experiments.config.estimator_spec import EstimatorSpec
from experiments.config.jobs import VAERun, checkpoint_steps
from experiments.config.typed_config import ConfigError, suggestion
from experiments.synthetic.study import iter_problems, measured_form
from experiments.synthetic.study import parse_settings as parse_synthetic_settings
from experiments.verdict.claim import Comparison, role_items, training_stage

if TYPE_CHECKING:
    from experiments.config.plan import Plan


def declare_claim(config: dict, plan: Plan) -> None:
    """The claim's rows, from the declared comparisons and what applies where (``Estimator.why_not``)."""
    comparisons = [Comparison.from_config(c) for c in config["claim"]["comparisons"]]
    syn_entries, _ = estimator_entries(config, "synthetic")
    vae_entries, _ = estimator_entries(config, "vae")
    ids = set(syn_entries) | set(vae_entries)
    for k, comparison in enumerate(comparisons):
        for item in comparison.unknown_items(ids):
            choices = sorted(ids | role_items())
            raise ConfigError(f"claim.comparisons[{k}] ({comparison.id}): {item!r} is no estimator id, registered "
                              f"estimator or role{suggestion(item, choices)}; ids and roles: {', '.join(choices)}")
    plan.claim_rows.extend(_synthetic_rows(config, comparisons, syn_entries, plan))
    plan.claim_rows.extend(_vae_rows(config, comparisons, vae_entries, plan))


def _synthetic_rows(config: dict, comparisons: list[Comparison], entries: dict, plan: Plan) -> list[dict]:
    """Every problem setting, pair, n_samples, parameter and device where both estimators have a measured
    form (``measured_form``)."""
    names = {i: e["name"] for i, e in entries.items()}
    built = {i: EstimatorSpec.from_config(i, e, allow_nvil=False, allow_latents=False).build()
             for i, e in entries.items()}
    settings = parse_synthetic_settings(config["synthetic"].get("settings"))
    devices = sorted({job.device for job in plan.synthetic_jobs})
    rows = []
    for cell in iter_problems(settings.problems):
        for comparison in comparisons:
            for num, den in comparison.pairs(names):
                for n in settings.n_samples:
                    if measured_form(cell.problem, built[num], n)[1] or measured_form(cell.problem, built[den], n)[1]:
                        continue
                    rows += [{"source": "synthetic", "problem": cell.problem_key,
                              "setting": json.dumps(cell.setting, sort_keys=True), "parameter": parameter,
                              "n_samples": n, "device": device, "comparison": comparison.id,
                              "estimator_id": num, "comparator_id": den}
                             for parameter in cell.problem.params for device in devices]
    return rows


def _vae_rows(config: dict, comparisons: list[Comparison], entries: dict, plan: Plan) -> list[dict]:
    """Every (data set, latent, device) host, shared-checkpoints n_samples, pair measured there and training
    stage of the host's checkpoints (``training_stage``)."""
    names = {i: e["name"] for i, e in entries.items()}
    measured: dict[tuple, set] = {}
    hosts: dict[tuple, VAERun] = {}
    for job in plan.shared_jobs:
        h = job.host
        key = (h.dataset, h.latent_id, h.device)
        hosts[key] = h
        for est_id, samples in job.measured:
            for n in samples:
                measured.setdefault(key + (n,), set()).add(est_id)
    rows = []
    for (dataset, latent_id, device), host in hosts.items():
        steps = checkpoint_steps(plan.job_config(host.path))
        final = steps[-1] if steps else 0
        stages = list(dict.fromkeys(training_stage(s, final) for s in steps))
        for n in config["vae"]["shared_checkpoints"]["n_samples"]:
            present = measured.get((dataset, latent_id, device, n), set())
            for comparison in comparisons:
                rows += [{"source": "vae", "dataset": dataset, "latent_id": latent_id, "stage": stage,
                          "samples": n, "device": device, "comparison": comparison.id,
                          "estimator_id": num, "comparator_id": den}
                         for num, den in comparison.pairs(names) if num in present and den in present
                         for stage in stages]
    return rows
