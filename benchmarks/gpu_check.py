"""The GPU path checked in one command: what a GPU machine is for, measured in at most 8 minutes.

    python benchmarks/gpu_check.py [--device cuda] [--out results/gpu_check] [--commit HASH]
    python benchmarks/gpu_check.py --device cpu --smoke      # CI: the same sections, tiny sizes, on the CPU

Sections, each a separate program with its own time limit (one that fails or runs out is reported and the
others still run), in this order:

1. ``study``: the tiny study (``config/tiny.yaml``) through Snakemake on ``cpu`` and the device, in a copy of
   the workflow (``benchmarks/workflow_copy.py``; ``OUT/study/results/gpu_check_tiny/``); from its
   ``device_comparison.csv``: whether the variances agree between the devices (the table's z-test) and the
   speed-up of the device over the CPU.
2. ``step``: ``benchmarks/bench_vae_step.py --device DEVICE`` at the paper sizes (Run/plain per estimator).
3. ``stacked``: ``benchmarks/bench_stacked_runs.py --device DEVICE`` at the paper sizes, 3, 8 and 32 members.
4. ``slice``: a slice of the paper study (``config/paper.yaml``): for every latent, the seeds of its host run's
   cell trained as one stacked job for ``--slice-steps`` steps on the real data, seconds per step; one
   evaluation at the paper's settings (IWAE k=1000 over the test set) on the first latents; and from them the
   projected device-hours of the whole paper config's VAE training (every run job of its plan: steps x the
   measured seconds per step of its latent, plus its evaluations). What the projection leaves out is said in
   the summary.

Writes ``OUT/summary.md`` (the answer, with the commit it ran on), ``OUT/SECTION.log`` (each program's output),
``OUT/slice.csv`` and ``OUT/slice.json``; the study runs in a copy of the workflow in ``OUT/study/``. The summary
is rewritten after every section, so a run cut short keeps what it measured.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from workflow_copy import copy_workflow  # noqa: E402  (benchmarks/workflow_copy.py)

#: Per section: seconds it may take (full run, smoke run).
LIMITS = {"study": (120, 240), "step": (100, 120), "stacked": (50, 120), "slice": (110, 180)}
#: Paper evaluations are timed on this many latents (each is seconds on a GPU, minutes on a CPU).
EVAL_LATENTS = 2


def study_folder(args) -> Path:
    """A copy of the workflow in OUT/study, where the tiny study runs (the checkout's results/ stay as they are)."""
    import yaml

    study = yaml.safe_load((ROOT / "config/tiny.yaml").read_text())
    study["study"] = "gpu_check_tiny"
    study["devices"] = ["cpu"] + ([args.device] if args.device != "cpu" else [])
    if args.smoke:  # the plumbing, not the numbers: one problem, one latent, two estimators each, 20 steps
        synthetic, vae = study["synthetic"], study["vae"]
        synthetic["settings"]["measurement"].update({"min_estimates": 100, "max_estimates": 200})
        synthetic["settings"]["problems"] = {"mohamed_cos": {"k": [0.5]}}
        synthetic["estimators"] = {k: synthetic["estimators"][k] for k in ("pathwise", "reinforce")}
        vae["settings"].update({"train": {"steps": 20}, "checkpoint_every": 10})
        vae["settings"]["eval"]["every"] = vae["settings"]["variance"]["every"] = 10
        vae["latents"] = {"gaussian": vae["latents"]["gaussian"]}
        vae["estimators"] = {k: vae["estimators"][k] for k in ("pathwise", "reinforce_loo")}
        vae["shared_checkpoints"]["trained_with"] = {"gaussian": "pathwise"}
    return copy_workflow(Path(args.out) / "study", study=study)


def section_commands(args) -> dict[str, tuple[list[str], Path]]:
    """Each section's command and the folder it runs in."""
    py, dev = sys.executable, args.device
    step = [py, "benchmarks/bench_vae_step.py", "--device", dev]
    step += (["--quick", "--sizes", "digits", "--estimators", "pathwise", "reinforce_loo"] if args.smoke
             else ["--sizes", "paper", "--rounds", "4", "--seconds", "0.03"])
    stacked = [py, "benchmarks/bench_stacked_runs.py", "--device", dev]
    stacked += (["--quick", "--sizes", "digits", "--runs", "2"] if args.smoke
                else ["--sizes", "paper", "--runs", "3", "8", "32", "--rounds", "3", "--seconds", "0.05"])
    return {
        "study": ([py, "-m", "snakemake", "--cores", "all", "--configfile", "study.yaml"], study_folder(args)),
        "step": (step, ROOT),
        "stacked": (stacked, ROOT),
        "slice": ([py, __file__, "--slice-only", "--device", dev, "--out", str(args.out),
                   "--slice-steps", str(args.slice_steps), *(["--smoke"] if args.smoke else [])], ROOT),
    }


# --- the slice of the paper study -------------------------------------------------------------------------
def paper_slice(device: str, steps: int, smoke: bool, out: Path) -> None:
    """Time ``steps`` stacked steps of every latent's host cell of the study, and evaluations; write slice.csv and
    slice.json (the projection)."""
    import pandas as pd
    import torch

    from experiments.config import study_config
    from experiments.config.plan import make_plan
    from experiments.config.typed_config import load_yaml
    from experiments.vae.run_config import resolve
    from experiments.vae.stacked import StackedRuns
    from timing import sync  # benchmarks/timing.py; it imports torch, imported here only, as above

    config_file = "config/tiny.yaml" if smoke else "config/paper.yaml"
    config = study_config.check(load_yaml(open(ROOT / config_file)))
    plan = make_plan(config, [device])
    rows = []
    for i, host in enumerate(_hosts(plan)):
        members = [r for r in plan.vae_runs if (r.dataset, r.latent_id, r.estimator_id, r.n_samples, r.device, r.lr)
                   == (host.dataset, host.latent_id, host.estimator_id, host.n_samples, host.device, host.lr)]
        cfgs = []
        for run in members:
            cfg = json.loads(json.dumps(plan.job_config(run.path)))
            cfg["train"]["steps"] = steps
            cfg["eval"]["every"] = cfg["variance"]["every"] = 0
            cfg["checkpoint_every"] = steps + 1
            cfgs.append(resolve(cfg))
        folder = out / "slice_runs" / host.latent_id
        try:
            stack = StackedRuns(cfgs, [folder / f"seed{r.seed}" for r in members])
        except ValueError as err:  # its host estimator cannot be stacked: this latent is not timed
            print(f"{host.latent_id}: {err}", flush=True)
            continue
        stack.use(tuple(range(len(members))))
        for _ in range(3):  # warm-up: kernels chosen, allocator filled
            stack.train_step()
        sync(torch.device(device))
        start = time.perf_counter()
        for _ in range(steps):
            stack.train_step()
        sync(torch.device(device))
        per_step = (time.perf_counter() - start) / steps
        diverged = stack.divergence.read()
        eval_seconds = math.nan
        if i < EVAL_LATENTS:
            run = stack.runs[0]
            stack.pull(0)
            start = time.perf_counter()
            run.evaluate()
            eval_seconds = time.perf_counter() - start
        rows.append({"latent": host.latent_id, "estimator": host.estimator_id, "members": len(members),
                     "steps": steps, "seconds_per_stacked_step": per_step, "seconds_per_evaluation": eval_seconds,
                     "diverged": len(diverged)})
        print(json.dumps(rows[-1]), flush=True)
        del stack
    table = pd.DataFrame(rows)
    table.to_csv(out / "slice.csv", index=False)
    (out / "slice.json").write_text(json.dumps(project(plan, table, config), indent=2))


def _hosts(plan):
    """One run per latent: the host run of its shared checkpoints (seed 0), else its first run."""
    seen, hosts = set(), []
    for job in plan.shared_jobs:
        if job.host.latent_id not in seen:
            seen.add(job.host.latent_id)
            hosts.append(job.host)
    for run in plan.vae_runs:
        if run.latent_id not in seen:
            seen.add(run.latent_id)
            hosts.append(run)
    return hosts


#: What the projection leaves out, said with it.
NOT_PROJECTED = ("estimator-specific step costs (the slice times each latent's host estimator), the variance "
                 "measurements and shared-checkpoints jobs, the synthetic study")


def project(plan, table, config) -> dict:
    """Device-hours of the whole study's VAE training: every job (stacked or single) costs its steps times the
    measured seconds per stacked step of its latent (on a GPU a stack of a cell's seeds costs about one run's
    step: the check's ``stacked`` section measures that), plus its runs' evaluations at the median measured
    evaluation time. Not included: ``NOT_PROJECTED``."""
    per_step = dict(zip(table["latent"], table["seconds_per_stacked_step"]))
    eval_s = float(table["seconds_per_evaluation"].median()) if table["seconds_per_evaluation"].notna().any() else 0.0
    stacked = {run for job in plan.stacked_jobs for run in job.runs}
    jobs = [(job.runs[0], len(job.runs)) for job in plan.stacked_jobs]
    jobs += [(run, 1) for run in plan.vae_runs if run not in stacked]
    train_s = eval_total = 0.0
    for run, n in jobs:
        cfg = plan.job_config(run.path)
        steps, every = int(cfg["train"]["steps"]), int(cfg["eval"]["every"])
        train_s += steps * per_step.get(run.latent_id, float(table["seconds_per_stacked_step"].median()))
        eval_total += n * ((steps // every + 1) if every > 0 else 1) * eval_s
    return {"study": config["study"], "jobs": len(jobs), "runs": len(plan.vae_runs),
            "stacked_jobs": len(plan.stacked_jobs), "train_hours": train_s / 3600, "eval_hours": eval_total / 3600,
            "total_hours": (train_s + eval_total) / 3600, "note": NOT_PROJECTED}


# --- the summary --------------------------------------------------------------------------------------------
def _device_name(device: str) -> str:
    try:
        import torch

        return torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor() or "cpu"
    except Exception as err:  # noqa: BLE001  (the summary names what it could not read)
        return f"unknown ({err})"


def _tail(path: Path, lines: int) -> str:
    text = path.read_text(errors="replace").splitlines() if path.exists() else []
    return "\n".join(text[-lines:])


def study_summary(out: Path) -> list[str]:
    import pandas as pd

    path = out / "study/results/gpu_check_tiny/tables/device_comparison.csv"
    if not path.exists():
        return ["(no device_comparison.csv)"]
    table = pd.read_csv(path)
    if table.empty:
        return ["device_comparison.csv is empty (one device only)."]
    lines = [f"{len(table)} cells measured on both devices."]
    tested = table["variances_agree"].dropna()
    if len(tested):
        lines.append(f"Variances agree (the table's z-test) in {int(tested.astype(bool).sum())} of {len(tested)} "
                     f"cells with a variance on both devices.")
    for source, group in table.groupby("source"):
        s = group["speedup_b_over_a"].dropna()
        if len(s):
            lines.append(f"{source}: speed-up of {group['device_b'].iloc[0]} over {group['device_a'].iloc[0]}: "
                         f"median {s.median():.2f}x (min {s.min():.2f}x, max {s.max():.2f}x) over {len(s)} cells.")
    return lines


def write_summary(args, results: dict) -> None:
    out = Path(args.out)
    lines = [f"# GPU check ({'smoke, ' if args.smoke else ''}{args.device})", "",
             f"- commit: {args.commit or os.environ.get('GRADVAR_COMMIT', 'unknown')}",
             f"- device: {_device_name(args.device)}; python {platform.python_version()}",
             f"- command: `python benchmarks/gpu_check.py --device {args.device}{' --smoke' if args.smoke else ''}`",
             "", "| section | status | seconds |", "|---|---|---|"]
    for name, (status, seconds) in results.items():
        lines.append(f"| {name} | {status} | {seconds:.0f} |")
    if "study" in results:
        lines += ["", "## Tiny study on cpu and the device", "", *study_summary(out)]
    for name, title, n in (("step", "One training step at the paper sizes (bench_vae_step)", 40),
                           ("stacked", "Stacked against separate runs (bench_stacked_runs)", 20)):
        if name in results:
            lines += ["", f"## {title}", "", "```", _tail(out / f"{name}.log", n), "```"]
    if (out / "slice.json").exists():
        import pandas as pd

        proj = json.loads((out / "slice.json").read_text())
        lines += ["", "## A slice of the paper study", "", pd.read_csv(out / "slice.csv").to_markdown(index=False),
                  "", f"Projected device-hours of the whole `{proj['study']}` config's VAE training on this device: "
                  f"**{proj['total_hours']:.1f} h** ({proj['train_hours']:.1f} h training, {proj['eval_hours']:.1f} h "
                  f"evaluations; {proj['jobs']} jobs, {proj['runs']} runs, {proj['stacked_jobs']} of the jobs "
                  f"stacked). Not included: {proj['note']}."]
    (out / "summary.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--out", default=str(ROOT / "results/gpu_check"))
    ap.add_argument("--commit", default=None, help="the commit the tree is at (the device copy has no .git)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (CI, on the CPU)")
    ap.add_argument("--slice-steps", type=int, default=None,
                    help="steps per latent in the slice (default 600; smoke 5)")
    ap.add_argument("--sections", nargs="+", default=list(LIMITS), choices=list(LIMITS))
    ap.add_argument("--slice-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.slice_steps = args.slice_steps or (5 if args.smoke else 600)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.slice_only:
        paper_slice(args.device, args.slice_steps, args.smoke, out)
        return 0
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            ap.exit(2, "error: --device cuda: no CUDA device here (run with --device cpu --smoke for the smoke test)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "PYTHONUNBUFFERED": "1"}
    results: dict[str, tuple[str, float]] = {}
    commands = section_commands(args)
    for name in args.sections:
        command, cwd = commands[name]
        limit = LIMITS[name][1 if args.smoke else 0]
        start = time.perf_counter()
        with open(out / f"{name}.log", "w") as log:
            try:
                rc = subprocess.run(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    timeout=limit).returncode
                status = "ok" if rc == 0 else f"failed (exit {rc})"
            except subprocess.TimeoutExpired:
                status = f"cut at its {limit} s limit"
        results[name] = (status, time.perf_counter() - start)
        print(f"{name}: {status} in {results[name][1]:.0f} s", flush=True)
        write_summary(args, results)
    print((out / "summary.md").read_text())
    return 0 if all(status == "ok" for status, _ in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
