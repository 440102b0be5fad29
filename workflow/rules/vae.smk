rule vae_train:
    """One VAE training run (resumes from its checkpoint if it was interrupted)."""
    input:
        config=f"{R}/vae/runs/{{dataset}}/{{latent}}/{{estimator}}/s{{samples}}/{{device}}/seed{{seed}}/config.json",
    output:
        metrics=f"{R}/vae/runs/{{dataset}}/{{latent}}/{{estimator}}/s{{samples}}/{{device}}/seed{{seed}}/metrics.csv",
        variance=f"{R}/vae/runs/{{dataset}}/{{latent}}/{{estimator}}/s{{samples}}/{{device}}/seed{{seed}}/variance.csv",
        status=f"{R}/vae/runs/{{dataset}}/{{latent}}/{{estimator}}/s{{samples}}/{{device}}/seed{{seed}}/status.json",
    log:
        f"{LOGS}/vae/{{dataset}}/{{latent}}/{{estimator}}/s{{samples}}/{{device}}/seed{{seed}}.log",
    params:
        out=lambda wildcards, output: os.path.dirname(output.status),
    resources:
        gpu=lambda wildcards: 1 if wildcards.device.startswith("cuda") else 0,
    conda:
        "../envs/gradvar.yaml"
    threads: 1
    wildcard_constraints:
        estimator=folders_pattern(SINGLE_FOLDERS),
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} python -m experiments.vae.train"
        " --config {input.config} --out {params.out} > {log} 2>&1"


_STACKED_RUN = f"{R}/vae/runs/{{dataset}}/{{latent}}/{{estimator}}/s{{samples}}/{{device}}/seed{{seed}}"


rule vae_train_stacked:
    """The seeds of one cell trained as one batched model (vae.stack_seeds; each run's files as vae_train's)."""
    input:
        configs=lambda wildcards: [f"{run}/config.json" for run in stacked_runs(wildcards)],
    output:
        metrics=expand(f"{_STACKED_RUN}/metrics.csv", seed=config["seeds"], allow_missing=True),
        variance=expand(f"{_STACKED_RUN}/variance.csv", seed=config["seeds"], allow_missing=True),
        status=expand(f"{_STACKED_RUN}/status.json", seed=config["seeds"], allow_missing=True),
    log:
        f"{LOGS}/vae_stacked/{{dataset}}/{{latent}}/{{estimator}}/s{{samples}}/{{device}}.log",
    params:
        members=lambda wildcards: " ".join(f"--config {run}/config.json --out {run}" for run in stacked_runs(wildcards)),
    resources:
        gpu=lambda wildcards: 1 if wildcards.device.startswith("cuda") else 0,
    conda:
        "../envs/gradvar.yaml"
    threads: 1
    wildcard_constraints:
        estimator=folders_pattern(STACKED_FOLDERS),
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} python -m experiments.vae.stacked"
        " {params.members} > {log} 2>&1"


rule vae_shared_checkpoints:
    """Protocol shared_checkpoints: every applicable estimator measured at the checkpoints of a latent's
    host run."""
    input:
        config=f"{R}/vae/shared_checkpoints/{{dataset}}/{{latent}}/{{device}}/seed{{seed}}/config.json",
        host=host_run_status,
    output:
        table=f"{R}/vae/shared_checkpoints/{{dataset}}/{{latent}}/{{device}}/seed{{seed}}/variance.csv",
    log:
        f"{LOGS}/vae_shared_checkpoints/{{dataset}}/{{latent}}/{{device}}/seed{{seed}}.log",
    resources:
        gpu=lambda wildcards: 1 if wildcards.device.startswith("cuda") else 0,
    conda:
        "../envs/gradvar.yaml"
    threads: 1
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} python -m experiments.vae.shared_checkpoints"
        " --config {input.config} --out {output.table} > {log} 2>&1"
