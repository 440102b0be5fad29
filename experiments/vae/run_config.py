"""The typed config of one VAE run, with the only copy of its defaults.

A run's config is resolved from layers, later ones winning: the defaults below, then the named preset
(``PRESETS``, the anchor papers' models), then the given layers (in the pipeline: the study's
``vae.settings``, then the cell's dataset, latent, estimator, n_samples, device and seed). ``latent`` and
``estimator`` are taken whole from the layer that sets them, never merged key by key. An unknown key at any
depth is refused with its full path (see ``experiments.config.typed_config``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from experiments.config.estimator_spec import EstimatorSpec
from experiments.config.typed_config import ConfigError, apply_override, load_yaml, merge, parse, to_dict
from experiments.config.user_modules import import_modules
from experiments.vae.data import DATASETS, WITH_VALIDATION
from experiments.vae.latent import LatentSpec
from experiments.vae.model import ACTIVATIONS

# Presets that follow the anchor papers' MNIST models (as we read them):
# Kingma & Welling 2013: one hidden layer of 500 tanh units, Gaussian latents (20 here), Bernoulli decoder.
# Jang et al. 2017 (Table 1, binarized MNIST): 784-512-256-latent-256-512-784 ReLU MLPs, 20 x 10 categorical
# or 200 Bernoulli latents, Adam 1e-3, batch 100, temperature max(0.5, exp(-1e-5 t)).
# Liu et al. 2023 (ReinMax, MNIST-VAE; their code, mnist_vae/model/vae.py and reinmax_C_L.sh): the same
# 784-512-256 ReLU MLPs with L categorical variables of C classes, named "C x L" as in their Table 2 and
# scripts (8x4 is --categorical-dim 8 --latent-dim 4); 160 epochs of batch 100 (96k steps), Adam or RAdam
# 5e-4, a temperature tuned per estimator and configuration. They train on grey-level MNIST (pixels / 255)
# with a Bernoulli likelihood, an unnormalized density on [0, 1]: its -ELBO includes the pixels' own
# entropy, so their numbers are not comparable with -ELBOs on binarized MNIST (ours); only orderings are.
LIU2023_CONFIGURATIONS = ((8, 4), (4, 24), (8, 16), (16, 12), (64, 8), (10, 30))   # (classes, variables)
# Dong, Mnih & Tucker 2020 (DisARM, section 6.2, after Yin & Zhou 2019): 200 Bernoulli latents, a linear
# 784-200 model or a nonlinear one, 784-200-200-200 with LeakyReLU(0.3) (encoder; the decoder mirrors it);
# batch 50, Adam 1e-4, dynamically binarized MNIST (``mnist``). Train settings are not a model's: a study
# sets them for the latent (``vae.latents.ID.settings``, see config/paper.yaml).
PRESETS: dict[str, dict] = {
    "kingma2013": {"latent": {"family": "gaussian", "dim": 20},
                   "model": {"hidden": [500], "activation": "tanh"}},
    "jang2017_bernoulli": {"latent": {"family": "bernoulli", "dim": 200},
                           "model": {"hidden": [512, 256], "activation": "relu"}},
    "jang2017_categorical": {"latent": {"family": "categorical", "groups": 20, "classes": 10},
                             "model": {"hidden": [512, 256], "activation": "relu"}},
    "dong2020_linear": {"latent": {"family": "bernoulli", "dim": 200}, "model": {"hidden": [], "activation": "relu"}},
    "dong2020_nonlinear": {"latent": {"family": "bernoulli", "dim": 200},
                           "model": {"hidden": [200, 200], "activation": "leaky_relu"}},
    **{f"liu2023_{c}x{v}": {"latent": {"family": "categorical", "groups": v, "classes": c},
                            "model": {"hidden": [512, 256], "activation": "relu"}}
       for c, v in LIU2023_CONFIGURATIONS},
}
WHOLE = ("latent", "estimator")


@dataclass(frozen=True)
class ModelSettings:
    hidden: list[int] = field(default_factory=lambda: [128])
    activation: Literal[tuple(ACTIVATIONS)] = "relu"    # hidden: [] is a linear encoder and decoder


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 1000
    batch_size: int = 100
    optimizer: Literal["adam", "sgd", "rmsprop"] = "adam"
    lr: float = 1e-3


@dataclass(frozen=True)
class EvalSettings:
    every: int = 250            # 0: never
    iwae_k: int = 50
    elbo_samples: int = 1
    train_subset: int = 1000
    batch_size: int = 500
    validation: bool = False    # also the ELBO on the validation split (data.WITH_VALIDATION); set by lr_grid


@dataclass(frozen=True)
class ReferenceGradientSettings:
    """The reference gradient bias is measured against: exact enumeration up to ``max_support`` latent
    configurations, else the mean of ``n_estimates`` unbiased estimates of ``n_samples`` samples each."""

    max_support: int = 1024
    n_samples: int = 100
    n_estimates: int = 50


@dataclass(frozen=True)
class VarianceSettings:
    """Encoder-gradient variance at every ``every`` steps: estimates are drawn until the total variance's
    relative standard error is at most ``target_rse``, from ``min_estimates`` up to ``max_estimates``."""

    every: int = 500            # 0: never
    min_estimates: int = 100
    max_estimates: int = 1000
    target_rse: float = 0.1
    batch_size: int = 100
    reference_gradient: ReferenceGradientSettings = field(default_factory=ReferenceGradientSettings)

    def validate(self) -> None:
        if not 2 <= self.min_estimates <= self.max_estimates:
            raise ValueError("variance needs 2 <= min_estimates <= max_estimates")


@dataclass(frozen=True)
class ObjectiveSettings:
    """What the runs optimize (``experiments/vae/objectives.py``). ``bound``: ``elbo``, split for the estimators
    by ``kl`` (``exact`` adds the KL's exact gradient directly, the estimators see log p(x|z); ``in_signal`` puts
    the closed-form KL, a constant in z, into the learning signal; ``sampled`` estimates the KL by sampling, the
    estimators see the log-weight log p(x|z) + log p(z) - log q(z|x), the only form ``stl`` takes), or ``iwae``,
    the ``k``-sample importance-weighted bound (Burda et al. 2016), whose gradient ``vimco`` and ``dreg`` estimate
    from one K-tuple and every other estimator from ``n_samples`` K-tuples (``estimators/iwae.py``); ``kl`` does
    not apply to it."""

    bound: Literal["elbo", "iwae"] = "elbo"
    kl: Literal["exact", "in_signal", "sampled"] = "exact"
    k: int = 5

    def validate(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")


@dataclass(frozen=True)
class FaultSettings:
    """Testing aid: make the loss NaN at this step, to exercise the divergence path."""

    nan_at_step: int | None = None


@dataclass(frozen=True)
class RunSettings:
    """What a study sets for all its runs (``vae.settings``)."""

    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    variance: VarianceSettings = field(default_factory=VarianceSettings)
    objective: ObjectiveSettings = field(default_factory=ObjectiveSettings)
    checkpoint_every: int = 100
    fault: FaultSettings = field(default_factory=FaultSettings)


@dataclass(frozen=True)
class RunConfig(RunSettings):
    """One training run: the settings plus what the sweep varies."""

    dataset: Literal[tuple(DATASETS)] = "digits"    # the data sets' registry: experiments/vae/data.py
    data_dir: str | None = None
    cache_dir: str | None = None
    preset: Literal[tuple(PRESETS)] | None = None
    latent: LatentSpec = field(default_factory=lambda: LatentSpec("gaussian", dim=8))
    estimator: dict = field(default_factory=lambda: {"id": "pathwise", "name": "pathwise"})
    n_samples: int = 1
    seed: int = 0
    device: str = "cpu"
    modules: list[str] = field(default_factory=list)   # the user's estimator modules, imported first

    def validate(self) -> None:
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        if self.eval.validation and self.dataset not in WITH_VALIDATION:
            raise ValueError(f"eval.validation: data set {self.dataset!r} has no validation split; data sets with one: "
                             f"{', '.join(WITH_VALIDATION)}")

    @property
    def estimator_spec(self) -> EstimatorSpec:
        import_modules(self.modules)
        entry = dict(self.estimator)
        return EstimatorSpec.from_config(entry.pop("id", entry.get("name")), entry, "estimator", allow_latents=False)


def resolve(*layers: dict | None) -> RunConfig:
    """The run config from the defaults, the preset named by any layer, then the layers in order."""
    merged: dict = {}
    for layer in layers:
        merged = merge(merged, layer, WHOLE)
    preset = merged.get("preset")
    if preset is not None and preset not in PRESETS:
        parse(RunConfig, {"preset": preset})  # raises the one-line error with the valid presets
    config = parse(RunConfig, merge(PRESETS.get(preset, {}), merged, WHOLE))
    config.estimator_spec  # an estimator entry is checked where it is read: here, before the run starts
    return config


def parse_settings(data: dict | None, path: str = "vae.settings") -> RunSettings:
    """A study's ``vae.settings``, checked at any depth."""
    return parse(RunSettings, data, path)


def as_dict(config: RunConfig) -> dict:
    return to_dict(config)


__all__ = ["ConfigError", "PRESETS", "RunConfig", "RunSettings", "as_dict", "parse_settings", "resolve"]


def load_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """A run config file (YAML or JSON) with ``--set`` overrides, resolved and checked."""
    user = {}
    if path:
        with open(path) as fh:
            user = load_yaml(fh) or {}
    for text in overrides:
        apply_override(user, text)
    return resolve(user)
