"""VAEs under the IWAE bound (``objective: {bound: iwae, k: K}``): VIMCO and the other estimators measured on
the same objective against its exact gradient (enumeration of K-tuples), training runs, and the plan."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

import estimators
from experiments.config import study_config
from experiments.config.plan import make_plan
from experiments.config.typed_config import parse
from experiments.vae.encoder_gradient import encoder_gradient_estimates, reference_gradient
from experiments.vae.latent import LatentSpec
from experiments.vae.model import VAE
from experiments.vae.run_config import ObjectiveSettings, ReferenceGradientSettings, resolve
from experiments.vae.train import train
from studies import run_study
from stats import assert_mean_matches, max_z

ROOT = Path(__file__).resolve().parent.parent
IWAE = ObjectiveSettings(bound="iwae", k=3)
R = 6000


def _model(family_cfg):
    torch.manual_seed(0)
    model = VAE(16, parse(LatentSpec, family_cfg), [12], "tanh").double()
    x = torch.bernoulli(torch.full((4, 16), 0.4, dtype=torch.float64), generator=torch.Generator().manual_seed(1))
    return model, x


def _exact(model, x, objective):
    reference = reference_gradient(model, x, None, ReferenceGradientSettings(max_support=4096), objective)
    assert reference.kind == "exact"
    return reference


CASES = [("vimco", {}, 1, True), ("vimco", {}, 1, False), ("reinforce", {"baseline": "leave_one_out"}, 3, True),
         ("reinforce", {"baseline": "leave_one_out"}, 3, False), ("arm", {}, 2, True), ("relax", {}, 1, False)]


@pytest.mark.parametrize("name, options, tuples, bernoulli", CASES,
                         ids=[f"{c[0]}-{'bernoulli' if c[3] else 'categorical'}" for c in CASES])
def test_estimators_are_unbiased_for_the_vae_bound(name, options, tuples, bernoulli):
    family = {"family": "bernoulli", "dim": 2} if bernoulli else {"family": "categorical", "groups": 1, "classes": 3}
    if name == "arm" and not bernoulli:
        pytest.skip("arm is Bernoulli only")
    model, x = _model(family)
    reference = _exact(model, x, IWAE)
    result = encoder_gradient_estimates(model, x, estimators.get(name, **options), n_samples=tuples, n_estimates=R,
                                        generator=torch.Generator().manual_seed(3), objective=IWAE)
    assert_mean_matches(result, reference.gradient)


def test_the_elbos_gradient_is_not_the_bounds():
    model, x = _model({"family": "bernoulli", "dim": 2})
    reference = _exact(model, x, IWAE)
    elbo = encoder_gradient_estimates(model, x, estimators.get("reinforce", baseline="leave_one_out"), n_samples=3,
                                      n_estimates=R, generator=torch.Generator().manual_seed(3))
    assert max_z(elbo, reference.gradient) > 10
    assert max_z(elbo, _exact(model, x, ObjectiveSettings()).gradient) < 5


def test_pathwise_is_the_iwae_gradient_on_gaussian_latents():
    """Pathwise on K-tuples (Burda et al.'s IWAE gradient) and VIMCO agree within standard errors."""
    model, x = _model({"family": "gaussian", "dim": 2})
    a, b = (encoder_gradient_estimates(model, x, estimators.get(name), n_samples=1, n_estimates=R,
                                       generator=torch.Generator().manual_seed(4), objective=IWAE)
            for name in ("pathwise", "vimco"))
    se = (a.bias_se.pow(2) + b.bias_se.pow(2)).sqrt()
    noisy = se > 0   # the weights of input pixels that are 0 in every data point have no gradient at all
    assert torch.equal(a.mean[~noisy], b.mean[~noisy]) and noisy.sum() > 10
    assert float(((a.mean - b.mean).abs()[noisy] / se[noisy]).max()) < 5


def test_a_run_trains_on_the_bound_and_records_k_evaluations_per_tuple(tmp_path):
    base = {"latent": {"family": "bernoulli", "dim": 4}, "model": {"hidden": [16]},
            "objective": {"bound": "iwae", "k": 3}, "train": {"steps": 20, "batch_size": 20},
            "eval": {"every": 20, "iwae_k": 3, "train_subset": 50},
            "variance": {"every": 20, "batch_size": 10, "min_estimates": 10, "max_estimates": 10,
                         "reference_gradient": {"n_samples": 4, "n_estimates": 4}}}
    for name, n, evaluations in (("vimco", 1, 3), ("vimco", 2, 6), ("reinforce", 2, 6)):
        cfg = resolve({**base, "estimator": {"id": name, "name": name}, "n_samples": n})
        assert train(cfg, tmp_path / f"{name}{n}") == "completed"
        variance = pd.read_csv(tmp_path / f"{name}{n}" / "variance.csv")
        assert (variance["f_evaluations"] == evaluations).all() and variance["total_variance"].gt(0).all()
    with pytest.raises(ValueError, match="n_samples=1 is below its minimum 2"):   # vimco's K >= 2
        train(resolve({**base, "objective": {"bound": "iwae", "k": 1}, "estimator": {"id": "vimco", "name": "vimco"},
                       "n_samples": 1}), tmp_path / "bad")


def test_a_study_latent_on_the_bound_is_planned_with_vimco_and_tuples():
    config = copy.deepcopy(yaml.safe_load((ROOT / "config" / "tiny.yaml").read_text()))
    config["vae"]["latents"]["bernoulli_iwae"] = {"family": "bernoulli", "dim": 2,
                                                  "settings": {"objective": {"bound": "iwae", "k": 3}}}
    config["vae"]["estimators"]["vimco"] = {"name": "vimco"}
    config["vae"]["shared_checkpoints"]["trained_with"]["bernoulli_iwae"] = "vimco"
    config["vae"]["n_samples"] = [1, 2]
    config["vae"]["shared_checkpoints"]["n_samples"] = [1, 2]
    plan = make_plan(study_config.check(config), config["devices"])
    runs = [r for r in plan.vae_runs if r.latent_id == "bernoulli_iwae"]
    assert "vimco" in {r.estimator_id for r in runs}
    assert plan.job_config(runs[0].path)["objective"] == {"bound": "iwae", "kl": "exact", "k": 3}
    assert not any(r.estimator_id == "vimco" and r.latent_id != "bernoulli_iwae" for r in plan.vae_runs)
    reasons = {(e.setting, e.estimator_id, e.n_samples): e.reason for e in plan.excluded}
    assert "another objective (iwae" in reasons[("categorical", "vimco", None)]
    job = next(j for j in plan.shared_jobs if j.host.latent_id == "bernoulli_iwae")
    measured = dict(job.measured)
    assert measured["vimco"] == (1, 2) and measured["reinforce_loo"] == (2,)   # n_samples counts K-tuples
    assert reasons[("bernoulli_iwae", "reinforce_loo", 1)] == "n_samples=1 is below its minimum 2"
    assert json.dumps(plan.job_config(job.path))  # the job's config is plain data


def test_two_latents_with_one_label_stay_apart_in_the_tables(tmp_path):
    """bernoulli(3) under the ELBO and under the IWAE bound: the tables name them apart, never merge them."""
    study = {
        "study": "twolabels", "seeds": [0], "devices": ["cpu"],
        "synthetic": {"settings": {"n_samples": [2], "measurement": {"min_estimates": 200, "max_estimates": 400,
                                                                     "timing_calls": 2, "warmup_calls": 2},
                                   "problems": {"dimension": {"dims": [2]}}},
                      "estimators": {"pathwise": {"name": "pathwise"}}},
        "vae": {"datasets": ["digits"], "n_samples": [1],
                "settings": {"model": {"hidden": [16]}, "train": {"steps": 10, "batch_size": 20},
                             "eval": {"every": 10, "iwae_k": 2, "train_subset": 100},
                             "variance": {"every": 10, "batch_size": 10, "min_estimates": 4, "max_estimates": 4,
                                          "reference_gradient": {"n_samples": 4, "n_estimates": 4}}},
                "latents": {"bernoulli": {"family": "bernoulli", "dim": 3},
                            "bernoulli_iwae": {"family": "bernoulli", "dim": 3,
                                               "settings": {"objective": {"bound": "iwae", "k": 2}}}},
                "estimators": {"gumbel": {"name": "gumbel_softmax"}, "vimco": {"name": "vimco"},
                               "reinforce": {"name": "reinforce"}},
                "shared_checkpoints": {"trained_with": {"bernoulli": "gumbel", "bernoulli_iwae": "vimco"},
                                       "n_samples": [1]}},
    }
    run_study(tmp_path, study, tables_only=True)
    tables = tmp_path / "results" / "twolabels" / "tables"
    variance = pd.read_csv(tables / "vae_variance.csv")
    names = dict(zip(variance["latent_id"], variance["latent"]))
    assert names == {"bernoulli": "bernoulli(3) bernoulli", "bernoulli_iwae": "bernoulli(3) bernoulli_iwae"}
    shared = variance[variance["protocol"] == "shared_checkpoints"]
    assert set(shared.loc[shared["estimator_id"] == "vimco", "latent_id"]) == {"bernoulli_iwae"}
    elbo = pd.read_csv(tables / "elbo_table.csv")
    assert len(elbo) == len(elbo.drop_duplicates(["latent", "estimator_id"])) == 5   # gumbel, reinforce x 2; vimco
