rule aggregate:
    """Tidy concatenations, the variance-claim verdict, the ELBO (Jang et al. 2017 layout) and cost tables."""
    input:
        synthetic=SYNTHETIC_TABLES,
        skipped=SYNTHETIC_SKIPPED,
        metrics=VAE_METRICS,
        variance=VAE_VARIANCE,
        status=VAE_STATUS,
        reference=VAE_REFERENCE_TABLES,
    output:
        synthetic_all="results/tables/synthetic_all.csv",
        vae_metrics="results/tables/vae_metrics.csv",
        vae_variance="results/tables/vae_variance.csv",
        run_status="results/tables/run_status.csv",
        excluded="results/tables/excluded_cells.csv",
        claim=report("results/tables/variance_claim.csv", caption="../report/variance_claim.rst", category="Tables"),
        claim_md="results/tables/variance_claim.md",
        claim_tex="results/tables/variance_claim.tex",
        summary=report("results/tables/verdict_summary.csv", caption="../report/verdict_summary.rst", category="Tables"),
        elbo=report("results/tables/elbo_table.csv", caption="../report/elbo_table.rst", category="Tables"),
        elbo_md="results/tables/elbo_table.md",
        elbo_tex="results/tables/elbo_table.tex",
        cost=report("results/tables/cost_table.csv", caption="../report/cost_table.rst", category="Tables"),
        cost_md="results/tables/cost_table.md",
        cost_tex="results/tables/cost_table.tex",
        devices="results/tables/device_comparison.csv",
    log:
        "logs/aggregate.log",
    params:
        threshold=config.get("claim_threshold", 100),
        excluded=EXCLUDED,
    conda:
        "../envs/gradvar.yaml"
    script:
        "../scripts/aggregate.py"


rule figure:
    """One figure of the study, as PNG (in the report) and PDF."""
    input:
        synthetic_all="results/tables/synthetic_all.csv",
        vae_metrics="results/tables/vae_metrics.csv",
        vae_variance="results/tables/vae_variance.csv",
        cost="results/tables/cost_table.csv",
    output:
        png=report("results/figures/{figure}.png", caption="../report/figures.rst", category="Figures",
                   subcategory="{figure}"),
        pdf="results/figures/{figure}.pdf",
    log:
        "logs/figures/{figure}.log",
    params:
        figure=lambda wildcards: wildcards.figure,
    conda:
        "../envs/gradvar.yaml"
    script:
        "../scripts/plot.py"
