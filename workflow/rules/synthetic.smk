rule synthetic:
    """Bias, variance, MSE and cost of one estimator on every exact-gradient problem."""
    input:
        config=config["synthetic"]["config"],
    output:
        table="results/synthetic/{device}/seed{seed}/{estimator}/synthetic.csv",
        skipped="results/synthetic/{device}/seed{seed}/{estimator}/skipped.csv",
    log:
        "logs/synthetic/{device}/seed{seed}/{estimator}.log",
    params:
        out=lambda wildcards, output: os.path.dirname(output.table),
        estimator=synthetic_estimator_json,
    resources:
        gpu=lambda wildcards: 1 if wildcards.device.startswith("cuda") else 0,
    conda:
        "../envs/gradvar.yaml"
    threads: 1
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} python -m experiments.synthetic --config {input.config} --out {params.out}"
        " --seed {wildcards.seed} --device {wildcards.device} --estimator {params.estimator:q} > {log} 2>&1"
