"""Smoke test of benchmarks/bench_stacked_processes.py: a --quick run (digits, 2 runs of 20 steps, one round)
exits 0 and prints a ratio row per cell. It checks that the benchmark runs real jobs to completion, never its
timings."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_run_prints_ratios():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_stacked_processes.py"), "--quick"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    for cell in (r"gaussian\(8\) pathwise", r"bernoulli\(8\) reinforce_loo"):
        # cell, N, two wall times, two rates, the ratio
        assert re.search(rf"^\s+{cell}\s+2\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+x", proc.stdout, re.M), \
            proc.stdout
