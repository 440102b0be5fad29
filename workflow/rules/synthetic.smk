rule synthetic:
    """Bias, variance, MSE and cost of one estimator on every exact-gradient problem, for every seed in one
    process (one start-up, not one per seed; each seed's tables are its own, and changing one estimator's
    options still reruns only that estimator's job)."""
    input:
        configs=every_seed(SYNTHETIC_JOB, "config.json"),
    output:
        tables=every_seed(SYNTHETIC_JOB, "synthetic.csv"),
        skipped=every_seed(SYNTHETIC_JOB, "skipped.csv"),
    log:
        f"{LOGS}/synthetic/{{device}}/{{estimator}}.log",
    params:
        seeds=lambda wildcards, input, output: " ".join(f"--config {c} --out {os.path.dirname(t)}"
                                                        for c, t in zip(input.configs, output.tables)),
    resources:
        runtime=synthetic_minutes,  # every seed, one after another
        mem_mb=synthetic_mem_mb,
        gpu=gpus,
    conda:
        "../envs/gradvar.yaml"
    threads: 1
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} python -m experiments.synthetic {params.seeds}"
        " > {log} 2>&1"
