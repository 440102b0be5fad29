from experiments.runtime.cli import run_job
from experiments.synthetic.study import main

run_job(main)
