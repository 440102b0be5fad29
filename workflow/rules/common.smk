# Helpers shared by the rules: config validation.
import os

from snakemake.utils import validate


validate(config, "../schemas/config.schema.yaml")
