"""Commit a study's answer: its claim figure and summary, with provenance, into the repository's README.

    snakemake --cores all && python -m experiments.snapshot --study default --wall-time "7 min 40 s"

Keeps the files of ``KEPT`` (the claim figure and summary, the verdict table, the relaxations' bias and MSE,
the training figures; git tracks them for the studies the README shows, see ``.gitignore``), writes ``results/STUDY/SNAPSHOT.md`` (commit, config hash, machine,
wall time) and replaces the README's block between ``<!-- claim-summary:STUDY:start -->`` and
``<!-- claim-summary:STUDY:end -->`` with the summary. A test checks that the README's copy is the
committed summary, so the two cannot drift apart.
"""
from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import yaml

from .io import atomic_write_text
from .provenance import ROOT, config_hash, git_commit


#: What a snapshot keeps of a study's results (paths under results/STUDY/); .gitignore lets exactly these in.
KEPT = ("figures/claim.png", "tables/claim_summary.md", "tables/variance_claim.md",
        "figures/relaxation_temperature.png", "figures/elbo_curves.png", "figures/vae_variance_over_training.png")


def block_markers(study: str) -> tuple[str, str]:
    return f"<!-- claim-summary:{study}:start -->", f"<!-- claim-summary:{study}:end -->"


def readme_block(study: str, readme: str) -> str:
    start, end = block_markers(study)
    if start not in readme or end not in readme:
        raise ValueError(f"README.md has no block {start} ... {end}")
    return readme.split(start, 1)[1].split(end, 1)[0].strip("\n")


def update_readme(study: str, summary_md: str, readme_path: Path) -> None:
    readme = readme_path.read_text()
    start, end = block_markers(study)
    before, rest = readme.split(start, 1)
    after = rest.split(end, 1)[1]
    atomic_write_text(readme_path, f"{before}{start}\n{summary_md.strip()}\n{end}{after}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Commit a study's claim figure and summary into the README")
    ap.add_argument("--study", default="default")
    ap.add_argument("--config", default="config/config.yaml", help="the study's config")
    ap.add_argument("--wall-time", required=True, help="how long `snakemake --cores all` took, as measured")
    args = ap.parse_args(argv)
    results = ROOT / "results" / args.study
    missing = [name for name in KEPT if not (results / name).exists()]
    if missing:
        raise SystemExit(f"{results}: {', '.join(missing)} missing: run the study first")
    summary = (results / "tables" / "claim_summary.md").read_text()
    with open(ROOT / args.config) as fh:
        config = yaml.safe_load(fh)
    atomic_write_text(results / "SNAPSHOT.md", "\n".join([
        f"# Snapshot of the `{args.study}` study",
        "",
        f"- commit: {git_commit()} (the code that produced these files)",
        f"- config: `{args.config}`, hash {config_hash(config)}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        f"- `snakemake --cores all`: {args.wall_time} from a fresh clone",
        "- files: " + ", ".join(f"`{name}`" for name in KEPT),
        "",
    ]))
    update_readme(args.study, summary, ROOT / "README.md")
    print(f"updated README.md and {results}/SNAPSHOT.md")


if __name__ == "__main__":
    main()
