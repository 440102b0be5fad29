"""Stacked runs (experiments/vae/stacked.py): N runs of one cell trained as one batched model give each run
the results it gets alone, resume after a kill, and refuse what cannot be stacked.

| claim | where |
|---|---|
| a GeneratorStack draws each run's noise bit for bit as alone (families, raw primitives) | test_*noise* |
| every stackable estimator gives each run its own value and gradient | test_stackable_estimators_equal_per_run_calls |
| a stacked member's metrics, variance rows and weights equal the run alone (pathwise, reinforce
  leave_one_out, gumbel_softmax, straight_through; the IWAE bound: vimco, pathwise on K-tuples)
  | test_stacked_equals_separate |
| SIGKILL mid-run, rerun: identical to an uninterrupted stacked job | test_sigkill_resumes_identically |
| a preempted stacked member finishes alone, a run started alone joins a stack
  | test_members_move_between_stack_and_alone |
| a diverging member ends diverged as alone, the others go on | test_diverging_member |
| adapting estimators, NVIL, other families, configs differing beyond the seed: one-line refusals | test_refuses_* |

Tolerance: a member equals its run alone to ``RTOL`` relative (the module's stated tolerance; on this CPU
they are bit-identical); an interrupted stacked job equals an uninterrupted one exactly.
"""
from __future__ import annotations

import copy
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch.distributions import Bernoulli, Gamma, Independent, Normal, OneHotCategorical

import estimators
from estimators import sampling
from estimators.base import LogQSplit
from estimators.sampling import GeneratorStack, draw
from experiments.runtime import checkpoint
from experiments.vae import stacked
from experiments.vae import train as vae_train
from experiments.vae.run_config import resolve

from studies import run_study

ROOT = Path(__file__).resolve().parent.parent
TIMING = ["seconds_per_step", "seconds_per_estimate", "work_normalized_variance", "eval_seconds",
          "git_commit"]  # provenance that can change between two jobs (a commit landing in between), not a result
RTOL = 1e-4
SEEDS = (0, 1, 2)
STEPS = 30
SMALL = {"model": {"hidden": [16]}, "train": {"steps": STEPS, "batch_size": 32},
         "eval": {"every": 15, "iwae_k": 5, "train_subset": 100},
         "variance": {"every": 15, "min_estimates": 4, "max_estimates": 4, "batch_size": 16,
                      "reference_gradient": {"max_support": 1, "n_samples": 4, "n_estimates": 4}},
         "checkpoint_every": 10}
CELLS = {
    "pathwise": ({"family": "gaussian", "dim": 4}, {"name": "pathwise"}, 1),
    "reinforce_loo": ({"family": "bernoulli", "dim": 6}, {"name": "reinforce", "baseline": "leave_one_out"}, 3),
    "gumbel_softmax": ({"family": "categorical", "groups": 3, "classes": 4},
                       {"name": "gumbel_softmax", "temperature": 0.5}, 2),
    "straight_through": ({"family": "bernoulli", "dim": 6}, {"name": "straight_through"}, 2),
    # the K-sample bound (objectives.py): vimco on one K-tuple, pathwise on K-tuples
    "vimco_iwae": ({"family": "bernoulli", "dim": 6}, {"name": "vimco"}, 1, {"objective": {"bound": "iwae", "k": 3}}),
    "pathwise_iwae": ({"family": "gaussian", "dim": 4}, {"name": "pathwise"}, 2,
                      {"objective": {"bound": "iwae", "k": 3}}),
    # the log q term said apart (LogQSplit): stl on the ELBO with a sampled KL, dreg on the K-sample bound
    "stl": ({"family": "gaussian", "dim": 4}, {"name": "stl"}, 2, {"objective": {"kl": "sampled"}}),
    "dreg_iwae": ({"family": "gaussian", "dim": 4}, {"name": "dreg"}, 1, {"objective": {"bound": "iwae", "k": 3}}),
}


def _config(cell: str, seed: int, **extra):
    latent, est, n, *layer = CELLS[cell]
    return resolve({**SMALL, **(layer[0] if layer else {}), "latent": latent, "estimator": est, "n_samples": n,
                    "seed": seed, **extra})


# --- noise -----------------------------------------------------------------------------------------

N_RUNS, BATCH = 3, 5


def _stacked_dists(dtype=torch.float32):
    g = torch.Generator().manual_seed(11)
    loc = torch.randn(N_RUNS, BATCH, 4, generator=g, dtype=dtype).requires_grad_(True)
    log_scale = (0.3 * torch.randn(N_RUNS, BATCH, 4, generator=g, dtype=dtype)).requires_grad_(True)
    logits = torch.randn(N_RUNS, BATCH, 6, generator=g, dtype=dtype).requires_grad_(True)
    cat_logits = torch.randn(N_RUNS, BATCH, 3, 4, generator=g, dtype=dtype).requires_grad_(True)
    return {
        "normal": (lambda p: Independent(Normal(p[0], p[1].exp()), 1), [loc, log_scale]),
        "bernoulli": (lambda p: Independent(Bernoulli(logits=p[0]), 1), [logits]),
        "categorical": (lambda p: Independent(OneHotCategorical(logits=p[0]), 1), [cat_logits]),
    }


def _gens(seed0: int = 100):
    return [torch.Generator().manual_seed(seed0 + r) for r in range(N_RUNS)]


@pytest.mark.parametrize("family", ["normal", "bernoulli", "categorical"])
@pytest.mark.parametrize("n_samples", [1, 3])
def test_stacked_noise_is_each_runs_own(family, n_samples):
    make, params = _stacked_dists()[family]
    reparameterized = family == "normal"
    together = draw(make(params), n_samples, GeneratorStack(_gens()), reparameterized=reparameterized)
    assert together.shape == (n_samples, N_RUNS, BATCH, *make(params).event_shape)
    for r, gen in enumerate(_gens()):
        alone = draw(make([p[r] for p in params]), n_samples, gen, reparameterized=reparameterized)
        assert torch.equal(together[:, r], alone)
    if reparameterized:  # the pathwise gradient reaches each run's own parameters
        together.sum().backward()
        grads = [p.grad.clone() for p in params]
        for p in params:
            p.grad = None
        for r, gen in enumerate(_gens()):
            draw(make([p[r] for p in params]), n_samples, gen, reparameterized=True).sum().backward()
        for p, g in zip(params, grads):
            assert torch.equal(g, p.grad)


@pytest.mark.parametrize("primitive", ["uniform", "exponential"])
@pytest.mark.parametrize("sample_ndim", [1, 2])
def test_stacked_raw_noise_is_each_runs_own(primitive, sample_ndim):
    fn = getattr(sampling, primitive)
    like = torch.zeros((), dtype=torch.float64)
    sample = (4, 2)[:sample_ndim]
    together = fn((*sample, N_RUNS, BATCH, 3), like, GeneratorStack(_gens()), sample_ndim)
    assert together.shape == (*sample, N_RUNS, BATCH, 3) and together.dtype == torch.float64
    for r, gen in enumerate(_gens()):
        assert torch.equal(together[(slice(None),) * sample_ndim + (r,)],
                           fn((*sample, BATCH, 3), like, gen, sample_ndim))


def test_plain_generator_noise_is_unchanged():
    like = torch.zeros(())
    assert torch.equal(sampling.uniform((4, 5), like, torch.Generator().manual_seed(3)),
                       torch.rand((4, 5), generator=torch.Generator().manual_seed(3)))
    assert torch.equal(sampling.exponential((4, 5), like, torch.Generator().manual_seed(3)),
                       torch.empty(4, 5).exponential_(generator=torch.Generator().manual_seed(3)))


def test_refuses_other_families_and_missing_run_axis():
    stack = GeneratorStack(_gens())
    with pytest.raises(ValueError, match="GeneratorStack draws from Normal, Bernoulli, OneHotCategorical"):
        draw(Gamma(torch.ones(N_RUNS, 2), torch.ones(N_RUNS, 2)), 2, stack)
    with pytest.raises(ValueError, match="first batch dimension"):
        draw(Normal(torch.zeros(2), torch.ones(2)), 2, stack)
    with pytest.raises(ValueError, match="no run axis"):
        sampling.uniform((2, 4), torch.zeros(()), stack, 1)


def _f_for(r: int | None, dist):
    """A per-run quadratic, differentiable in z, with run r's weights (all runs' when ``r`` is None)."""
    event = len(dist.event_shape)
    w = torch.linspace(0.5, 1.5, N_RUNS * BATCH).reshape(N_RUNS, BATCH, *([1] * event))
    w = w if r is None else w[r]
    dims = tuple(range(-event, 0))
    return lambda z: (w * (z - 0.3) ** 2).sum(dims)


@pytest.mark.parametrize("name", estimators.base.stackable_estimators())
def test_stackable_estimators_equal_per_run_calls(name):
    est = estimators.get(name)
    ran = False
    for family, (make, params) in _stacked_dists(torch.float64).items():
        dist = make(params)
        if est.why_not(dist) is not None:
            continue
        ran = True
        n = max(2, est.min_samples)
        # an estimator that needs the log q term apart (stl, dreg) gets the same integrand as a LogQSplit
        integrand = ((lambda r, d: LogQSplit(_f_for(r, d), d)) if est.capabilities.needs_log_q
                     else (lambda r, d: _f_for(r, d)))
        out = est(integrand(None, dist), dist, n, GeneratorStack(_gens()))
        out.surrogate.backward()
        grads = [p.grad.clone() for p in params]
        for p in params:
            p.grad = None
        for r, gen in enumerate(_gens()):
            dist_r = make([p[r] for p in params])
            alone = est(integrand(r, dist_r), dist_r, n, gen)
            assert torch.equal(out.value[:, r], alone.value), (name, family)
            alone.surrogate.backward()
        for p, g in zip(params, grads):
            torch.testing.assert_close(g, p.grad, rtol=1e-12, atol=1e-12, msg=f"{name} on {family}")
    assert ran, f"{name} applies to none of the VAE's families"


def test_refuses_adapting_and_unstackable_estimators_at_the_call():
    make, params = _stacked_dists()["normal"]
    for est in (estimators.get("reinforce", baseline="moving_average"), estimators.get("measure_valued")):
        with pytest.raises(ValueError, match="cannot be stacked.*estimators that can: .*pathwise") as err:
            est(lambda z: z.sum(-1), make(params), 2, GeneratorStack(_gens()))
        assert "\n" not in str(err.value)


# --- whole runs ------------------------------------------------------------------------------------

def _results(out: Path):
    metrics = pd.read_csv(out / "metrics.csv").drop(columns=TIMING, errors="ignore")
    variance = pd.read_csv(out / "variance.csv").drop(columns=TIMING, errors="ignore")
    resumes = sorted((out / "checkpoints").glob("resume_*.pt"))
    return metrics, variance, (checkpoint.load(resumes[-1]) if resumes else None)


def _assert_equal(a: Path, b: Path, exact: bool) -> None:
    (m1, v1, s1), (m2, v2, s2) = _results(a), _results(b)
    kw = {"check_exact": True} if exact else {"rtol": RTOL, "atol": 1e-6}
    pd.testing.assert_frame_equal(m1, m2, **kw)
    pd.testing.assert_frame_equal(v1, v2, **kw)
    assert json.loads((a / "status.json").read_text()) == json.loads((b / "status.json").read_text())
    if s1 is None or s2 is None:
        assert s1 is None and s2 is None
        return
    assert s1["step"] == s2["step"] and torch.equal(s1["gen"], s2["gen"])
    for key in s1["model"]:
        if exact:
            assert torch.equal(s1["model"][key], s2["model"][key]), key
        else:
            torch.testing.assert_close(s1["model"][key], s2["model"][key], rtol=RTOL, atol=1e-6)


@pytest.fixture(scope="module")
def separate(tmp_path_factory):
    """Each cell's runs trained alone (``train.train``), by (cell, seed)."""
    root = tmp_path_factory.mktemp("separate")
    cache = {}

    def get(cell: str, seed: int, **extra) -> Path:
        key = (cell, seed, json.dumps(extra, sort_keys=True))
        if key not in cache:
            out = root / f"{cell}-{seed}-{len(cache)}"
            assert vae_train.train(_config(cell, seed, **extra), out) in ("completed", "diverged")
            cache[key] = out
        return cache[key]
    return get


@pytest.mark.parametrize("cell", list(CELLS))
def test_stacked_equals_separate(cell, separate, tmp_path):
    outs = [tmp_path / f"seed{s}" for s in SEEDS]
    assert stacked.train_stacked([_config(cell, s) for s in SEEDS], outs) == ["completed"] * len(SEEDS)
    for seed, out in zip(SEEDS, outs):
        _assert_equal(separate(cell, seed), out, exact=False)
        # its checkpoint is a normal Run checkpoint: the optimizer state a run alone would hold
        alone, mine = _results(separate(cell, seed))[2], _results(out)[2]
        for idx, entry in alone["opt"]["state"].items():
            for name, value in entry.items():
                torch.testing.assert_close(mine["opt"]["state"][idx][name], value, rtol=RTOL, atol=1e-6)
    # a finished stack is not run again
    mtimes = [(o / "metrics.csv").stat().st_mtime_ns for o in outs]
    assert stacked.train_stacked([_config(cell, s) for s in SEEDS], outs) == ["completed"] * len(SEEDS)
    assert mtimes == [(o / "metrics.csv").stat().st_mtime_ns for o in outs]


def test_diverging_member(separate, tmp_path):
    cell = "reinforce_loo"
    faults = {1: {"fault": {"nan_at_step": 12}}}
    outs = [tmp_path / f"seed{s}" for s in SEEDS]
    statuses = stacked.train_stacked([_config(cell, s, **faults.get(s, {})) for s in SEEDS], outs)
    assert statuses == ["completed", "diverged", "completed"]
    status = json.loads((outs[1] / "status.json").read_text())
    assert status["status"] == "diverged" and status["step"] == 12 and "nan" in status["message"]
    for seed, out in zip(SEEDS, outs):
        _assert_equal(separate(cell, seed, **faults.get(seed, {})), out, exact=False)


# --- kills, preemption, moving between a stack and runs alone ---------------------------------------

LONG = 200
LONG_SETTINGS = {"latent": {"family": "bernoulli", "dim": 6},
                 "estimator": {"name": "reinforce", "baseline": "leave_one_out"},
                 "n_samples": 2, "model": {"hidden": [16]}, "train": {"steps": LONG, "batch_size": 32},
                 "eval": {"every": 50, "iwae_k": 5, "train_subset": 100},
                 "variance": {"every": 100, "min_estimates": 4, "max_estimates": 4, "batch_size": 16},
                 "checkpoint_every": 10}
LONG_ARGS = [a for k, v in LONG_SETTINGS.items() for a in ("--set", f"{k}={json.dumps(v)}")]


def _stacked_cmd(root: Path, seeds=SEEDS) -> list[str]:
    return [sys.executable, "-m", "experiments.vae.stacked", "--seeds", *map(str, seeds),
            "--out", str(root / "seed{seed}"), *LONG_ARGS]


def _alone_cmd(out: Path, seed: int) -> list[str]:
    return [sys.executable, "-m", "experiments.vae.train", "--out", str(out), *LONG_ARGS, "--set", f"seed={seed}"]


def _step(out: Path) -> int:
    try:
        return json.loads((out / "status.json").read_text())["step"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return -1


def _signal_at(cmd: list[str], watch: Path, at_step: int, sig: int) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while _step(watch) < at_step and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    assert proc.poll() is None, f"the job ended before step {at_step}: the fault was not injected"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, proc.returncode, "", err)


def _long_config(seed: int):
    return resolve({**LONG_SETTINGS, "seed": seed})


@pytest.fixture(scope="module")
def long_straight(tmp_path_factory) -> Path:
    """An uninterrupted stacked job of the long config."""
    root = tmp_path_factory.mktemp("long_straight")
    res = subprocess.run(_stacked_cmd(root), cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    return root


def test_sigkill_resumes_identically(long_straight, tmp_path):
    for at_step in (40, 110):
        res = _signal_at(_stacked_cmd(tmp_path), tmp_path / "seed0", at_step, signal.SIGKILL)
        assert res.returncode == -signal.SIGKILL
        assert all(json.loads((tmp_path / f"seed{s}" / "status.json").read_text())["status"] == "running"
                   for s in SEEDS)
    res = subprocess.run(_stacked_cmd(tmp_path), cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resumed at step" in res.stderr
    for s in SEEDS:
        _assert_equal(long_straight / f"seed{s}", tmp_path / f"seed{s}", exact=True)


def test_members_move_between_stack_and_alone(long_straight, tmp_path):
    """A run started alone (preempted at ~40) joins a fresh stack (the others catch up, then all train
    together); the stack is preempted; one member finishes alone, the others as a stack: all equal the
    uninterrupted stacked job."""
    res = _signal_at(_alone_cmd(tmp_path / "seed2", 2), tmp_path / "seed2", 40, signal.SIGTERM)
    assert res.returncode == 75, res.stderr[-2000:]
    ahead = _step(tmp_path / "seed2")
    res = _signal_at(_stacked_cmd(tmp_path), tmp_path / "seed0", ahead + 20, signal.SIGTERM)
    assert res.returncode == 75, res.stderr[-2000:]
    assert all(json.loads((tmp_path / f"seed{s}" / "status.json").read_text())["status"] == "preempted" for s in SEEDS)
    assert vae_train.train(_long_config(0), tmp_path / "seed0") == "completed"
    assert stacked.train_stacked([_long_config(s) for s in SEEDS], [tmp_path / f"seed{s}" for s in SEEDS]) \
        == ["completed"] * 3
    for s in SEEDS:
        _assert_equal(long_straight / f"seed{s}", tmp_path / f"seed{s}", exact=False)


# --- refusals --------------------------------------------------------------------------------------

def test_refuses_an_adapting_estimator(tmp_path):
    configs = [resolve({**SMALL, "latent": {"family": "bernoulli", "dim": 6}, "seed": s,
                        "estimator": {"name": "reinforce", "baseline": "moving_average"}}) for s in SEEDS]
    with pytest.raises(ValueError, match=r"cannot be stacked: it adapts.*estimators that can: .*pathwise") as err:
        stacked.StackedRuns(configs, [tmp_path / f"s{s}" for s in SEEDS])
    assert "\n" not in str(err.value)
    res = subprocess.run([sys.executable, "-m", "experiments.vae.stacked", "--seeds", "0", "1", "--out",
                          str(tmp_path / "cli{seed}"), "--set", "latent={family: bernoulli, dim: 6}",
                          "--set", "estimator={name: reinforce, baseline: moving_average}"],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0 and "cannot be stacked" in res.stderr


def test_refuses_nvil(tmp_path):
    configs = [resolve({**SMALL, "latent": {"family": "bernoulli", "dim": 6}, "seed": s,
                        "estimator": {"name": "reinforce", "baseline": "leave_one_out", "nvil": True},
                        "n_samples": 2}) for s in SEEDS]
    with pytest.raises(ValueError, match="NVIL"):
        stacked.StackedRuns(configs, [tmp_path / f"s{s}" for s in SEEDS])


def test_one_after_another_equals_runs_alone_and_stops_before_the_next_run(tmp_path):
    ma = {"name": "reinforce", "baseline": "moving_average"}  # adapts: cannot be stacked, can run in turn
    configs = [resolve({**SMALL, "latent": {"family": "bernoulli", "dim": 6}, "seed": s, "estimator": ma})
               for s in SEEDS[:2]]
    outs = [tmp_path / f"turn{s}" for s in SEEDS[:2]]
    assert stacked.train_one_after_another(configs, outs) == ["completed", "completed"]
    for config, out in zip(configs, outs):
        alone = tmp_path / f"alone{config.seed}"
        assert vae_train.train(config, alone) == "completed"
        for table in ("metrics.csv", "variance.csv"):
            a, b = (pd.read_csv(d / table).drop(columns=["git_commit"], errors="ignore") for d in (out, alone))
            timing = [c for c in a.columns if "seconds" in c or "work" in c]
            pd.testing.assert_frame_equal(a.drop(columns=timing), b.drop(columns=timing), check_exact=True)

    class Stopped:
        requested = "SIGTERM"

    later = [tmp_path / f"stopped{s}" for s in SEEDS[:2]]
    assert stacked.train_one_after_another(configs, later, Stopped()) == ["preempted", "preempted"]
    assert (later[0] / "status.json").exists() and not later[1].exists()  # the second never started


def test_refuses_configs_differing_beyond_the_seed(tmp_path):
    configs = [_config("pathwise", 0), _config("pathwise", 1, train={"steps": STEPS, "batch_size": 32, "lr": 0.01})]
    with pytest.raises(ValueError, match=r"run 1 differs from run 0 in 'train.lr'"):
        stacked.StackedRuns(configs, [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ValueError, match="distinct out folders"):
        stacked.StackedRuns([_config("pathwise", 0), _config("pathwise", 1)], [tmp_path / "a", tmp_path / "a"])


# --- the pipeline option (vae.stack_seeds) -------------------------------------------------------------

STACK_STUDY = {
    "study": "stack", "seeds": [0, 1], "devices": ["cpu"],
    "synthetic": {"settings": {"n_samples": [2], "measurement": {"min_estimates": 200, "max_estimates": 400,
                                                                 "timing_calls": 2, "warmup_calls": 2},
                               "problems": {"dimension": {"dims": [2]}}},
                  "estimators": {"pathwise": {"name": "pathwise"}}},
    "vae": {"datasets": ["digits"], "n_samples": [2],
            "settings": {"model": {"hidden": [16]}, "train": {"steps": 20, "batch_size": 20}, "checkpoint_every": 10,
                         "eval": {"every": 10, "iwae_k": 2, "train_subset": 100},
                         "variance": {"every": 10, "batch_size": 10, "min_estimates": 4, "max_estimates": 4,
                                      "reference_gradient": {"n_samples": 4, "n_estimates": 4}}},
            "latents": {"gaussian": {"family": "gaussian", "dim": 2},
                        "bernoulli": {"family": "bernoulli", "dim": 3}},
            "estimators": {"pathwise": {"name": "pathwise"}, "gumbel": {"name": "gumbel_softmax"},
                           "reinforce_ma": {"name": "reinforce", "baseline": "moving_average"}},
            "shared_checkpoints": {"trained_with": {"gaussian": "pathwise", "bernoulli": "gumbel"},
                                   "n_samples": [2]}},
}


def _study(tmp: Path, stacked: bool, sequential: bool = False) -> tuple[str, dict]:
    study = copy.deepcopy(STACK_STUDY)
    study["vae"]["stack_seeds"] = stacked
    study["vae"]["sequential_seeds"] = sequential
    out = run_study(tmp, study, tables_only=True)
    tables = {name: pd.read_csv(tmp / "results" / "stack" / "tables" / f"{name}.csv")
              for name in ("vae_metrics", "vae_variance", "run_status")}
    return out, tables


def _same_tables(first: dict, second: dict, exact: bool) -> None:
    timing = [c for t in first.values() for c in t.columns if "seconds" in c or "work" in c] + ["git_commit"]
    for name, keys in (("vae_metrics", ["latent", "estimator_id", "seed", "step", "split"]),
                       ("vae_variance", ["latent", "estimator_id", "protocol", "measured_n_samples", "seed", "step"])):
        a, b = (t[name].drop(columns=timing, errors="ignore").sort_values(keys).reset_index(drop=True)
                for t in (first, second))
        pd.testing.assert_frame_equal(a, b, check_exact=exact, **({} if exact else {"rtol": 1e-4}))


def test_a_study_with_stacked_seeds_has_the_tables_of_one_without(tmp_path):
    out_stacked, stacked = _study(tmp_path / "stacked", True)
    out_single, single = _study(tmp_path / "single", False)
    out_sequential, sequential = _study(tmp_path / "sequential", True, sequential=True)
    assert "rule vae_train_stacked:" in out_stacked and "rule vae_train_stacked:" not in out_single
    assert "rule vae_train:" in out_stacked   # reinforce with a moving average adapts: one job per seed
    assert "rule vae_train:" not in out_sequential  # ... or its seeds one after another in one job
    _same_tables(stacked, single, exact=False)
    _same_tables(sequential, single, exact=False)
    _same_tables(sequential, stacked, exact=True)  # on this CPU: the same bits
    assert (stacked["run_status"]["status"] == "completed").all() and len(stacked["run_status"]) == 8
    assert sequential["run_status"].drop(columns="git_commit", errors="ignore").sort_values(
        ["latent", "estimator_id", "seed"]).reset_index(drop=True).equals(
        stacked["run_status"].drop(columns="git_commit", errors="ignore").sort_values(
            ["latent", "estimator_id", "seed"]).reset_index(drop=True))
