"""Smoke test of benchmarks/gpu_check.py on the CPU with tiny sizes (what CI can run): every section runs and the
summary names each section's status, the tiny study's devices and the slice's projection. It checks that the
one command works end to end, never its timings."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def test_smoke_run_on_the_cpu_writes_its_summary(tmp_path):
    out = tmp_path / "gpu_check"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--smoke", "--out", str(out),
                           "--commit", "gTEST"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    summary = (out / "summary.md").read_text()
    for section in ("study", "step", "stacked", "slice"):
        assert f"| {section} | ok |" in summary, summary
    assert "- commit: gTEST" in summary
    assert "Projected device-hours of the whole `tiny` config" in summary
    slice_rows = pd.read_csv(out / "slice.csv")
    assert (len(slice_rows) and (slice_rows["seconds_per_stacked_step"] > 0).all()
            and (slice_rows["diverged"] == 0).all())
    assert json.loads((out / "slice.json").read_text())["jobs"] > 0
    assert (out / "study/results/gpu_check_tiny/tables/device_comparison.csv").exists()  # in OUT, not the checkout


def test_cuda_without_a_gpu_is_one_line(tmp_path):
    if torch.cuda.is_available():
        return
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cuda", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --device cuda: no CUDA device here")
