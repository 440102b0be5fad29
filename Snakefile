# gradvar: Monte Carlo gradient estimator benchmark.
#   snakemake --cores all                      # the default, offline quick study
#   snakemake --cores all --configfile config/tiny.yaml
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/synthetic.smk"


rule all:
    input:
        synthetic="results/synthetic/synthetic.csv",
    default_target: True
