# gradvar: Monte Carlo gradient estimator benchmark.
#   snakemake --cores all                                   # the default, offline study
#   snakemake --cores all --configfile config/tiny.yaml     # the tests' tiny study
#   snakemake --report results/report.html                  # HTML report with every figure and table
from snakemake.utils import min_version

min_version("9.0")


# The default study unless another config is given (--configfile replaces it rather than merging into it,
# so a study's estimator and latent lists are exactly its own).
if not config:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/synthetic.smk"
include: "workflow/rules/vae.smk"
include: "workflow/rules/aggregate.smk"


rule all:
    input:
        claim="results/tables/variance_claim.csv",
        elbo="results/tables/elbo_table.csv",
        cost="results/tables/cost_table.csv",
        figures=expand("results/figures/{figure}.{ext}", figure=FIGURES, ext=["png", "pdf"]),
    default_target: True
