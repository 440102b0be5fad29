"""Commit a study's answer: copy its claim figure and summary, with provenance, into ``results/snapshots/STUDY/``
and the README.

    snakemake --cores all && python -m experiments.verdict.snapshot --study default --wall-time "7 min 40 s"

The pipeline writes ``results/STUDY/`` (never committed); a snapshot is a copy of the files of ``KEPT`` from
there into ``results/snapshots/STUDY/``, which no rule writes, so running a study never changes a committed
file. ``SNAPSHOT.md`` names the commit that produced the files, read from the provenance of the study's own
result rows (not from the checkout at copy time); a study whose rows come from more than one commit, or from a
checkout with uncommitted changes, is refused: its snapshot could not be reproduced from one commit. The
README's block between ``<!-- claim-summary:STUDY:start -->`` and ``<!-- claim-summary:STUDY:end -->`` is
replaced with the summary; a test checks that the README's copy is the committed summary.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
from pathlib import Path

import pandas as pd
import yaml

from experiments.runtime.io import atomic_write_text
from experiments.runtime.provenance import ROOT, TEXT_DTYPES, config_hash
from experiments.config.study_config import RESERVED_STUDY

#: What a snapshot keeps of a study's results (paths under results/STUDY/).
KEPT = ("findings.md", "figures/claim.png", "tables/claim_summary.md", "tables/variance_claim.md",
        "figures/claim_across_k.png", "figures/variance_along_training.png", "figures/estimator_ranking.png",
        "tables/estimator_ranking.md", "figures/relaxation_temperature.png", "figures/elbo_curves.png",
        "figures/vae_variance_over_training.png")
#: The README's blocks of a study (``<!-- KIND:STUDY:start -->`` ... ``end``) and the snapshot file each shows:
#: the findings in words, or (snapshots made before findings.md existed) the claim summary.
BLOCKS = {"findings": "findings.md", "claim-summary": "tables/claim_summary.md"}
#: The folder of committed snapshots, one sub-folder per study (``results/snapshots/STUDY``): the one study
#: name the config refuses.
SNAPSHOTS = RESERVED_STUDY
#: The tables whose rows carry the commit that produced them.
PROVENANCE_TABLES = ("tables/synthetic_all.csv", "tables/vae_metrics.csv", "tables/vae_variance.csv")


def folder(study: str, root: Path = ROOT) -> Path:
    return root / "results" / SNAPSHOTS / study


def block_markers(study: str, kind: str = "findings") -> tuple[str, str]:
    return f"<!-- {kind}:{study}:start -->", f"<!-- {kind}:{study}:end -->"


def readme_blocks(readme: str) -> list[tuple[str, str]]:
    """The (kind, study) of every snapshot block in the README."""
    import re

    return re.findall(rf"<!-- ({'|'.join(BLOCKS)}):(\w+):start -->", readme)


def readme_block(study: str, readme: str, kind: str = "findings") -> str:
    start, end = block_markers(study, kind)
    if start not in readme or end not in readme:
        raise ValueError(f"README.md has no block {start} ... {end}")
    return readme.split(start, 1)[1].split(end, 1)[0].strip("\n")


def update_readme(study: str, text: str, readme_path: Path, kind: str = "findings") -> None:
    readme = readme_path.read_text()
    start, end = block_markers(study, kind)
    before, rest = readme.split(start, 1)
    after = rest.split(end, 1)[1]
    atomic_write_text(readme_path, f"{before}{start}\n{text.strip()}\n{end}{after}")


def producing_commit(results: Path) -> str:
    """The one commit in the ``git_commit`` column of the study's result rows; ``ValueError`` where there is
    none, more than one, or one with uncommitted changes."""
    commits: set[str] = set()
    for name in PROVENANCE_TABLES:
        path = results / name
        if path.exists() and path.stat().st_size:
            frame = pd.read_csv(path, dtype=TEXT_DTYPES, usecols=lambda c: c == "git_commit")
            commits |= set(frame.get("git_commit", pd.Series(dtype=str)).dropna())
    if not commits:
        raise ValueError(f"{results}: no result row names its commit; run the study first")
    if len(commits) > 1:
        raise ValueError(f"{results}: rows from {len(commits)} commits ({', '.join(sorted(commits))}); a snapshot "
                         f"comes from one: delete {results} and run the study again")
    (commit,) = commits
    if commit.endswith("-dirty") or commit == "unknown":
        raise ValueError(f"{results}: produced by {commit}, not a commit; commit the code, then run the study again")
    return commit


def take(study: str, config_path: str, wall_time: str, root: Path = ROOT) -> Path:
    """Copy ``KEPT`` from ``results/STUDY`` into the study's snapshot folder, with ``SNAPSHOT.md``, and update
    the README; returns the snapshot folder."""
    results = root / "results" / study
    missing = [name for name in KEPT if not (results / name).exists()]
    if missing:
        raise ValueError(f"{results}: {', '.join(missing)} missing: run the study first")
    commit = producing_commit(results)
    with open(root / config_path) as fh:
        config = yaml.safe_load(fh)
    target = folder(study, root)
    for name in KEPT:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(results / name, target / name)
    atomic_write_text(target / "SNAPSHOT.md", "\n".join([
        f"# Snapshot of the `{study}` study",
        "",
        f"- commit: {commit} (the code that produced these files, from their result rows)",
        f"- config: `{config_path}`, hash {config_hash(config)}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        f"- `snakemake --cores all`: {wall_time} from a fresh clone",
        "- files: " + ", ".join(f"`{name}`" for name in KEPT),
        "",
    ]))
    readme = root / "README.md"
    kinds = [kind for kind, name in readme_blocks(readme.read_text()) if name == study]
    if not kinds:
        raise ValueError(f"README.md has no block <!-- findings:{study}:start --> ... end for this study")
    for kind in kinds:
        update_readme(study, (results / BLOCKS[kind]).read_text(), readme, kind)
    return target


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Commit a study's claim figure and summary into results/snapshots "
                                             "and the README")
    ap.add_argument("--study", default="default")
    ap.add_argument("--config", default="config/config.yaml", help="the study's config")
    ap.add_argument("--wall-time", required=True, help="how long `snakemake --cores all` took, as measured")
    args = ap.parse_args(argv)
    try:
        target = take(args.study, args.config, args.wall_time)
    except ValueError as err:
        ap.exit(1, f"error: {err}\n")
    print(f"updated README.md and {target}")


if __name__ == "__main__":
    main()
