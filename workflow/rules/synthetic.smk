rule synthetic:
    """Bias, variance, MSE and cost of one estimator on every exact-gradient problem, for every seed in one
    process (one start-up, not one per seed; each seed's tables are its own, and changing one estimator's
    options still reruns only that estimator's job)."""
    input:
        configs=expand(f"{R}/synthetic/{{device}}/seed{{seed}}/{{estimator}}/config.json", seed=config["seeds"],
                       allow_missing=True),
    output:
        tables=expand(f"{R}/synthetic/{{device}}/seed{{seed}}/{{estimator}}/synthetic.csv", seed=config["seeds"],
                      allow_missing=True),
        skipped=expand(f"{R}/synthetic/{{device}}/seed{{seed}}/{{estimator}}/skipped.csv", seed=config["seeds"],
                       allow_missing=True),
    log:
        f"{LOGS}/synthetic/{{device}}/{{estimator}}.log",
    params:
        seeds=lambda wildcards, input, output: " ".join(f"--config {c} --out {os.path.dirname(t)}"
                                                        for c, t in zip(input.configs, output.tables)),
    resources:
        gpu=lambda wildcards: 1 if wildcards.device.startswith("cuda") else 0,
    conda:
        "../envs/gradvar.yaml"
    threads: 1
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} python -m experiments.synthetic {params.seeds}"
        " > {log} 2>&1"
