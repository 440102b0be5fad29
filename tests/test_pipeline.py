"""End to end: the tiny config through Snakemake in a temporary folder, and config validation."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from experiments.verdict.tables import TABLES
from experiments.config import study_config
from experiments.config.plan import make_plan
from experiments.verdict.plots import FIGURES
from studies import copy_workflow, tables as tables_target

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def _snakemake(workdir: Path, *args, check=True):
    res = subprocess.run([*SNAKEMAKE, "--cores", "2", *args], cwd=workdir, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    workdir = copy_workflow(tmp_path_factory.mktemp("pipeline"))
    _snakemake(workdir, "--configfile", "config/tiny.yaml")
    return workdir


def test_every_table_and_figure_exists(tiny):
    tables = tiny / "results" / "tiny" / "tables"
    for name in ("variance_claim", "elbo_table", "cost_table"):
        for ext in ("csv", "md", "tex"):
            assert (tables / f"{name}.{ext}").stat().st_size > 0
    assert (tables / "claim_summary.md").stat().st_size > 0
    for name in ("claim_summary", "device_comparison", "excluded_cells", "run_status", "synthetic_all",
                 "vae_metrics", "vae_variance", "estimator_ranking"):
        assert (tables / f"{name}.csv").exists()
    for fig in FIGURES:
        for ext in ("png", "pdf"):
            assert (tiny / "results" / "tiny" / "figures" / f"{fig}.{ext}").stat().st_size > 1000
    claim = pd.read_csv(tables / "variance_claim.csv")
    assert {"setting_label", "comparison", "estimator_id", "estimator_name", "estimator_label", "comparator_id",
            "variance_ratio", "ci_low", "ci_high", "interval", "verdict", "n_seeds", "work_ratio", "equal_cost_ratio",
            "mse_ratio", "comparator_bias_norm", "comparator_mse"} <= set(claim.columns)
    assert set(claim.verdict) == {"undecided"} and set(claim.interval) == {"measurement_only"}  # one seed
    assert set(claim.source) == {"synthetic", "vae"}
    assert set(claim.comparison) == {"reinforce_over_pathwise", "reinforce_over_relaxation"}
    # only fair pairings: the VAE rows come from the shared checkpoints, none from own runs
    assert set(claim[claim.source == "vae"].stage) == {"start", "middle", "late"}
    relaxed = claim[claim.comparison == "reinforce_over_relaxation"]
    assert (relaxed.comparator_bias_norm > 0).all() and relaxed.mse_ratio.notna().all()


def test_every_figure_of_the_tiny_study_is_legible(tiny):
    """The saved figures are at most 4000 pixels tall, and none has overlapping titles, labels or legends."""
    from PIL import Image

    from experiments.verdict.plots import FIGURE_TABLES
    from experiments.runtime.provenance import TEXT_DTYPES
    from test_figures import MAX_PIXELS, overlapping

    results = tiny / "results" / "tiny"
    for name in FIGURES:
        with Image.open(results / "figures" / f"{name}.png") as image:
            assert image.size[1] <= MAX_PIXELS, (name, image.size)
    tables = {t: pd.read_csv(results / "tables" / f"{t}.csv", dtype=TEXT_DTYPES) for t in FIGURE_TABLES}
    for name, spec in FIGURES.items():
        assert not overlapping(spec.draw(tables, 100.0)), name


def test_tables_agree_with_the_raw_csvs(tiny):
    results = tiny / "results" / "tiny"
    claim = pd.read_csv(results / "tables" / "variance_claim.csv")
    raw = {est: pd.read_csv(results / "synthetic" / "cpu" / "seed0" / est / "synthetic.csv")
           for est in ("pathwise", "reinforce")}
    pick = lambda f: f[(f.problem == "dimension") & (f.dim == 10) & (f.parameter == "loc") & (f.n_samples == 1)]  # noqa: E731
    expected = float(pick(raw["reinforce"]).total_variance.iloc[0] / pick(raw["pathwise"]).total_variance.iloc[0])
    row = claim[(claim.problem == "dimension") & (claim.setting == '{"dim": 10}') & (claim.parameter == "loc")
                & (claim.n_samples == 1) & (claim.estimator_id == "reinforce")]
    assert len(row) == 1 and row.variance_ratio.iloc[0] == pytest.approx(expected, rel=1e-9)
    assert row.ci_low.iloc[0] <= expected <= row.ci_high.iloc[0]

    elbo = pd.read_csv(results / "tables" / "elbo_table.csv")
    run = results / "vae" / "runs" / "digits" / "categorical" / "gumbel" / "s2" / "cpu" / "seed0"
    metrics = pd.read_csv(run / "metrics.csv")
    final = metrics[(metrics.split == "test")].sort_values("step").iloc[-1]
    row = elbo[(elbo.latent == "categorical(2x3)") & (elbo.estimator_id == "gumbel")]
    assert row.neg_elbo_mean.iloc[0] == pytest.approx(-final.elbo)
    assert row.anchor_neg_elbo.isna().all()   # not a published model: nothing to print beside it
    assert json.loads((run / "status.json").read_text())["status"] == "completed"


def test_unsupported_combinations_are_listed(tiny):
    excluded = pd.read_csv(tiny / "results" / "tiny" / "tables" / "excluded_cells.csv")
    vae = excluded[excluded.experiment == "vae"]
    assert {("gaussian", "gumbel"), ("categorical", "pathwise")} <= set(zip(vae.setting, vae.estimator_id))
    synthetic = excluded[excluded.experiment == "synthetic"]
    assert synthetic.reason.str.contains("below its minimum 2").any()
    assert synthetic.reason.str.contains("has no reparameterized sampler").any()


def test_rerun_does_nothing_and_option_change_reruns_only_its_jobs(tiny):
    assert "Nothing to be done" in _snakemake(tiny, "--configfile", "config/tiny.yaml", "-n").stdout
    config = yaml.safe_load((tiny / "config" / "tiny.yaml").read_text())
    config["synthetic"]["estimators"]["gumbel"]["temperature"] = 0.25
    (tiny / "config" / "changed.yaml").write_text(yaml.safe_dump(config))
    out = _snakemake(tiny, "--configfile", "config/changed.yaml", "-n").stdout
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[1], flags=re.M))
    assert jobs.get("synthetic") == "1" and jobs.get("job_config") == "1"
    assert "vae_train" not in jobs and "vae_shared_checkpoints" not in jobs
    assert "results/tiny/synthetic/cpu/seed0/gumbel/synthetic.csv" in out


def test_report_and_lint(tiny):
    _snakemake(tiny, "--configfile", "config/tiny.yaml", "--report", "report.html")
    report = (tiny / "report.html").read_text(errors="replace")
    assert len(report) > 10_000
    for name, caption in {**TABLES, **{n: f.caption for n, f in FIGURES.items()}}.items():
        assert f"{name}.html" in report or f"{name}.png" in report, name
        assert caption.split(":")[0][:40] in report, name   # each with its own caption
    assert (tiny / "results" / "tiny" / "tables" / "variance_claim.html").stat().st_size > 1000
    # the landing page: the study's findings in words, and the way to the claim figure
    findings = (tiny / "results" / "tiny" / "findings.md").read_text()
    sentences = [re.match(r"[\w ,.()=\[\]]+", line[2:]).group(0) for line in findings.splitlines()
                 if line.startswith("- ")]
    assert sentences and all(len(s) >= 20 and s in report for s in sentences), sentences
    assert "showResultInfo('results/tiny/figures/claim.png')" in report.split("workflow_desc")[1]
    lint = subprocess.run([*SNAKEMAKE, "--lint"], cwd=tiny, capture_output=True, text=True)
    assert "Congratulations, your workflow is in a good condition" in lint.stdout + lint.stderr


def _bad_config(workdir: Path, mutate) -> str:
    config = yaml.safe_load((workdir / "config" / "tiny.yaml").read_text())
    mutate(config)
    (workdir / "config" / "bad.yaml").write_text(yaml.safe_dump(config))
    res = _snakemake(workdir, "--configfile", "config/bad.yaml", "-n", check=False)
    assert res.returncode != 0
    assert not (workdir / "results").exists() and not (workdir / "logs").exists(), "a job ran"
    return res.stdout + res.stderr


@pytest.mark.parametrize("mutate, line", [
    (lambda c: c.update(sedes=[0]), "config error: sedes: unknown key (did you mean 'seeds'?); valid keys: "),
    (lambda c: c["vae"]["settings"]["train"].update(stesp=10),
     "config error: vae.settings.train.stesp: unknown key (did you mean 'steps'?)"),
    (lambda c: c["synthetic"]["estimators"]["gumbel"].update(tau=1),
     "config error: synthetic.estimators.gumbel.tau: unknown option for estimator 'gumbel_softmax'"),
    (lambda c: c["synthetic"]["settings"]["measurement"].update(max_estimate=10),
     "config error: synthetic.settings.measurement.max_estimate: unknown key (did you mean 'max_estimates'?)"),
])
def test_a_typo_fails_before_any_job_with_one_line(workflow_copy, mutate, line):
    out = _bad_config(workflow_copy, mutate)
    assert line in out
    assert "Traceback" not in out and "properties:" not in out  # no schema dump, no traceback


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_the_mnist_study_validates_and_plans_with_snakemake(workflow_copy):
    """config/mnist.yaml (the MNIST-scale claim, about an hour on 2 cores) passes validation and a
    dry run."""
    res = _snakemake(workflow_copy, "-n", "--configfile", "config/mnist.yaml")
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", res.stdout.split("Job stats:")[1], flags=re.M))
    # hosts: 4 latents x 3 seeds; pathwise trains beside stl on gaussian_mc_kl (3 more)
    assert jobs["vae_train"] == "15" and jobs["vae_shared_checkpoints"] == "12", res.stdout[-2000:]


def test_cuda_without_a_gpu_fails_at_validation(workflow_copy):
    out = _bad_config(workflow_copy, lambda c: c.update(devices=["cpu", "cuda"]))
    assert "devices: ['cuda'] are not on this machine" in out and "drop_unavailable_devices" in out


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_the_paper_study_dry_runs_with_the_advice_of_its_device_error(workflow_copy):
    """On a submit host without a GPU the paper config is refused with a way out; taken as written, it works."""
    workdir = workflow_copy
    refused = _snakemake(workdir, "-n", "--configfile", "config/paper.yaml", check=False)
    advice = re.search(r"pass --config (\S+)", refused.stdout + refused.stderr)
    assert refused.returncode != 0 and advice, refused.stdout[-2000:]
    res = _snakemake(workdir, "-n", "--configfile", "config/paper.yaml", "--config", advice.group(1))
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", res.stdout.split("Job stats:")[1], flags=re.M))
    config = study_config.check(yaml.safe_load((ROOT / "config" / "paper.yaml").read_text()))
    plan = make_plan(config, config["devices"])
    stacked = sum(len(job.runs) for job in plan.stacked_jobs)
    assert int(jobs["vae_train"]) == len(plan.vae_runs) - stacked
    assert int(jobs.get("vae_train_stacked", 0)) == len(plan.stacked_jobs)


def test_results_readme_lists_the_figure_registry():
    text = (ROOT / "results" / "README.md").read_text()
    section = text.split("## figures/")[1].split("\n## ")[0]
    rows = re.findall(r"^\| `(\w+)` \| (.+) \|$", section, flags=re.M)
    assert rows == [(name, spec.caption) for name, spec in FIGURES.items()]


def test_a_changed_setting_reruns_exactly_its_jobs_and_they_complete(tiny, tmp_path):
    work = tmp_path / "changed"
    shutil.copytree(tiny, work, symlinks=True)
    config = yaml.safe_load((work / "config" / "tiny.yaml").read_text())
    config["vae"]["estimators"]["reinforce_loo"]["baseline"] = "weighted_leave_one_out"
    config["vae"]["settings"]["train"]["steps"] = 70
    (work / "config" / "changed.yaml").write_text(yaml.safe_dump(config))
    plan = _snakemake(work, "--configfile", "config/changed.yaml", "-n").stdout
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", plan.split("Job stats:")[1], flags=re.M))
    assert jobs.get("vae_train") == "4" and "synthetic" not in jobs  # train.steps changes every run, nothing else
    _snakemake(work, "--configfile=config/changed.yaml", tables_target("tiny"))
    status = pd.read_csv(work / "results" / "tiny" / "tables" / "run_status.csv")
    assert set(status.status) == {"completed"} and set(status.step) == {70}
    elbo = pd.read_csv(work / "results" / "tiny" / "tables" / "elbo_table.csv")
    assert set(elbo.final_step) == {70}
    assert "reinforce(baseline='weighted_leave_one_out')" in set(elbo.estimator_label)
    assert list((work / "results" / "tiny" / "vae" / "runs").rglob("checkpoints.stale-*"))


def test_a_diverged_run_is_missing_with_its_reason_not_dropped(workflow_copy):
    workdir = workflow_copy
    config = yaml.safe_load((workdir / "config" / "tiny.yaml").read_text())
    config["vae"]["settings"]["fault"] = {"nan_at_step": 45}       # every run diverges after the middle checkpoint
    config["synthetic"]["settings"]["problems"] = {"dimension": {"dims": [1]}}
    (workdir / "config" / "diverging.yaml").write_text(yaml.safe_dump(config))
    _snakemake(workdir, "--configfile=config/diverging.yaml", tables_target("tiny"), "results/tiny/figures/claim.png")
    tables = workdir / "results" / "tiny" / "tables"
    claim = pd.read_csv(tables / "variance_claim.csv")
    vae = claim[claim.source == "vae"]
    late = vae[vae.stage == "late"]
    assert len(late) and set(late.verdict) == {"missing"}
    assert set(late.reason) == {"seed 0: host run diverged at step 45"}
    assert set(vae[vae.stage != "late"].verdict) == {"undecided"}
    elbo = pd.read_csv(tables / "elbo_table.csv")
    assert (elbo.n_diverged == 1).all() and (elbo.n_seeds == 0).all() and elbo.neg_elbo_mean.isna().all()
    status = pd.read_csv(tables / "run_status.csv")
    assert set(status.status) == {"diverged"} and set(status.step) == {45}


def test_every_csv_reads_with_pandas_and_files_respect_the_umask(tiny):
    results = tiny / "results" / "tiny"
    mask = os.umask(0)
    os.umask(mask)
    csvs = list(results.rglob("*.csv"))
    assert len(csvs) > 20
    for path in csvs:
        frame = pd.read_csv(path)          # header-only where empty (device_comparison in a one-device study)
        assert len(frame.columns), path
    assert pd.read_csv(results / "tables" / "device_comparison.csv").empty
    for path in [*csvs, *results.rglob("*.json")]:
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, (path, oct(path.stat().st_mode))
