"""Where a whole study's time goes: per rule, its jobs, wall and CPU seconds, and the share spent starting up.

    python benchmarks/bench_study.py [--configfile config/config.yaml] [--cores 2] [--out bench_study.csv]
        [--before earlier.csv]

Runs the study from scratch with ``snakemake --cores N`` in a copy of the workflow (a temporary folder: the
checkout's ``results/`` are left as they are), with ``GRADVAR_JOB_TIMES`` set, so every Python job records its
CPU and wall seconds and the part of them spent before its work began: the interpreter and its imports
(``experiments/runtime/jobtime.py``). Per rule it prints the number of jobs, their wall and CPU seconds, their start-up
CPU seconds and its share of the rule's CPU; then the study's wall time, its total CPU (every process Snakemake
started, and Snakemake itself) and the start-up share of that total. ``--out`` writes the per-rule table as CSV;
``--before`` reads such a CSV of an earlier run (another commit, the same machine) and prints after/before
ratios of the wall time, CPU time and start-up share. Not a test: it asserts nothing, it prints numbers.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import psutil  # a Snakemake dependency

from workflow_copy import copy_workflow  # benchmarks/workflow_copy.py

ROOT = Path(__file__).resolve().parent.parent
TOTAL = "(study)"
#: Seconds between samples of the Snakemake process's own CPU time.
SAMPLE_S = 0.5


def run_study(configfile: str, cores: int, work: Path, extra: list[str]) -> tuple[float, float, float, Path]:
    """Run the study in ``work``; returns its wall seconds, the CPU seconds of everything it started, the CPU
    seconds of the Snakemake process itself (sampled every ``SAMPLE_S`` until it exits) and the job-times file."""
    copy_workflow(work)
    times = work / "job_times.jsonl"
    # The rules' `python` is this interpreter (not a version manager's shim, whose own start-up is not ours).
    env = {**os.environ, "GRADVAR_JOB_TIMES": str(times),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(work / "snakemake.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", str(cores),
                                 f"--configfile={configfile}", *extra], cwd=work, env=env, stdout=log,
                                stderr=subprocess.STDOUT, text=True)
        own = 0.0
        watched = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                t = watched.cpu_times()
                own = t.user + t.system  # its own, not its children's
            except psutil.Error:
                pass
            time.sleep(SAMPLE_S)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        tail = (work / "snakemake.log").read_text()[-3000:]
        raise SystemExit(f"the study failed (exit {proc.returncode}):\n{tail}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, own, times


def per_rule(times: Path, wall: float, cpu: float, snakemake_cpu: float = math.nan) -> pd.DataFrame:
    """One row per rule (label) and one for the whole study; jobs that do not record (shell one-liners,
    Snakemake itself) are the study row's remainder (``other_cpu_s``), of which ``snakemake_cpu_s`` is
    the Snakemake process's own."""
    lines = times.read_text().splitlines() if times.exists() else []  # code before experiments/runtime/jobtime.py: none
    jobs = pd.DataFrame([json.loads(line) for line in lines if line.strip()],
                        columns=["label", "cpu", "startup_cpu", "wall", "startup_wall"])
    rules = jobs.groupby("label").agg(jobs=("cpu", "size"), wall_s=("wall", "sum"), cpu_s=("cpu", "sum"),
                                      startup_cpu_s=("startup_cpu", "sum"), startup_wall_s=("startup_wall", "sum"))
    rules = rules.reset_index().rename(columns={"label": "rule"})
    total = {"rule": TOTAL, "jobs": int(rules["jobs"].sum()), "wall_s": wall, "cpu_s": cpu,
             "startup_cpu_s": float(rules["startup_cpu_s"].sum()),
             "startup_wall_s": float(rules["startup_wall_s"].sum())}
    table = pd.concat([rules, pd.DataFrame([total])], ignore_index=True)
    table["startup_share_of_cpu"] = table["startup_cpu_s"] / table["cpu_s"]
    table["other_cpu_s"] = float("nan")
    table.loc[table["rule"] == TOTAL, "other_cpu_s"] = cpu - float(rules["cpu_s"].sum())  # Snakemake, shells
    table["snakemake_cpu_s"] = float("nan")
    table.loc[table["rule"] == TOTAL, "snakemake_cpu_s"] = snakemake_cpu
    return table


def report(table: pd.DataFrame, before: pd.DataFrame | None) -> str:
    lines = [table.to_string(index=False, float_format=lambda v: f"{v:.3g}")]
    total = table.set_index("rule").loc[TOTAL]
    lines.append(f"\nstudy: {total['wall_s']:.0f} s wall, {total['cpu_s']:.0f} s CPU, {int(total['jobs'])} Python "
                 f"jobs; start-up {total['startup_cpu_s']:.0f} s CPU = {total['startup_share_of_cpu']:.1%} of the CPU "
                 f"(Snakemake and shells: {total['other_cpu_s']:.0f} s, of which Snakemake itself "
                 f"{total.get('snakemake_cpu_s', math.nan):.0f} s)")
    if before is not None:
        old = before.set_index("rule").loc[TOTAL]
        lines.append(f"after/before: wall {total['wall_s'] / old['wall_s']:.2f}, "
                     f"CPU {total['cpu_s'] / old['cpu_s']:.2f}, jobs {int(total['jobs'])}/{int(old['jobs'])}, "
                     f"start-up share {total['startup_share_of_cpu']:.1%} (before {old['startup_share_of_cpu']:.1%})")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configfile", default="config/config.yaml")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--out", help="write the per-rule table here (CSV)")
    ap.add_argument("--before", help="a per-rule CSV of an earlier run: print after/before ratios")
    ap.add_argument("--keep", help="run in this folder and keep it (default: a temporary folder)")
    ap.add_argument("snakemake_args", nargs="*", help="passed to snakemake (after --), e.g. --config seeds='[0]'")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_study.") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        wall, cpu, own, times = run_study(args.configfile, args.cores, work, args.snakemake_args)
        table = per_rule(times, wall, cpu, own)
    if args.out:
        table.to_csv(args.out, index=False)
    print(report(table, pd.read_csv(args.before) if args.before else None))


if __name__ == "__main__":
    main()
