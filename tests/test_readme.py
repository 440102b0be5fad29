"""Every README snippet runs as written, and the worked example of adding an estimator works end to end."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

import estimators
from studies import copy_workflow

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"(?:<!-- (?P<tag>[^>]*) -->\n)?```(?P<lang>\w+)\n(?P<body>.*?)```", re.S)


def _blocks(lang: str, tag: str | None = None) -> list[str]:
    return [m["body"] for m in BLOCK.finditer(README) if m["lang"] == lang and (m["tag"] or None) == tag]


def test_python_snippets_run():
    namespace: dict = {}
    blocks = _blocks("python")
    assert len(blocks) >= 2
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - the README's own code


def test_command_line_snippets_run(tmp_path):
    """The synthetic and VAE command lines of the README, as written, in a copy of the repository."""
    work = copy_workflow(tmp_path, code=True)  # its jobs run the copy's code (PYTHONPATH)
    env = {**os.environ, "PYTHONPATH": str(work)}
    commands = [b for b in _blocks("bash") if b.lstrip().startswith("python -m experiments.")]
    assert len(commands) == 2
    for block in commands:
        res = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=work, env=env,
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-3000:]
    assert len(pd.read_csv(work / "results/demo/synthetic/synthetic.csv"))
    shared = pd.read_csv(work / "results/demo/loo.csv")
    assert set(shared.estimator_id) == {"reinforce_loo", "gumbel"}
    assert set(shared[shared.estimator_id == "reinforce_loo"].measured_n_samples) == {2, 4}


def test_estimator_table_says_what_the_declarations_say():
    rows = dict(re.findall(r"^\| `(\w+)`[^|]*\|[^|]*\| ([^|]+) \| [^|]+ \|$", README, flags=re.M))
    assert set(rows) == set(estimators.available()) - {"st_gumbel_softmax"}
    for name, applies_to in rows.items():
        assert applies_to == estimators.estimator_class(name).families_doc


@pytest.mark.parametrize("where", ["package", "own_module"])
def test_adding_an_estimator_takes_one_file_and_one_config_line(tmp_path, where):
    work = copy_workflow(tmp_path, code=True)  # its jobs run the copy's code (PYTHONPATH)
    (code,) = _blocks("python", "example-estimator: fixed_baseline.py")
    (line,) = _blocks("yaml", "example-config-line")
    config = work / "config" / "tiny.yaml"
    if where == "package":
        (work / "estimators" / "fixed_baseline.py").write_text(code)
        config.write_text(config.read_text() + "\n" + line)
    else:  # outside the package, named in the config
        (work / "my_estimators.py").write_text(code)
        config.write_text(config.read_text() + "\n" + line + "modules: [my_estimators]\n")
    assert yaml.safe_load(config.read_text())["estimators"] == {"fixed_b1": {"name": "fixed_baseline", "b": 1.0}}
    env = {**os.environ, "PYTHONPATH": str(work)}
    snakemake = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile=config/tiny.yaml"]
    plan = subprocess.run([*snakemake, "-n"], cwd=work, env=env, capture_output=True, text=True)
    assert plan.returncode == 0, plan.stderr[-3000:]
    for target in ("results/tiny/synthetic/cpu/seed0/fixed_b1/synthetic.csv",
                   "results/tiny/vae/runs/digits/gaussian/fixed_b1/s2/cpu/seed0/status.json",
                   "results/tiny/vae/runs/digits/categorical/fixed_b1/s2/cpu/seed0/status.json",
                   "results/tiny/vae/shared_checkpoints/digits/gaussian/cpu/seed0/variance.csv"):
        assert target in plan.stdout
    targets = ["results/tiny/synthetic/cpu/seed0/fixed_b1/synthetic.csv",
               "results/tiny/vae/runs/digits/categorical/fixed_b1/s2/cpu/seed0/status.json"]
    if where == "package":  # the whole tiny study, up to the verdict, with the shared checkpoints
        targets += ["results/tiny/vae/shared_checkpoints/digits/gaussian/cpu/seed0/variance.csv",
                    "results/tiny/tables/variance_claim.csv"]
    res = subprocess.run([*snakemake, *targets], cwd=work, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    synthetic = pd.read_csv(work / targets[0])
    assert set(synthetic.estimator_id) == {"fixed_b1"} and set(synthetic.estimator_name) == {"fixed_baseline"}
    assert set(synthetic.problem) == {"mohamed_cos", "dimension", "bernoulli_toy"}
    assert '"status": "completed"' in (work / targets[1]).read_text()
    if where != "package":
        return
    shared = pd.read_csv(work / targets[2])
    assert "fixed_b1" in set(shared.estimator_id)
    assert "fixed_b1" in {e["id"] for e in
                          json.loads((work / targets[2]).with_name("config.json").read_text())["estimators"]}
    # Its declared role puts it into the default comparisons: the verdict has its rows.
    tables = work / "results/tiny/tables"
    verdict = pd.read_csv(tables / "variance_claim.csv")
    assert ({"reinforce_over_pathwise", "reinforce_over_relaxation"}
            <= set(verdict[verdict.estimator_id == "fixed_b1"].comparison))
    assert "fixed_b1" in set(pd.read_csv(tables / "claim_summary.csv").estimator)
    # The README's explicit declaration replaces the comparisons, and the aggregation (only it) reruns.
    (comparison,) = _blocks("yaml", "example-comparison")
    config.write_text(config.read_text() + "\n" + comparison)
    plan = subprocess.run([*snakemake, "-n", "--quiet", "rules"], cwd=work, env=env, capture_output=True, text=True)
    assert plan.returncode == 0, plan.stderr[-3000:]
    rerun = set(re.findall(r"^(\w+)\s+\d+$", plan.stdout, flags=re.M)) - {"total"}
    assert "aggregate" in rerun and not rerun & {"synthetic", "vae_train", "vae_shared_checkpoints"}, plan.stdout
    res = subprocess.run([*snakemake, "results/tiny/tables/variance_claim.csv"], cwd=work, env=env,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (set(pd.read_csv(tables / "variance_claim.csv").comparison)
            == {"fixed_over_pathwise", "fixed_over_relaxation"})


SNAPSHOT_BLOCKS = sorted(re.findall(r"<!-- (findings|claim-summary):(\w+):start -->", README))
SNAPSHOT_STUDIES = sorted({study for _, study in SNAPSHOT_BLOCKS})


def test_the_readme_shows_the_default_the_mnist_and_the_across_k_answers():
    assert SNAPSHOT_STUDIES == ["default", "iwae_k", "mnist"]


@pytest.mark.parametrize("study", SNAPSHOT_STUDIES)
def test_the_readme_shows_the_committed_answer(study):
    from experiments.verdict import snapshot

    results = snapshot.folder(study)
    assert (results / "figures" / "claim.png").stat().st_size > 10_000
    assert f"](results/snapshots/{study}/figures/claim.png)" in README
    kinds = [kind for kind, name in SNAPSHOT_BLOCKS if name == study]
    assert kinds, study
    assert kinds == ["findings"]  # every study's answer is read in words
    for kind in kinds:  # the README shows what the snapshot holds
        assert snapshot.readme_block(study, README, kind) == (results / snapshot.BLOCKS[kind]).read_text().strip()
    provenance = (results / "SNAPSHOT.md").read_text()
    assert re.search(r"^- commit: g[0-9a-f]{12} ", provenance, flags=re.M), provenance  # one commit, no changes on it
    # A snapshot holds what KEPT was when it was taken, and lists it.
    listed = re.search(r"^- files: (.*)$", provenance, flags=re.M).group(1)
    kept = [name for name in snapshot.KEPT if f"`{name}`" in listed]
    assert {"figures/claim.png", "tables/claim_summary.md", "tables/variance_claim.md"} <= set(kept), listed
    assert kept == list(snapshot.KEPT)   # every committed snapshot holds all of KEPT
    for name in kept:  # committed, and let in by .gitignore
        assert (results / name).stat().st_size > 0
        ignored = subprocess.run(["git", "check-ignore", "-q", str(results / name)], cwd=ROOT)
        assert ignored.returncode == 1, f"{results / name} is ignored by .gitignore"
        # the pipeline's own copy of the same file is ignored: running the study leaves git status clean
        ignored = subprocess.run(["git", "check-ignore", "-q", f"results/{study}/{name}"], cwd=ROOT)
        assert ignored.returncode == 0, f"results/{study}/{name} is not ignored by .gitignore"
