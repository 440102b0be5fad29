"""Commit a study's answer: its claim figure and summary, with provenance, into the repository's README.

    snakemake --cores all && python -m experiments.snapshot --study default --wall-time "7 min 40 s"

Keeps ``results/STUDY/figures/claim.png`` and ``results/STUDY/tables/claim_summary.md`` (which git tracks
for the studies the README shows), writes ``results/STUDY/SNAPSHOT.md`` (commit, config hash, machine,
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
    summary = (results / "tables" / "claim_summary.md").read_text()
    if not (results / "figures" / "claim.png").exists():
        raise SystemExit(f"{results}/figures/claim.png is missing: run the study first")
    with open(ROOT / args.config) as fh:
        config = yaml.safe_load(fh)
    atomic_write_text(results / "SNAPSHOT.md", "\n".join([
        f"# Snapshot of the `{args.study}` study",
        "",
        f"- commit: {git_commit()} (the code that produced these files)",
        f"- config: `{args.config}`, hash {config_hash(config)}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        f"- `snakemake --cores all`: {args.wall_time} from a fresh clone",
        "- files: `figures/claim.png`, `tables/claim_summary.md`",
        "",
    ]))
    update_readme(args.study, summary, ROOT / "README.md")
    print(f"updated README.md and {results}/SNAPSHOT.md")


if __name__ == "__main__":
    main()
