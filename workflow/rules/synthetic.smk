rule synthetic:
    """Bias, variance, MSE and cost of every estimator on the exact-gradient problems."""
    input:
        config=config["synthetic"]["config"],
    output:
        table="results/synthetic/synthetic.csv",
        skipped="results/synthetic/skipped.csv",
    log:
        "logs/synthetic.log",
    params:
        out=lambda wildcards, output: os.path.dirname(output.table),
        seed=config["seed"],
        device=config["synthetic"]["device"],
    threads: 2
    conda:
        "../envs/gradvar.yaml"
    shell:
        "python -m experiments.synthetic --config {input.config} --out {params.out}"
        " --seed {params.seed} --device {params.device} > {log} 2>&1"
