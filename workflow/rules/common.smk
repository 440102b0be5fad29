# Helpers shared by the rules: config validation, the sweep's cells, and per-job arguments.
import json
import os
import shlex

import yaml
from snakemake.utils import validate

import estimators as gradvar_estimators
from experiments.vae.model import LatentSpec, example_posterior


validate(config, "../schemas/config.schema.yaml")


def _device_available(device):
    if device == "cpu":
        return True
    import torch

    if not torch.cuda.is_available():
        return False
    index = int(device.split(":")[1]) if ":" in device else 0
    return index < torch.cuda.device_count()


def _runs_remotely():
    """True under a cluster executor: the submit host need not have the jobs' devices."""
    settings = getattr(getattr(workflow, "executor_plugin", None), "common_settings", None)
    return bool(getattr(settings, "non_local_exec", False))


def select_devices():
    devices = list(dict.fromkeys(config["devices"]))
    if not config.get("check_devices", True) or _runs_remotely():
        return devices  # each job checks its own device and fails clearly where it is missing
    missing = [d for d in devices if not _device_available(d)]
    if missing and not config.get("drop_unavailable_devices", False):
        raise ValueError(
            f"config 'devices' names {missing}, which this machine does not have (torch sees no CUDA device). "
            f"Remove them, set 'drop_unavailable_devices: true' to leave them out, or run on a GPU machine "
            f"(on a cluster submit host, pass --config check_devices=false; the jobs check their own device)."
        )
    kept = [d for d in devices if d not in missing]
    if not kept:
        raise ValueError(f"no device of {devices} is available here")
    return kept


def _options(entry):
    return {k: v for k, v in entry.items() if k not in ("latents",)}


def _estimator(entry):
    opts = {k: v for k, v in entry.items() if k not in ("name", "nvil", "latents")}
    try:
        return gradvar_estimators.get(entry["name"], **opts)
    except ValueError as err:
        raise ValueError(f"config estimator {entry}: {err}") from None


def plan_vae():
    """Supported (latent, estimator) pairs; the others are left out and listed (unless asked explicitly)."""
    vae = config["vae"]
    cells, excluded = [], []
    for latent_id, latent_cfg in vae["latents"].items():
        spec = LatentSpec.from_config({k: v for k, v in latent_cfg.items() if k != "preset"})
        dist = example_posterior(spec)
        for est_id, entry in vae["estimators"].items():
            asked = entry.get("latents")
            unknown = set(asked or []) - set(vae["latents"])
            if unknown:
                raise ValueError(f"vae.estimators.{est_id}.latents names unknown latents {sorted(unknown)}; "
                                 f"defined: {sorted(vae['latents'])}")
            est = _estimator(entry)
            if asked is not None and latent_id not in asked:
                continue
            if not est.supports(dist):
                if asked is not None:
                    raise ValueError(
                        f"vae.estimators.{est_id} asks for latent '{latent_id}' ({spec.label()}), but "
                        f"{entry['name']} does not support it; estimators that do: "
                        f"{', '.join(gradvar_estimators.supporting(dist))}")
                excluded.append({"experiment": "vae", "latent": latent_id, "estimator": est_id,
                                 "reason": f"{entry['name']} does not support {spec.family} latents"})
                continue
            cells.append((latent_id, est_id))
    for latent_id in vae["latents"]:
        ref = vae["reference_run"].get(latent_id)
        if ref is None or (latent_id, ref) not in cells:
            raise ValueError(f"vae.reference_run.{latent_id} must name an estimator id that runs on that latent; "
                             f"got {ref!r}; candidates: {[e for l, e in cells if l == latent_id]}")
    return cells, excluded


def plan_synthetic():
    for est_id, entry in config["synthetic"]["estimators"].items():
        _estimator(entry)
    return list(config["synthetic"]["estimators"])


DEVICES = select_devices()
SEEDS = config["seeds"]
VAE_CELLS, EXCLUDED = plan_vae()
SYN_ESTIMATORS = plan_synthetic()

SYNTHETIC_TABLES = expand("results/synthetic/{device}/seed{seed}/{estimator}/synthetic.csv",
                          device=DEVICES, seed=SEEDS, estimator=SYN_ESTIMATORS)


def plan_samples():
    """(latent, estimator, n_samples) triples; too few samples for an estimator is left out and listed."""
    triples = []
    for lat, est_id in VAE_CELLS:
        minimum = _estimator(config["vae"]["estimators"][est_id]).min_samples
        for n in config["vae"]["n_samples"]:
            if n < minimum:
                EXCLUDED.append({"experiment": "vae", "latent": lat, "estimator": est_id,
                                 "reason": f"n_samples={n} is below its minimum {minimum}"})
            else:
                triples.append((lat, est_id, n))
    for lat, ref in config["vae"]["reference_run"].items():
        if (lat, ref, config["vae"]["n_samples"][0]) not in triples:
            raise ValueError(f"vae.reference_run.{lat}: {ref} cannot run with n_samples={config['vae']['n_samples'][0]} "
                             f"(the first of vae.n_samples, which the reference run uses)")
    return triples


VAE_TRIPLES = plan_samples()
VAE_RUN_DIRS = [f"results/vae/runs/{ds}/{lat}/{est}/s{n}/{dev}/seed{seed}"
                for ds in config["vae"]["datasets"] for lat, est, n in VAE_TRIPLES
                for dev in DEVICES for seed in SEEDS]
VAE_REFERENCE_TABLES = [f"results/vae/reference/{ds}/{lat}/{dev}/seed{seed}/{est}.csv"
                        for ds in config["vae"]["datasets"] for lat, est in VAE_CELLS
                        for dev in DEVICES for seed in SEEDS]
VAE_METRICS = [f"{d}/metrics.csv" for d in VAE_RUN_DIRS]
VAE_VARIANCE = [f"{d}/variance.csv" for d in VAE_RUN_DIRS]
VAE_STATUS = [f"{d}/status.json" for d in VAE_RUN_DIRS]
SYNTHETIC_SKIPPED = expand("results/synthetic/{device}/seed{seed}/{estimator}/skipped.csv",
                           device=DEVICES, seed=SEEDS, estimator=SYN_ESTIMATORS)
FIGURES = ["variance_vs_k", "ratio_vs_dimension", "vae_variance_over_training", "elbo_curves",
           "work_normalized_variance", "device_timings"]


def synthetic_estimator_json(wildcards):
    return json.dumps(_options(config["synthetic"]["estimators"][wildcards.estimator]), sort_keys=True)


def _flatten(prefix, value):
    if isinstance(value, dict) and prefix.split(".")[-1] not in ("latent", "estimator"):
        for k, v in value.items():
            yield from _flatten(f"{prefix}.{k}" if prefix else k, v)
    else:
        yield prefix, value


def vae_run_args(wildcards):
    """--set arguments that make one run of the sweep (its cell's values override the base config)."""
    vae = config["vae"]
    settings = dict(_flatten("", vae.get("overrides") or {}))
    latent = dict(vae["latents"][wildcards.latent])
    preset = latent.pop("preset", None)
    if preset is not None:
        settings["preset"] = preset  # the anchor paper's model for this latent (experiments.vae.model.PRESETS)
    settings.update({
        "dataset": wildcards.dataset, "latent": latent,
        "estimator": _options(vae["estimators"][wildcards.estimator]), "n_samples": int(wildcards.samples),
        "device": wildcards.device, "seed": int(wildcards.seed), "data_dir": vae.get("data_dir"),
    })
    # Canonical (sorted) so that the params, and hence reruns, change only when a value does.
    quoted = (shlex.quote(f"{k}={json.dumps(v, sort_keys=True)}") for k, v in sorted(settings.items()))
    return " ".join(f"--set {q}" for q in quoted)


def reference_run_status(wildcards):
    """status.json of the run whose checkpoints host the reference_run protocol for this latent."""
    vae = config["vae"]
    ref = vae["reference_run"][wildcards.latent]
    return (f"results/vae/runs/{wildcards.dataset}/{wildcards.latent}/{ref}/s{vae['n_samples'][0]}/"
            f"{wildcards.device}/seed{wildcards.seed}/status.json")


def reference_estimator_json(wildcards):
    return json.dumps(_options(config["vae"]["estimators"][wildcards.estimator]), sort_keys=True)


def reference_samples_args(wildcards):
    return " ".join(f"--n-samples {n}" for n in config["vae"]["reference_n_samples"])

