rule job_config:
    """The resolved config of one job, written next to its results; the job reads it from there, and a
    changed setting rewrites it, which reruns exactly the jobs it belongs to."""
    output:
        config=f"{R}/{{job}}/config.json",
    log:
        f"{LOGS}/job_config/{{job}}.log",
    params:
        json=lambda wildcards: job_config_json(wildcards.job),
    wildcard_constraints:
        job=r"(synthetic|vae)/.+",
    conda:
        "../envs/gradvar.yaml"
    shell:
        # printf, not a Python step: a run: block would start a Snakemake process for each of these jobs.
        "(printf '%s\\n' {params.json:q} > {output.config}.tmp && mv {output.config}.tmp {output.config}) 2> {log}"
