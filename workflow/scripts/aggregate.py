"""Snakemake script: read every result CSV, aggregate with experiments.verdict.aggregate, write the tables."""
import json
import logging
import os
from collections import Counter
import sys

import pandas as pd

from experiments.runtime import jobtime
from experiments.verdict import aggregate as agg
from experiments.verdict.findings import findings
from experiments.runtime import result_tables
from experiments.verdict.ranking import estimator_ranking
from experiments.runtime.io import atomic_write_text, write_csv_atomic
from experiments.config.jobs import EXCLUSION_COLUMNS, checkpoint_steps
from experiments.config.plan import make_plan
from experiments.config.typed_config import parse
from experiments.vae.latent import LatentSpec

sm = snakemake  # noqa: F821  (injected by Snakemake)
jobtime.mark_started("aggregate")
logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
log = logging.getLogger("aggregate")


def read_all(paths, kind, latents=None):
    """Every job's table of ``kind``, checked (``experiments.runtime.result_tables``): a table that is not what its
    job wrote stops the aggregation with one line naming it, never a wrong verdict. ``latents``: the job
    folder -> (latent id, the latent's name in the tables), set on each VAE table's rows."""
    frames = []
    for p in paths:
        frame = result_tables.read(p, kind)
        if frame.empty:
            continue
        if latents is not None:
            latent_id, name = latents[os.path.dirname(p)]
            frame = frame.assign(latent_id=latent_id, latent=name)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_table(frame, csv, md=None, tex=None):
    write_csv_atomic(frame, csv)
    if md:
        atomic_write_text(md, frame.to_markdown(index=False, floatfmt=".4g") if not frame.empty else "(empty)\n")
    if tex:
        atomic_write_text(tex, frame.to_latex(index=False, float_format="%.4g") if not frame.empty else "% empty\n")


# The study's values come from the rule's parameters (a change reruns this rule); the plan is made from the
# config with those values.
config = {**sm.config, "seeds": list(sm.params.seeds),
          "claim": {**sm.config["claim"], "threshold": sm.params.threshold,
                    "comparisons": json.loads(sm.params.comparisons)}}
plan = make_plan(config, list(sm.params.devices))
seeds = [int(s) for s in sm.params.seeds]
threshold = float(sm.params.threshold)

# A latent's name in the tables is its label (e.g. bernoulli(200)), unless two latents of the study share it
# (the same space under two models, presets or objectives): then the label with the latent id, so that no
# table or figure merges them.
label_of = {latent_id: parse(LatentSpec, {k: v for k, v in entry.items() if k not in ("preset", "settings")}).label()
            for latent_id, entry in config["vae"]["latents"].items()}
shared_labels = {label for label, count in Counter(label_of.values()).items() if count > 1}
name_of = {i: f"{label} {i}" if label in shared_labels else label for i, label in label_of.items()}
latents = {**{f"{plan.results}/{run.path}": (run.latent_id, name_of[run.latent_id]) for run in plan.vae_runs},
           **{f"{plan.results}/{job.path}": (job.host.latent_id, name_of[job.host.latent_id]) for job in plan.shared_jobs}}
try:
    synth = read_all(sm.input.synthetic, "synthetic")
    skipped = read_all(sm.input.skipped, "skipped")
    metrics = read_all(sm.input.metrics, "metrics", latents)
    own = read_all(sm.input.variance, "variance", latents)
    shared = read_all(sm.input.shared, "variance", latents)
    statuses = {run.path: result_tables.read_status(f"{plan.results}/{run.path}/status.json") for run in plan.vae_runs}
except result_tables.InputError as err:
    log.error("%s", err)
    sys.exit(f"error: {err}")
variance = pd.concat([f for f in (own, shared) if not f.empty], ignore_index=True) if len(own) + len(shared) else pd.DataFrame()

latent_ids = {}
hosts = {job.host for job in plan.shared_jobs}
status_rows = []
for run in plan.vae_runs:
    config = plan.job_config(run.path)
    status = statuses[run.path]
    label = name_of[run.latent_id]
    latent_ids[label] = run.latent_id
    status_rows.append({"run": f"{plan.results}/{run.path}", "dataset": run.dataset, "latent_id": run.latent_id,
                        "latent": label, "estimator_id": run.estimator_id, "n_samples": run.n_samples,
                        "device": run.device, "seed": run.seed, "lr": config["train"]["lr"],
                        "preset": config.get("preset") or "", "host": run in hosts,
                        "status": status["status"], "step": status["step"], "message": status.get("message", "")})
run_status = pd.DataFrame(status_rows, columns=["run", "dataset", "latent_id", "latent", "estimator_id", "n_samples",
                                                "device", "seed", "lr", "preset", "host", "status", "step", "message"])
final_steps = {(h.dataset, h.latent_id): (checkpoint_steps(plan.job_config(h.path)) or [0])[-1] for h in hosts}

# What the plan left out, then what each synthetic job found inapplicable (per problem setting).
excluded = pd.DataFrame([vars(e) for e in plan.excluded], columns=EXCLUSION_COLUMNS)
if not skipped.empty:
    syn = skipped.assign(experiment="synthetic", setting=skipped["problem"] + " " + skipped["setting"])
    excluded = pd.concat([excluded, syn[EXCLUSION_COLUMNS].drop_duplicates()], ignore_index=True)

declared = pd.DataFrame(plan.claim_rows)
by_source = {s: declared[declared["source"] == s].drop(columns="source").dropna(axis=1, how="all")
             for s in ("synthetic", "vae")} if len(declared) else {"synthetic": pd.DataFrame(), "vae": pd.DataFrame()}
claim = agg.claim_table(agg.synthetic_claim(synth, by_source["synthetic"], threshold, seeds),
                        agg.vae_claim(variance, by_source["vae"], threshold, seeds, final_steps, latent_ids, run_status))
summary = agg.claim_summary(claim, threshold)
# Learning-rate grids: the selection is made here, by the rule declared in select_learning_rates; the tables
# of training results then read the selected runs only (all runs stay in vae_metrics and vae_variance).
lr_selection = agg.select_learning_rates(metrics, run_status)
metrics, variance, run_status = (agg.mark_selected(f, lr_selection) for f in (metrics, variance, run_status))
selected = [agg.only_selected(f) for f in (metrics, variance, run_status)]
elbo = agg.elbo_table(selected[0], selected[2])
cost = agg.cost_table(selected[0], selected[1], synth)
devices = agg.device_comparison(synth, selected[0], selected[1])
ranking = estimator_ranking(synth, selected[1])   # descriptive: which estimator, where

write_csv_atomic(synth, sm.output.synthetic_all)
write_csv_atomic(metrics, sm.output.vae_metrics)
write_csv_atomic(variance, sm.output.vae_variance)
write_csv_atomic(run_status, sm.output.run_status)
write_csv_atomic(excluded, sm.output.excluded)
write_table(claim, sm.output.claim, sm.output.claim_md, sm.output.claim_tex)
write_csv_atomic(summary, sm.output.summary)
atomic_write_text(sm.output.summary_md, agg.claim_summary_markdown(summary))   # for a reader: <= 8 columns
write_table(lr_selection, sm.output.lr_selection, sm.output.lr_selection_md)
write_table(elbo, sm.output.elbo, sm.output.elbo_md, sm.output.elbo_tex)
write_table(cost, sm.output.cost, sm.output.cost_md, sm.output.cost_tex)
write_csv_atomic(devices, sm.output.devices)
write_table(ranking, sm.output.ranking, sm.output.ranking_md)
atomic_write_text(sm.output.findings, findings(claim, summary, threshold))   # the answer in words
not_completed = run_status[run_status.status != "completed"]
log.info("aggregated %d synthetic rows, %d VAE runs (%d not completed), %d claim rows (%s)", len(synth),
         len(run_status), len(not_completed), len(claim), claim["verdict"].value_counts().to_dict() if len(claim) else {})
