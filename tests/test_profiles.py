"""Every rule that runs as a job has its cluster resources in the SLURM profile (a rule without them would get
the cluster's defaults, and a long job would be stopped at the default time limit)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
LOCAL = {"all", "job_config"}  # localrules: they run on the submit host, never as cluster jobs


def test_every_cluster_rule_has_a_runtime_and_memory_in_the_slurm_profile():
    res = subprocess.run([sys.executable, "-m", "snakemake", "--list-rules"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    rules = {line.split(" (")[0].strip() for line in res.stdout.splitlines() if line.strip() and not line.startswith(" ")}
    assert {"synthetic", "vae_train", "vae_train_stacked", "aggregate"} <= rules, res.stdout
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    resources = profile["set-resources"]
    missing = sorted(rules - LOCAL - set(resources))
    assert not missing, f"rules without cluster resources in profiles/slurm/config.yaml: {missing}"
    for rule in rules - LOCAL:
        assert {"runtime", "mem_mb"} <= set(resources[rule]), rule
    assert profile["default-resources"].get("cpus_per_task", 1) == 1  # the rules pin one thread per job
