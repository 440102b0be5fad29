"""Smoke test of benchmarks/bench_vae_step.py: a --quick run on two estimators at the digits size exits 0 and
prints a ratio row. It checks that the benchmark runs, never its timings."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_run_prints_ratios():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_vae_step.py"), "--quick", "--sizes", "digits",
         "--estimators", "pathwise", "reinforce_loo"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    # a row with a plain side: id, n, three step times, then the Run/plain ratio
    assert re.search(r"^\s+reinforce_loo\s+4\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+x", out, re.M), out
    assert re.search(r"^\s+pathwise\s+4\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+x", out, re.M), out
    # pathwise does not apply to the discrete latents: listed with the reason, not timed
    assert re.search(r"^\s+pathwise\s+skipped: .*has no reparameterized sampler", out, re.M), out
    assert "storchastic" in out  # either its row or "storchastic not installed"
