# gradvar: Monte Carlo gradient estimator benchmark.
#   snakemake --cores all                                   # the default, offline study
#   snakemake --cores all --configfile config/tiny.yaml     # the tests' tiny study
#   snakemake --report results/default/report.html          # HTML report with every figure and table
from snakemake.utils import min_version

min_version("9.0")


# The default study unless a config file is given (--configfile replaces it rather than merging into it,
# so a study's estimator and latent lists are exactly its own); --config KEY=VALUE layers onto either.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


include: "workflow/report/landing.smk"


report: report_page("workflow/report/workflow.rst", f"{R}/findings.md")


wildcard_constraints:
    device=DEVICE_PATTERN,
    seed=r"\d+",
    samples=r"\d+",
    estimator=ESTIMATOR_FOLDER_PATTERN,
    latent=ID_PATTERN,
    dataset=DATASET_PATTERN,


localrules:
    all,
    job_config,


include: "workflow/rules/jobs.smk"
include: "workflow/rules/synthetic.smk"
include: "workflow/rules/vae.smk"
include: "workflow/rules/aggregate.smk"


rule all:
    input:
        claim=f"{R}/tables/variance_claim.csv",
        elbo=f"{R}/tables/elbo_table.csv",
        cost=f"{R}/tables/cost_table.csv",
        findings=f"{R}/findings.md",
        figures=expand(f"{R}/figures/{{figure}}.{{ext}}", figure=FIGURES, ext=["png", "pdf"]),
        tables=expand(f"{R}/tables/{{table}}.html", table=TABLES),
    default_target: True
