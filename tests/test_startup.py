"""A job imports only what it uses: the start-up of each of the study's ~100 Python processes is paid once per
job, so a heavy import that a job never needs (sympy through torch's meta device, plotting, Snakemake) is a
share of the whole study's time (benchmarks/bench_study.py measures it)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOT_NEEDED = ("sympy", "matplotlib", "seaborn", "snakemake", "sklearn")


@pytest.mark.parametrize("module", ["experiments.synthetic.study", "experiments.vae.train", "experiments.vae.stacked",
                                    "experiments.vae.shared_checkpoints"])
def test_a_job_entry_point_imports_no_heavy_module_it_does_not_use(module):
    code = f"import sys, {module}; print(' '.join(m for m in {NOT_NEEDED!r} if m in sys.modules))"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "", f"{module} imports {res.stdout.strip()}"
