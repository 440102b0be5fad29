rule aggregate:
    """Tidy concatenations, the variance-claim verdict, the ELBO (Jang et al. 2017 layout) and cost tables."""
    input:
        synthetic=SYNTHETIC_TABLES,
        skipped=SYNTHETIC_SKIPPED,
        metrics=VAE_METRICS,
        variance=VAE_VARIANCE,
        status=VAE_STATUS,
        shared=SHARED_TABLES,
    output:
        synthetic_all=f"{R}/tables/synthetic_all.csv",
        vae_metrics=f"{R}/tables/vae_metrics.csv",
        vae_variance=f"{R}/tables/vae_variance.csv",
        run_status=f"{R}/tables/run_status.csv",
        excluded=f"{R}/tables/excluded_cells.csv",
        claim=f"{R}/tables/variance_claim.csv",
        claim_md=f"{R}/tables/variance_claim.md",
        claim_tex=f"{R}/tables/variance_claim.tex",
        summary=f"{R}/tables/claim_summary.csv",
        summary_md=f"{R}/tables/claim_summary.md",
        lr_selection=f"{R}/tables/lr_selection.csv",
        lr_selection_md=f"{R}/tables/lr_selection.md",
        elbo=f"{R}/tables/elbo_table.csv",
        elbo_md=f"{R}/tables/elbo_table.md",
        elbo_tex=f"{R}/tables/elbo_table.tex",
        cost=f"{R}/tables/cost_table.csv",
        cost_md=f"{R}/tables/cost_table.md",
        cost_tex=f"{R}/tables/cost_table.tex",
        devices=f"{R}/tables/device_comparison.csv",
        ranking=f"{R}/tables/estimator_ranking.csv",
        ranking_md=f"{R}/tables/estimator_ranking.md",
        findings=f"{R}/findings.md",
    log:
        f"{LOGS}/aggregate.log",
    params:
        # Every config value the tables depend on beyond their inputs, so that changing one reruns this rule.
        threshold=config["claim"]["threshold"],
        comparisons=canonical_json(config["claim"]["comparisons"]),
        seeds=config["seeds"],
        devices=sorted({job.device for job in PLAN.synthetic_jobs + PLAN.vae_runs}),
    resources:
        runtime=job_resources.AGGREGATE_MINUTES,
        mem_mb=job_resources.AGGREGATE_MEM_MB,
    conda:
        "../envs/gradvar.yaml"
    script:
        "../scripts/aggregate.py"


rule tables_html:
    """Every table of the study as HTML, shown inline in the report, each with its own caption (one job)."""
    input:
        **{table: f"{R}/tables/{table}.csv" for table in TABLES},
    output:
        **{table: report(f"{R}/tables/{table}.html", caption=caption_file("tables", table, TABLES[table]),
                         category="Tables", subcategory=table) for table in TABLES},
    log:
        f"{LOGS}/tables_html.log",
    params:
        tables=list(TABLES),
    resources:
        runtime=job_resources.REPORT_MINUTES,
        mem_mb=job_resources.REPORT_MEM_MB,
    conda:
        "../envs/gradvar.yaml"
    script:
        "../scripts/table_html.py"


rule figures:
    """Every figure of the study, as PNG (in the report, each with its own caption) and PDF (one job)."""
    input:
        **{table: f"{R}/tables/{table}.csv" for table in FIGURE_TABLES},
    output:
        **{f"{figure}_png": report(f"{R}/figures/{figure}.png", caption=caption_file("figures", figure,
                                                                                     FIGURES[figure].caption),
                                   category="Figures", subcategory=figure) for figure in FIGURES},
        **{f"{figure}_pdf": f"{R}/figures/{figure}.pdf" for figure in FIGURES},
    log:
        f"{LOGS}/figures.log",
    params:
        figures=list(FIGURES),
        threshold=config["claim"]["threshold"],
    resources:
        runtime=job_resources.REPORT_MINUTES,
        mem_mb=job_resources.REPORT_MEM_MB,
    threads: job_resources.FIGURE_PROCESSES
    conda:
        "../envs/gradvar.yaml"
    script:
        "../scripts/plot.py"
