rule vae_train:
    """One VAE training run (resumes from its checkpoint if it was interrupted)."""
    input:
        base=config["vae"]["base"],
    output:
        metrics="results/vae/runs/{dataset}/{latent}/{estimator}/s{samples}/{device}/seed{seed}/metrics.csv",
        variance="results/vae/runs/{dataset}/{latent}/{estimator}/s{samples}/{device}/seed{seed}/variance.csv",
        status="results/vae/runs/{dataset}/{latent}/{estimator}/s{samples}/{device}/seed{seed}/status.json",
    log:
        "logs/vae/{dataset}/{latent}/{estimator}/s{samples}/{device}/seed{seed}.log",
    params:
        out=lambda wildcards, output: os.path.dirname(output.status),
        args=vae_run_args,
    resources:
        gpu=lambda wildcards: 1 if wildcards.device.startswith("cuda") else 0,
    conda:
        "../envs/gradvar.yaml"
    threads: 1
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} python -m experiments.vae.train --config {input.base} --out {params.out} {params.args} > {log} 2>&1"


rule vae_reference:
    """Protocol reference_run: one estimator measured at the checkpoints of the latent's reference run."""
    input:
        status=reference_run_status,
    output:
        table="results/vae/reference/{dataset}/{latent}/{device}/seed{seed}/{estimator}.csv",
    log:
        "logs/vae_reference/{dataset}/{latent}/{device}/seed{seed}/{estimator}.log",
    params:
        run=lambda wildcards, input: os.path.dirname(input.status),
        estimator=reference_estimator_json,
        samples=reference_samples_args,
    resources:
        gpu=lambda wildcards: 1 if wildcards.device.startswith("cuda") else 0,
    conda:
        "../envs/gradvar.yaml"
    threads: 1
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} python -m experiments.vae.variance --run {params.run} --estimator {params.estimator:q}"
        " {params.samples} --out {output.table} > {log} 2>&1"
