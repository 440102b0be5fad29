"""VAE runs: resume after a kill is bit-identical, NaN stops cleanly, the variance protocol is right."""
from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import estimators
from experiments.runtime import checkpoint
from experiments.runtime.devices import DeviceUnavailableError, resolve_device
from experiments.vae import train as vae_train
from experiments.config.typed_config import ConfigError, parse
from experiments.vae.encoder_gradient import encoder_gradient_estimates, reference_gradient
from experiments.vae.latent import LatentSpec
from experiments.vae.model import VAE
from experiments.vae.run_config import ReferenceGradientSettings, resolve

ROOT = Path(__file__).resolve().parent.parent
TIMING = ["seconds_per_step", "seconds_per_estimate", "work_normalized_variance", "eval_seconds"]
RUN_ARGS = ["--set", "latent={family: bernoulli, dim: 6}",
            "--set", "estimator={name: reinforce, baseline: moving_average, nvil: true}",
            "--set", "n_samples=2", "--set", "train.steps=400", "--set", "eval.every=100",
            "--set", "variance.every=200", "--set", "variance.min_estimates=10", "--set", "variance.max_estimates=10",
            "--set", "checkpoint_every=10", "--set", "model.hidden=[32]"]


def _cmd(out):
    return [sys.executable, "-m", "experiments.vae.train", "--out", str(out), *RUN_ARGS]


def _tables(out: Path):
    metrics = pd.read_csv(out / "metrics.csv").drop(columns=TIMING, errors="ignore")
    variance = pd.read_csv(out / "variance.csv").drop(columns=TIMING, errors="ignore")
    model = checkpoint.load(sorted((out / "checkpoints").glob("resume_*.pt"))[-1])["model"]
    return metrics, variance, model


def test_resume_after_kill_is_bit_identical(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(_cmd(straight), check=True, cwd=ROOT, capture_output=True)
    proc = subprocess.Popen(_cmd(killed), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    snapshot = killed / "checkpoints" / "step_0000200.pt"
    deadline = time.time() + 120
    while not snapshot.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    status = json.loads((killed / "status.json").read_text())["status"]
    assert status == "running", "the run finished before it could be killed; the test did not test resume"
    step_at_kill = checkpoint.load(sorted((killed / "checkpoints").glob("resume_*.pt"))[-1])["step"]
    assert 0 < step_at_kill < 400
    subprocess.run(_cmd(killed), check=True, cwd=ROOT, capture_output=True)
    assert json.loads((killed / "status.json").read_text()) == {"status": "completed", "step": 400}
    m1, v1, p1 = _tables(straight)
    m2, v2, p2 = _tables(killed)
    pd.testing.assert_frame_equal(m1, m2, check_exact=True)
    pd.testing.assert_frame_equal(v1, v2, check_exact=True)
    assert all(torch.equal(p1[k], p2[k]) for k in p1)


def test_nan_stops_cleanly_with_status(tmp_path):
    out = tmp_path / "nan"
    res = subprocess.run([sys.executable, "-m", "experiments.vae.train", "--out", str(out), "--set", "train.steps=50",
                          "--set", "eval.every=20", "--set", "variance.every=0", "--set", "fault.nan_at_step=27"],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "diverged" and status["step"] == 27 and "nan" in status["message"]
    metrics = pd.read_csv(out / "metrics.csv")
    assert sorted(metrics.step.unique()) == [0, 20]  # what finished before the divergence is kept


def test_finished_run_is_not_repeated(tmp_path, caplog):
    config = resolve({"train": {"steps": 5}, "eval": {"every": 5}, "variance": {"every": 0}})
    assert vae_train.train(config, tmp_path) == "completed"
    before = (tmp_path / "metrics.csv").stat().st_mtime_ns
    assert vae_train.train(config, tmp_path) == "completed"
    assert (tmp_path / "metrics.csv").stat().st_mtime_ns == before


def test_config_errors():
    with pytest.raises(ConfigError, match=r"^epochs: unknown key; valid keys: cache_dir, checkpoint_every"):
        resolve({"epochs": 3})
    with pytest.raises(ConfigError, match="^preset: 'vae' is not valid; valid: kingma2013"):
        resolve({"preset": "vae"})
    with pytest.raises(ConfigError, match="^dataset: 'cifar' is not valid; valid: digits"):
        resolve({"dataset": "cifar"})
    with pytest.raises(ConfigError, match=r"^train.stesp: unknown key \(did you mean 'steps'\?\)"):
        resolve({"train": {"stesp": 3}})
    with pytest.raises(ConfigError, match=r"^estimator.tau: unknown option for estimator 'gumbel_softmax'"):
        resolve({"estimator": {"name": "gumbel_softmax", "tau": 1}})


def test_changed_config_sets_stale_checkpoints_aside_and_completes(tmp_path):
    """A setting changed after a run: the old checkpoints are kept aside, the run starts afresh and completes."""
    base = {"model": {"hidden": [8]}, "train": {"steps": 6}, "eval": {"every": 3}, "variance": {"every": 0},
            "checkpoint_every": 2}
    assert vae_train.train(resolve(base), tmp_path) == "completed"
    changed = resolve(base, {"train": {"steps": 8}})
    assert vae_train.train(changed, tmp_path) == "completed"
    assert json.loads((tmp_path / "status.json").read_text()) == {"status": "completed", "step": 8}
    assert sorted(pd.read_csv(tmp_path / "metrics.csv").step.unique()) == [0, 3, 6, 8]
    assert list(tmp_path.glob("checkpoints.stale-*/resume_*.pt"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only machine's refusal")
def test_cuda_absent_is_an_error_not_a_cpu_run(tmp_path):
    with pytest.raises(DeviceUnavailableError, match="'cuda' was asked for but CUDA is not available"):
        resolve_device("cuda")
    res = subprocess.run([sys.executable, "-m", "experiments.vae.train", "--out", str(tmp_path),
                          "--set", "device=cuda"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode != 0 and "CUDA is not available" in res.stderr


def _small_model(family_cfg, seed=0):
    torch.manual_seed(seed)
    latent = parse(LatentSpec, family_cfg)
    model = VAE(16, latent, [12], "tanh").double()
    x = torch.bernoulli(torch.full((5, 16), 0.4, dtype=torch.float64), generator=torch.Generator().manual_seed(1))
    return model, x


@pytest.mark.parametrize("family", [{"family": "bernoulli", "dim": 4},
                                    {"family": "categorical", "groups": 2, "classes": 3}])
def test_variance_protocol_against_exact_enumeration(family):
    """Known answer: with a latent small enough to enumerate, the reference is exact; REINFORCE's mean
    encoder gradient matches it within its standard errors, straight-through's does not, and `exact`
    itself has zero variance and zero bias."""
    model, x = _small_model(family)
    gen = torch.Generator().manual_seed(0)
    ref = reference_gradient(model, x, gen, ReferenceGradientSettings(max_support=64))
    assert ref.kind == "exact" and float(ref.se.abs().max()) == 0
    res = encoder_gradient_estimates(model, x, estimators.get("reinforce", baseline="leave_one_out"), n_samples=4,
                                     n_estimates=3000, generator=gen, reference=ref)
    z = (res.bias.abs() / res.bias_se.clamp_min(1e-12))
    assert float(z.max()) < 5.5  # hundreds of coordinates: max |Z| of a correct estimator stays below ~4.5
    st = encoder_gradient_estimates(model, x, estimators.get("straight_through"), n_samples=4, n_estimates=3000,
                                    generator=gen, reference=ref)
    assert float((st.bias.abs() / st.bias_se.clamp_min(1e-12)).max()) > 10
    exact = encoder_gradient_estimates(model, x, estimators.get("exact"), n_samples=1, n_estimates=3,
                                       generator=gen, reference=ref)
    assert exact.total_variance < 1e-20 and float(exact.bias.abs().max()) < 1e-10


def test_mc_reference_for_gaussian_latents():
    model, x = _small_model({"family": "gaussian", "dim": 3})
    gen = torch.Generator().manual_seed(0)
    ref = reference_gradient(model, x, gen, ReferenceGradientSettings(max_support=64, n_samples=50, n_estimates=40))
    assert ref.kind == "mc" and float(ref.se.norm()) > 0
    res = encoder_gradient_estimates(model, x, estimators.get("reinforce", baseline="leave_one_out"), n_samples=8,
                                     n_estimates=2000, generator=gen, reference=ref)
    se = (res.bias_se.pow(2) + ref.se.pow(2)).sqrt()
    assert float((res.bias.abs() / se.clamp_min(1e-12)).max()) < 5.5


def test_shared_checkpoints_protocol_measures_every_applicable_estimator(tmp_path):
    run = tmp_path / "run"
    config = resolve({"latent": {"family": "bernoulli", "dim": 4}, "model": {"hidden": [16]},
                      "estimator": {"name": "straight_through"}, "train": {"steps": 20}, "eval": {"every": 20},
                      "variance": {"every": 10, "min_estimates": 5, "max_estimates": 5}})
    assert vae_train.train(config, run) == "completed"
    from experiments.config.estimator_spec import EstimatorSpec
    from experiments.vae.shared_checkpoints import measure

    specs = [EstimatorSpec.from_config(i, e) for i, e in [
        ("pathwise", {"name": "pathwise"}), ("loo", {"name": "reinforce", "baseline": "leave_one_out"}),
        ("nvil", {"name": "reinforce", "nvil": True}), ("exact", {"name": "exact"})]]
    frame, excluded = measure(run, [(spec, [1, 2]) for spec in specs])
    assert sorted(frame.step.unique()) == [0, 10, 20]
    assert set(frame.estimator_id) == {"loo", "exact"}
    assert set(frame.run_estimator_name) == {"straight_through"} and set(frame.protocol) == {"shared_checkpoints"}
    reasons = {(e["estimator_id"], e["n_samples"]): e["reason"] for e in excluded}
    assert reasons[("pathwise", 1)].startswith("Independent(Bernoulli) has no reparameterized sampler")
    assert reasons[("loo", 1)] == "n_samples=1 is below its minimum 2"
    assert "exists only in a run trained with one" in reasons[("nvil", 2)]
    loo = frame[frame.estimator_name == "reinforce"]
    assert set(loo.measured_n_samples) == {2}  # leave-one-out needs two samples
    assert (frame[frame.estimator_name == "exact"].total_variance < 1e-12).all()
    assert (frame.reference_kind == "exact").all()


def test_shared_checkpoints_read_the_reference_the_run_kept_and_it_equals_a_recomputation(tmp_path):
    """The reference at a checkpoint is computed once (by the training run) and read back by the protocol;
    read back, it is bit-identical to computing it again, and a snapshot without it is still measured."""
    from experiments.config.estimator_spec import EstimatorSpec
    from experiments.vae.encoder_gradient import ReferenceGradient
    from experiments.vae.shared_checkpoints import measure

    run_dir = tmp_path / "run"
    config = resolve({"latent": {"family": "gaussian", "dim": 3}, "model": {"hidden": [8]}, "train": {"steps": 10},
                      "eval": {"every": 10}, "variance": {"every": 10, "min_estimates": 4, "max_estimates": 4,
                                                           "reference_gradient": {"n_samples": 8, "n_estimates": 4}}})
    assert vae_train.train(config, run_dir) == "completed"
    snapshot = run_dir / "checkpoints" / "step_0000010.pt"
    state = checkpoint.load(snapshot)
    kept = ReferenceGradient.from_state(state["reference"])
    assert kept.kind == "mc"
    run = vae_train.Run(config, run_dir)
    run.model.load_state_dict(state["model"])
    run.step = 10
    again = reference_gradient(run.model, run.test_data[: config.variance.batch_size], run._eval_gen("reference"),
                               config.variance.reference_gradient)
    assert torch.equal(kept.gradient, again.gradient) and torch.equal(kept.se, again.se)
    spec = EstimatorSpec.from_config("pathwise", {"name": "pathwise"})
    cached, _ = measure(run_dir, [(spec, [2])])
    del state["reference"]
    checkpoint.save(snapshot, state)
    recomputed, _ = measure(run_dir, [(spec, [2])])
    pd.testing.assert_frame_equal(cached.drop(columns=TIMING, errors="ignore"),
                                  recomputed.drop(columns=TIMING, errors="ignore"), check_exact=True)


@pytest.mark.parametrize("family", [{"family": "gaussian", "dim": 5}, {"family": "bernoulli", "dim": 7},
                                    {"family": "categorical", "groups": 3, "classes": 4}])
def test_the_closed_form_kl_is_torchs(family):
    model, x = _small_model(family)
    q = model.posterior(x * 3.0)  # away from the prior
    expected = torch.distributions.kl_divergence(q, model.prior(q))
    assert torch.allclose(model.kl(q), expected, rtol=1e-10, atol=1e-12) and (expected > 0.01).all()


def _kl_problem(kl: str):
    """The VAE objective of a fixed decoder as a function of the posterior's logits ``[B, D]`` (far from the
    prior, so the KL is large), replicable along a leading dimension for vectorized measurement."""
    model, x = _small_model({"family": "bernoulli", "dim": 4})
    logits = torch.linspace(-3.0, 3.0, 5 * 4, dtype=torch.float64).reshape(5, 4)

    def build(lg):
        q = torch.distributions.Independent(torch.distributions.Bernoulli(logits=lg), 1)
        f, exact_term = model.objective(x, q, kl)
        return f, q, exact_term

    def exact_gradient():
        leaf = logits.clone().requires_grad_(True)
        f, q, exact_term = build(leaf)
        return torch.autograd.grad(estimators.get("exact")(f, q).surrogate + exact_term, leaf)[0].reshape(-1)

    return build, logits, exact_gradient()


@pytest.mark.parametrize("kl", ["exact", "in_signal"])
def test_both_kl_objectives_are_unbiased(kl):
    """The KL's exact gradient added directly, or the KL in the learning signal: the same gradient."""
    build, logits, exact = _kl_problem(kl)
    res = estimators.measure_variance(estimators.get("reinforce"), build, [logits.clone().requires_grad_(True)],
                                      n_estimates=150_000, n_samples=2, generator=torch.Generator().manual_seed(3),
                                      reference=exact, vectorize=True)
    assert float((res.bias.abs() / res.bias_se).max()) < 5
    assert float(res.bias_se.max() / exact.abs().max()) < 0.05, "not enough estimates for the test to have power"


def test_the_kl_in_the_signal_only_adds_variance_to_reinforce():
    variance = {}
    for kl in ("exact", "in_signal"):
        build, logits, _ = _kl_problem(kl)
        for name in ("reinforce", "gumbel_softmax"):
            res = estimators.measure_variance(estimators.get(name), build, [logits.clone().requires_grad_(True)],
                                              n_estimates=20_000, n_samples=1, vectorize=True,
                                              generator=torch.Generator().manual_seed(5))
            variance[kl, name] = (res.total_variance, res.total_variance_se)
    (v_exact, se_exact), (v_signal, se_signal) = variance["exact", "reinforce"], variance["in_signal", "reinforce"]
    assert v_signal - v_exact > 5 * math.hypot(se_exact, se_signal)
    # A reparameterized relaxation differentiates the KL exactly either way: the same estimates.
    assert variance["exact", "gumbel_softmax"][0] == pytest.approx(variance["in_signal", "gumbel_softmax"][0], rel=1e-6)


def test_dropping_the_exact_kl_term_is_caught():
    """Meta-test: an objective that forgets the KL's exact gradient fails the unbiasedness check above."""
    build, logits, exact = _kl_problem("exact")
    res = estimators.measure_variance(estimators.get("reinforce"), lambda lg: build(lg)[:2],
                                      [logits.clone().requires_grad_(True)], n_estimates=150_000, n_samples=2,
                                      generator=torch.Generator().manual_seed(3), reference=exact, vectorize=True)
    assert float((res.bias.abs() / res.bias_se).max()) > 5


def test_the_documented_variance_columns_are_the_measured_ones():
    from experiments.vae.encoder_gradient import VARIANCE_COLUMNS, variance_row

    model, x = _small_model({"family": "bernoulli", "dim": 3})
    gen = torch.Generator().manual_seed(0)
    ref = reference_gradient(model, x, gen, ReferenceGradientSettings(max_support=64))
    res = encoder_gradient_estimates(model, x, estimators.get("reinforce"), n_samples=1, n_estimates=4, generator=gen,
                                     reference=ref)
    assert list(variance_row(res, ref)) == VARIANCE_COLUMNS
    assert list(variance_row(res, None)) == VARIANCE_COLUMNS
