"""The plan, unit-tested without Snakemake: typos at any depth, one applicability function, job configs."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from experiments.config import study_config
from experiments.config.estimator_spec import EstimatorSpec
from experiments.config.plan import make_plan
from experiments.config.typed_config import ConfigError
from experiments.vae import run_config

ROOT = Path(__file__).resolve().parent.parent
TINY = yaml.safe_load((ROOT / "config" / "tiny.yaml").read_text())


def _plan(mutate=None):
    config = copy.deepcopy(TINY)
    if mutate:
        mutate(config)
    config = study_config.check(config)
    return make_plan(config, config["devices"])


def _error(mutate) -> str:
    with pytest.raises(ConfigError) as info:
        _plan(mutate)
    message = str(info.value)
    assert "\n" not in message, "config errors are one line"
    return message


@pytest.mark.parametrize("mutate, expected", [
    # the study config
    (lambda c: c.update(sedes=[0]), "sedes: unknown key (did you mean 'seeds'?); valid keys: check_devices"),
    (lambda c: c["vae"].update(shared_checkpoint={}),
     "vae.shared_checkpoint: unknown key (did you mean 'shared_checkpoints'?)"),
    (lambda c: c["vae"]["latents"]["gaussian"].update(dims=4),
     "vae.latents.gaussian.dims: unknown key (did you mean 'dim'?)"),
    (lambda c: c["vae"].update(datasets=["mnits"]), "vae.datasets.0: 'mnits' is not valid (did you mean 'mnist'?)"),
    # nested VAE settings
    (lambda c: c["vae"]["settings"]["train"].update(stesp=10),
     "vae.settings.train.stesp: unknown key (did you mean 'steps'?); valid keys: batch_size, lr, optimizer, steps"),
    (lambda c: c["vae"]["settings"]["variance"].update(reference_gradient={"n_sample": 3}),
     "vae.settings.variance.reference_gradient.n_sample: unknown key (did you mean 'n_samples'?)"),
    (lambda c: c["vae"]["settings"]["train"].update(optimizer="adamw"),
     "vae.settings.train.optimizer: 'adamw' is not valid (did you mean 'adam'?); valid: adam, sgd, rmsprop"),
    (lambda c: c["vae"]["settings"]["train"].update(steps="many"), "vae.settings.train.steps: expected an integer"),
    # estimator entries and options
    (lambda c: c["vae"]["estimators"]["gumbel"].update(tau=1),
     "vae.estimators.gumbel.tau: unknown option for estimator 'gumbel_softmax'; valid options: temperature"),
    (lambda c: c["synthetic"]["estimators"]["reinforce"].update(baselin="none"),
     "synthetic.estimators.reinforce.baselin: unknown option for estimator 'reinforce' (did you mean 'baseline'?)"),
    (lambda c: c["synthetic"]["estimators"]["reinforce"].update(name="reinforse"),
     "synthetic.estimators.reinforce.name: unknown estimator 'reinforse' (did you mean 'reinforce'?)"),
    (lambda c: c["synthetic"]["estimators"]["reinforce"].update(nvil=True),
     "synthetic.estimators.reinforce.nvil: not valid here (a learned baseline needs the VAE study)"),
    (lambda c: c["vae"]["estimators"]["gumbel"].update(nvil=True),
     "vae.estimators.gumbel.nvil: a learned baseline (NVIL) applies to 'reinforce' only"),
    (lambda c: c["vae"]["estimators"]["gumbel"].update(temperature=-1),
     "vae.estimators.gumbel: temperature must be > 0"),
    # synthetic settings
    (lambda c: c["synthetic"]["settings"]["measurement"].update(target_rs=0.1),
     "synthetic.settings.measurement.target_rs: unknown key (did you mean 'target_rse'?)"),
    (lambda c: c["synthetic"]["settings"]["problems"].update(mohamed_coss={"k": [1]}),
     "synthetic.settings.problems.mohamed_coss: unknown key (did you mean 'mohamed_cos'?)"),
    (lambda c: c["synthetic"]["settings"]["problems"]["dimension"].update(dim=[3]),
     "synthetic.settings.problems.dimension.dim: unknown key (did you mean 'dims'?)"),
    # cross-references
    (lambda c: c["vae"]["shared_checkpoints"]["trained_with"].update(gaussian="gumbel"),
     "vae.shared_checkpoints.trained_with.gaussian: must name an estimator id that runs on that latent"),
    (lambda c: c["vae"]["estimators"].update(st={"name": "straight_through", "latents": ["gaussian"]}),
     "vae.estimators.st.latents: asks for latent 'gaussian' (gaussian(4)), but straight_through does not apply"),
    (lambda c: c["vae"]["shared_checkpoints"]["trained_with"].update(gausian="pathwise"),
     "vae.shared_checkpoints.trained_with.gausian: unknown latent (did you mean 'gaussian'?)"),
    (lambda c: c["vae"]["estimators"]["pathwise"].update(latents=["gausian"]),
     "vae.estimators.pathwise.latents: unknown latent(s) ['gausian']"),
])
def test_a_typo_at_any_depth_is_refused_with_its_path(mutate, expected):
    assert expected in _error(mutate)


def test_every_job_config_is_resolved_and_reads_back():
    plan = _plan()
    assert plan.results == "results/tiny"
    for run in plan.vae_runs:
        resolved = plan.job_config(run.path)
        assert run_config.as_dict(run_config.resolve(resolved)) == resolved
        assert resolved["train"]["steps"] == 60 and resolved["model"]["hidden"] == [32]
        assert resolved["latent"] == run_config.as_dict(run_config.resolve(resolved))["latent"]
    runs = {(r.latent_id, r.estimator_id) for r in plan.vae_runs}
    assert runs == {("gaussian", "pathwise"), ("gaussian", "reinforce_loo"), ("categorical", "reinforce_loo"),
                    ("categorical", "gumbel")}


def test_what_does_not_apply_is_listed_with_the_reason():
    def add(c):
        c["vae"]["n_samples"] = [1, 2]
        c["vae"]["estimators"]["nvil"] = {"name": "reinforce", "nvil": True}
    plan = _plan(add)
    reasons = {(e.experiment, e.setting, e.estimator_id, e.n_samples): e.reason for e in plan.excluded}
    assert reasons[("vae", "gaussian", "gumbel", None)] == \
        "Normal is not one of its families (Bernoulli, OneHotCategorical)"
    assert reasons[("vae", "categorical", "pathwise", None)].startswith(
        "OneHotCategorical has no reparameterized sampler")
    assert reasons[("vae", "gaussian", "reinforce_loo", 1)] == "n_samples=1 is below its minimum 2"
    assert "exists only in a run trained with one" in reasons[("vae_shared_checkpoints", "gaussian", "nvil", None)]
    assert not any("nvil" in j.estimator_ids for j in plan.shared_jobs)
    assert all(j.estimator_ids == ["measure_valued", "pathwise", "reinforce_loo"]
               for j in plan.shared_jobs if j.host.latent_id == "gaussian")


def test_presets_are_named_data_and_must_match_the_latent():
    def preset(c):
        c["vae"]["latents"]["gaussian"] = {"family": "gaussian", "dim": 20, "preset": "kingma2013"}
    plan = _plan(preset)
    run = next(r for r in plan.vae_runs if r.latent_id == "gaussian")
    assert plan.job_config(run.path)["model"] == {"hidden": [32], "activation": "tanh"}  # preset, then settings
    message = _error(lambda c: c["vae"]["latents"]["gaussian"].update(preset="kingma2013"))
    assert "preset 'kingma2013' is for the latent" in message


def test_estimator_spec_is_the_one_parser():
    spec = EstimatorSpec.from_config("loo", {"name": "reinforce", "baseline": "leave_one_out", "nvil": True})
    assert (spec.name, spec.options, spec.nvil) == ("reinforce", {"baseline": "leave_one_out"}, True)
    assert spec.label == "reinforce(baseline='leave_one_out')+nvil"
    assert EstimatorSpec.from_config("loo", spec.to_config()) == spec
    assert spec.columns()["estimator_id"] == "loo"


SHIPPED = sorted(p.name for p in (ROOT / "config").glob("*.yaml"))


def test_the_shipped_studies_are_the_documented_ones():
    assert SHIPPED == ["config.yaml", "iwae_k.yaml", "mnist.yaml", "paper.yaml", "tiny.yaml"]


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_study_config_plans(name):
    config = study_config.check(yaml.safe_load((ROOT / "config" / name).read_text()))
    plan = make_plan(config, config["devices"])
    assert plan.vae_runs and plan.synthetic_jobs and plan.shared_jobs
    assert plan.results == f"results/{config['study']}"


def test_every_schema_property_is_described():
    undescribed = []

    def walk(node, path):
        if isinstance(node, dict):
            for key, sub in node.get("properties", {}).items():
                if "description" not in sub:
                    undescribed.append(f"{path}.{key}".lstrip("."))
                walk(sub, f"{path}.{key}")
            for key in ("additionalProperties", "items"):
                if isinstance(node.get(key), dict):
                    walk(node[key], f"{path}.*")
            for key, sub in node.get("definitions", {}).items():
                walk(sub, f"#{key}")

    walk(study_config.schema(), "")
    assert not undescribed


def test_the_claim_threshold_has_one_default():
    threshold = study_config.check(copy.deepcopy(TINY))["claim"]["threshold"]
    assert threshold == study_config.default("claim.threshold") == 100
    assert not any("threshold" in (ROOT / "config" / n).read_text() for n in SHIPPED)


def test_a_missing_data_folder_or_file_is_refused_at_planning(tmp_path):
    def missing_folder(c):
        c["vae"].update(datasets=["binarized_mnist"], data_dir=str(tmp_path / "nowhere"))
    expected = f"vae.data_dir: data folder {tmp_path / 'nowhere'} does not exist (needed for binarized_mnist)"
    assert expected in _error(missing_folder)

    def missing_file(c):
        c["vae"].update(datasets=["mnist"], data_dir=str(tmp_path))
    assert "vae.data_dir: train-images-idx3-ubyte.gz not found in" in _error(missing_file)


def test_the_paper_study_has_liu2023s_six_configurations_trained_with_the_straight_through_family():
    from experiments.vae.run_config import LIU2023_CONFIGURATIONS, PRESETS

    config = study_config.check(yaml.safe_load((ROOT / "config" / "paper.yaml").read_text()))
    plan = make_plan(config, config["devices"])
    liu = {f"liu2023_{c}x{v}": (v, c) for c, v in LIU2023_CONFIGURATIONS}
    assert set(liu) <= set(PRESETS)
    for latent_id, (groups, classes) in liu.items():
        runs = [r for r in plan.vae_runs if r.latent_id == latent_id]
        assert {r.estimator_id for r in runs} == {"straight_through", "gumbel", "st_gumbel", "gumbel_rao", "reinmax"}
        latent = plan.job_config(runs[0].path)["latent"]
        assert (latent["groups"], latent["classes"]) == (groups, classes)


def test_an_unknown_preset_is_refused_with_the_valid_ones():
    message = _error(lambda c: c["vae"]["latents"]["gaussian"].update(preset="liu2023"))
    assert "vae.latents.gaussian.preset: unknown preset 'liu2023' (did you mean" in message
    assert "liu2023_10x30" in message


def test_job_configs_read_small_floats_as_numbers(tmp_path):
    """JSON writes 1e-05 (no dot), which YAML 1.1 reads as a string: a job's config.json must read back equal."""
    from experiments.config.typed_config import load_yaml

    config = {"train": {"lr": 0.00001}, "estimator": {"anneal_rate": 3e-5}, "grid": [1e-5, 1.5, 2]}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    assert load_yaml(path.read_text()) == config


def test_a_latents_own_settings_apply_to_its_runs_and_are_checked():
    config = study_config.check(yaml.safe_load((ROOT / "config" / "paper.yaml").read_text()))
    plan = make_plan(config, config["devices"])
    by_latent = {}
    for run in plan.vae_runs:
        train = plan.job_config(run.path)["train"]
        by_latent.setdefault(run.latent_id, set()).add((train["batch_size"], train["lr"] if run.lr is None else "grid"))
    assert by_latent["dong2020_linear"] <= {(50, 0.0001), (50, "grid")}
    assert by_latent["bernoulli"] <= {(100, 0.001), (100, "grid")}
    model = plan.job_config(next(r.path for r in plan.vae_runs if r.latent_id == "dong2020_nonlinear"))["model"]
    assert model == {"hidden": [200, 200], "activation": "leaky_relu"}
    message = _error(lambda c: c["vae"]["latents"]["gaussian"].update(settings={"train": {"stesp": 3}}))
    assert message.startswith("vae.latents.gaussian.settings.train.stesp: unknown key (did you mean 'steps'?)")
