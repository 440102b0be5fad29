"""Running a small study through Snakemake in a temporary folder, for the tests that need the pipeline."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def tables(study: str) -> str:
    """The target that makes every table of ``study`` (the aggregation writes them together) and no figure:
    the tests that read tables only ask for it; ``tests/test_pipeline.py`` checks the figures and the report."""
    return f"results/{study}/tables/variance_claim.csv"


def run_study(workdir: Path, study: dict, cores: int = 2, tables_only: bool = False) -> str:
    """Copy the workflow into ``workdir``, run ``snakemake`` on ``study`` (a config dict) to the end (with
    ``tables_only``, to its tables) and return its output; a failing run fails the test with the end of that
    output."""
    workdir.mkdir(parents=True, exist_ok=True)
    for item in ("Snakefile", "workflow", "profiles"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, workdir / item)
    (workdir / "study.yaml").write_text(json.dumps(study))
    targets = [tables(study["study"])] if tables_only else []
    res = subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(cores), "--configfile=study.yaml",
                          *targets], cwd=workdir, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    return res.stdout + res.stderr
