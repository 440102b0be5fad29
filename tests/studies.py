"""Running a small study through Snakemake in a temporary folder, for the tests that need the pipeline."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_study(workdir: Path, study: dict, cores: int = 2) -> str:
    """Copy the workflow into ``workdir``, run ``snakemake`` on ``study`` (a config dict) to the end and return
    its output; a failing run fails the test with the end of that output."""
    workdir.mkdir(parents=True, exist_ok=True)
    for item in ("Snakefile", "workflow", "profiles"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, workdir / item)
    (workdir / "study.yaml").write_text(json.dumps(study))
    res = subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(cores), "--configfile", "study.yaml"],
                         cwd=workdir, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    return res.stdout + res.stderr
