"""One estimator entry of a config, parsed once: ``EstimatorSpec.from_config(id, entry, path)``.

An entry is ``{name: REGISTERED_NAME, **options}`` plus keys of the study's own: ``nvil: true`` (train an
input-dependent learned baseline with ``reinforce``, VAE only), ``latents: [...]`` (ask for those latents
explicitly; an estimator that does not apply to one of them is then an error, not a listed exclusion),
``train: false`` (VAE only: no training run of its own; measured at the shared checkpoints only) and
``lr_grid: [...]`` (VAE only: one training run per learning rate; the one with the best final validation ELBO
is selected, ``experiments.verdict.tables.lr_selection.select_learning_rates``, and its test numbers are
reported).
Every place that reads an entry (the plan, the synthetic study, VAE runs, the shared-checkpoints protocol)
goes through this class, so an entry is valid everywhere or nowhere.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import estimators

from experiments.config.typed_config import ConfigError, suggestion

#: Keys of an entry that are not estimator options.
STUDY_KEYS = ("name", "nvil", "latents", "train", "lr_grid")


@dataclass(frozen=True)
class EstimatorSpec:
    """id: the config's name for the entry (``estimator_id``); name: the registered estimator
    (``estimator_name``); options: its constructor options; nvil, latents: see the module docstring."""

    id: str
    name: str
    options: dict = field(default_factory=dict)
    nvil: bool = False
    latents: tuple[str, ...] | None = None
    train: bool = True
    lr_grid: tuple[float, ...] | None = None

    @classmethod
    def from_config(cls, est_id: str, entry, path: str = "", *, allow_nvil: bool = True,
                    allow_latents: bool = True) -> "EstimatorSpec":
        where = path or est_id
        if isinstance(entry, EstimatorSpec):
            entry = entry.to_config()
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping like {{name: reinforce, baseline: none}}, got {entry!r}")
        name = entry.get("name")
        if name is None:
            raise ConfigError(f"{where}.name: required key is missing; estimators: {', '.join(estimators.available())}")
        if name not in estimators.available():
            raise ConfigError(f"{where}.name: unknown estimator {name!r}{suggestion(name, estimators.available())}; "
                              f"available: {', '.join(estimators.available())}")
        klass = estimators.estimator_class(name)
        valid = klass.option_names()
        allowed_study_keys = (["name"] + (["nvil"] if allow_nvil else [])
                              + (["latents", "train", "lr_grid"] if allow_latents else []))
        why = {"nvil": "a learned baseline needs the VAE study", "latents": "only the VAE study has latents",
               "train": "only the VAE study trains runs", "lr_grid": "only the VAE study trains runs"}
        for key in entry:
            if key in STUDY_KEYS and key not in allowed_study_keys:
                raise ConfigError(f"{where}.{key}: not valid here ({why[key]})")
            if key not in STUDY_KEYS and key not in valid:
                hint = suggestion(key, list(valid) + allowed_study_keys)
                raise ConfigError(f"{where}.{key}: unknown option for estimator {name!r}{hint}; "
                                  f"valid options: {', '.join(valid) if valid else 'none'}")
        nvil = entry.get("nvil", False)
        if not isinstance(nvil, bool):
            raise ConfigError(f"{where}.nvil: expected true or false, got {nvil!r}")
        if nvil and name != "reinforce":
            raise ConfigError(f"{where}.nvil: a learned baseline (NVIL) applies to 'reinforce' only, not {name!r}")
        latents = entry.get("latents")
        if latents is not None and (not isinstance(latents, list) or not all(isinstance(x, str) for x in latents)):
            raise ConfigError(f"{where}.latents: expected a list of latent ids, got {latents!r}")
        train = entry.get("train", True)
        if not isinstance(train, bool):
            raise ConfigError(f"{where}.train: expected true or false, got {train!r}")
        lr_grid = _lr_grid(entry.get("lr_grid"), f"{where}.lr_grid")
        if lr_grid is not None and not train:
            raise ConfigError(f"{where}.lr_grid: an entry with train: false trains no run, so it has no learning rate "
                              f"to select; remove one of the two")
        spec = cls(est_id, name, {k: v for k, v in entry.items() if k not in STUDY_KEYS}, nvil,
                   None if latents is None else tuple(latents), train, lr_grid)
        try:
            spec.build()
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{where}: {err}") from None
        return spec

    def build(self) -> estimators.Estimator:
        """A new estimator instance (its own state buffers)."""
        return estimators.get(self.name, **self.options)

    @property
    def label(self) -> str:
        """``estimator_label``: the name with the options that matter, ``+nvil`` for a learned baseline."""
        return self.build().describe() + ("+nvil" if self.nvil else "")

    def to_config(self) -> dict:
        """The entry form (what ``from_config`` reads back), without ``latents``, ``train`` and ``lr_grid``
        (planning details)."""
        return {"name": self.name, **self.options, **({"nvil": True} if self.nvil else {})}

    def why_not_stacked(self) -> str | None:
        """Why this entry's seeds cannot train as one stack (``experiments.vae.stacked``), or ``None``: the
        estimator's own reason (``Estimator.why_not_stacked``), or its NVIL baseline network, trained alongside
        each run. The plan and the stacked job both ask here."""
        if self.nvil:
            return (f"estimator {self.label} cannot be stacked: its NVIL baseline network is trained alongside "
                    f"(a learned, adapting state); stack it without nvil, or train it alone")
        return self.build().why_not_stacked()

    def why_not_on_host(self, host_has_nvil: bool, host: str = "the host run") -> str | None:
        """Why this entry cannot be measured at the checkpoints of ``host`` (``shared_checkpoints``) for want
        of a learned baseline, or ``None``. The plan and the shared-checkpoints job both ask here."""
        if self.nvil and not host_has_nvil:
            return f"a learned (NVIL) baseline exists only in a run trained with one; {host} has none"
        return None

    def columns(self, prefix: str = "estimator") -> dict:
        """The identification columns every result row carries."""
        est = self.build()
        return {f"{prefix}_id": self.id, f"{prefix}_name": self.name, f"{prefix}_label": self.label,
                f"{prefix}_options": json.dumps(est.options(), sort_keys=True)}


def _lr_grid(grid, where: str) -> tuple[float, ...] | None:
    if grid is None:
        return None
    ok = (isinstance(grid, list) and len(grid) >= 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < float("inf") for v in grid))
    if not ok or len(set(map(float, grid))) != len(grid):
        raise ConfigError(f"{where}: expected a list of at least two distinct positive learning rates, got {grid!r}")
    return tuple(float(v) for v in grid)
