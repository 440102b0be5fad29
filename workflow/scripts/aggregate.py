"""Snakemake script: read every job's tables, make the study's tables (``experiments.verdict.tables``), write them."""
import json
import logging
import os
import sys

from experiments.config.plan import make_plan
from experiments.runtime import cli, jobtime, result_tables
from experiments.runtime.io import atomic_write_text, write_csv_atomic
from experiments.verdict.findings import findings
from experiments.verdict.inputs import latent_names, read_inputs
from experiments.verdict.tables import REGISTRY, aggregate_study

sm = snakemake  # noqa: F821  (injected by Snakemake)
jobtime.mark_started("aggregate")
logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
log = logging.getLogger("aggregate")

# The study's values come from the rule's parameters (a change reruns this rule); the plan is made from the
# config with those values.
config = {**sm.config, "seeds": list(sm.params.seeds),
          "claim": {**sm.config["claim"], "threshold": sm.params.threshold,
                    "comparisons": json.loads(sm.params.comparisons)}}
plan = make_plan(config, list(sm.params.devices))
threshold = float(sm.params.threshold)
try:
    inputs = read_inputs(plan, latent_names(config["vae"]["latents"]), synthetic=sm.input.synthetic,
                         skipped=sm.input.skipped, metrics=sm.input.metrics, variance=sm.input.variance,
                         shared=sm.input.shared)
except result_tables.InputError as err:
    log.error("%s", err)
    sys.exit(f"error: {err}")
tables = aggregate_study(plan, inputs, threshold, [int(s) for s in sm.params.seeds])

# Every table as CSV, and as markdown and LaTeX where the rule asks for them (NAME.md, NAME.tex).
outputs = {os.path.basename(path): path for path in sm.output}
for name, frame in tables.items():
    write_csv_atomic(frame, outputs[f"{name}.csv"])
    if f"{name}.md" in outputs:
        atomic_write_text(outputs[f"{name}.md"], REGISTRY[name].markdown(frame))
    if f"{name}.tex" in outputs:
        atomic_write_text(outputs[f"{name}.tex"], REGISTRY[name].latex(frame))
claim, run_status = tables["variance_claim"], tables["run_status"]
atomic_write_text(sm.output.findings, findings(claim, tables["claim_summary"], threshold, run_status))  # in words
not_completed = run_status[run_status.status != "completed"]
log.info("aggregated %d synthetic rows, %d VAE runs (%d not completed), %d claim rows (%s)",
         len(tables["synthetic_all"]), len(run_status), len(not_completed), len(claim),
         claim["verdict"].value_counts().to_dict() if len(claim) else {})
cli.finish()  # the tables are written: skip the interpreter's teardown
