rule synthetic:
    """Bias, variance, MSE and cost of one estimator on every exact-gradient problem."""
    input:
        config=f"{R}/synthetic/{{device}}/seed{{seed}}/{{estimator}}/config.json",
    output:
        table=f"{R}/synthetic/{{device}}/seed{{seed}}/{{estimator}}/synthetic.csv",
        skipped=f"{R}/synthetic/{{device}}/seed{{seed}}/{{estimator}}/skipped.csv",
    log:
        f"{LOGS}/synthetic/{{device}}/seed{{seed}}/{{estimator}}.log",
    params:
        out=lambda wildcards, output: os.path.dirname(output.table),
    resources:
        gpu=lambda wildcards: 1 if wildcards.device.startswith("cuda") else 0,
    conda:
        "../envs/gradvar.yaml"
    threads: 1
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} python -m experiments.synthetic"
        " --config {input.config} --out {params.out} > {log} 2>&1"
