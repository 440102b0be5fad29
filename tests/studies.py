"""Running a small study through Snakemake in a temporary folder, for the tests that need the pipeline; and
``copy_workflow``, the one way the tests copy the workflow (the ``workflow_copy`` fixture of ``conftest.py``)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The benchmarks copy the workflow too (bench_study.py, gpu_check.py): the function lives with them, so that they
# import nothing from tests/, and is loaded here by its path (benchmarks/ is a folder of scripts, not a package).
_spec = importlib.util.spec_from_file_location("workflow_copy", ROOT / "benchmarks" / "workflow_copy.py")
_workflow_copy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_workflow_copy)
copy_workflow = _workflow_copy.copy_workflow


#: The smallest synthetic part of a study (one problem, pathwise and reinforce), for the tests of a study's VAE
#: part.
SMALL_SYNTHETIC = {
    "settings": {"n_samples": [2], "problems": {"dimension": {"dims": [2]}},
                 "measurement": {"min_estimates": 200, "max_estimates": 400, "timing_calls": 2, "warmup_calls": 2}},
    "estimators": {"pathwise": {"name": "pathwise"}, "reinforce": {"name": "reinforce"}},
}


def tables(study: str) -> str:
    """The target that makes every table of ``study`` (the aggregation writes them together) and no figure:
    the tests that read tables only ask for it; ``tests/test_pipeline.py`` checks the figures and the report."""
    return f"results/{study}/tables/variance_claim.csv"


def run_study(workdir: Path, study: dict, cores: int = 2, tables_only: bool = False) -> str:
    """Copy the workflow into ``workdir``, run ``snakemake`` on ``study`` (a config dict) to the end (with
    ``tables_only``, to its tables) and return its output; a failing run fails the test with the end of that
    output."""
    copy_workflow(workdir, study=study)
    targets = [tables(study["study"])] if tables_only else []
    res = subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(cores), "--configfile=study.yaml",
                          *targets], cwd=workdir, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    return res.stdout + res.stderr
