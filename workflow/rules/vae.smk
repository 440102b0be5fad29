# The VAE rules. Every path is a job folder template of experiments.config.jobs (job_file, every_seed), the same
# templates each job's path fills in; resources are estimated from each job's config (common.smk).


rule vae_train:
    """One VAE training run (resumes from its checkpoint if it was interrupted)."""
    input:
        config=job_file(VAE_RUN, "config.json"),
    output:
        metrics=job_file(VAE_RUN, "metrics.csv"),
        variance=job_file(VAE_RUN, "variance.csv"),
        status=job_file(VAE_RUN, "status.json"),
    log:
        f"{LOGS}/vae/{{dataset}}/{{latent}}/{{estimator}}/s{{samples}}/{{device}}/seed{{seed}}.log",
    params:
        out=lambda wildcards, output: os.path.dirname(output.status),
    resources:
        runtime=training_minutes,
        mem_mb=training_mem_mb,
        gpu=gpus,
    conda:
        "../envs/gradvar.yaml"
    threads: 1
    wildcard_constraints:
        estimator=folders_pattern(SINGLE_FOLDERS),
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} python -m experiments.vae.train"
        " --config {input.config} --out {params.out} > {log} 2>&1"


rule vae_train_stacked:
    """The seeds of one cell in one job (each run's files as vae_train's): trained as one batched model
    (vae.stack_seeds) where the estimator can be stacked, else one after another (vae.sequential_seeds)."""
    input:
        configs=lambda wildcards: [f"{run}/config.json" for run in stacked_runs(wildcards)],
    output:
        metrics=every_seed(VAE_RUN, "metrics.csv"),
        variance=every_seed(VAE_RUN, "variance.csv"),
        status=every_seed(VAE_RUN, "status.json"),
    log:
        f"{LOGS}/vae_stacked/{{dataset}}/{{latent}}/{{estimator}}/s{{samples}}/{{device}}.log",
    params:
        members=lambda wildcards: " ".join(
            f"--config {run}/config.json --out {run}" for run in stacked_runs(wildcards)
        ),
        mode=stacked_mode,
    resources:
        runtime=training_minutes,  # every seed's steps: a stacked job of N seeds asks N runs' time
        mem_mb=training_mem_mb,
        gpu=gpus,
    conda:
        "../envs/gradvar.yaml"
    threads: 1
    wildcard_constraints:
        estimator=folders_pattern(STACKED_FOLDERS),
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} python -m experiments.vae.stacked"
        " {params.members} {params.mode} > {log} 2>&1"


rule vae_shared_checkpoints:
    """Protocol shared_checkpoints: every applicable estimator measured at the checkpoints of a latent's
    host run."""
    input:
        config=job_file(SHARED_CHECKPOINTS_JOB, "config.json"),
        host=host_run_status,
    output:
        table=job_file(SHARED_CHECKPOINTS_JOB, "variance.csv"),
    log:
        f"{LOGS}/vae_shared_checkpoints/{{dataset}}/{{latent}}/{{device}}/seed{{seed}}.log",
    resources:
        runtime=shared_checkpoints_minutes,
        mem_mb=shared_checkpoints_mem_mb,
        gpu=gpus,
    conda:
        "../envs/gradvar.yaml"
    threads: 1
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} python -m experiments.vae.shared_checkpoints"
        " --config {input.config} --out {output.table} > {log} 2>&1"
